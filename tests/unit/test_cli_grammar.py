"""One CLI grammar: global `--config`/`-b` anywhere, `--input` and `--json` alike everywhere,
`--version`; and the dead-letter fixes file format (pure parts, no broker)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from tribunal.cli import app
from tribunal.cli.common import hoist_global_options
from tribunal.core.errors import ConfigError
from tribunal.core.settings import Settings
from tribunal.producers.dlq import Letter, ReplayReport, choose, parse_fixes
from tribunal.schemas.messages import DeadLetter


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (["topics", "list", "-b", "h:1", "--json"], ["-b", "h:1", "topics", "list", "--json"]),
        (["--config", "c.toml", "run"], ["--config", "c.toml", "run"]),
        (["run", "--config=c.toml"], ["--config=c.toml", "run"]),
        (["ingest", "-i", "f", "-bh:2", "--bootstrap-server", "h:3"],
         ["-bh:2", "--bootstrap-server", "h:3", "ingest", "-i", "f"]),
        (["eval", "-C", "vader", "-c", "x", "-i", "-"], ["-c", "x", "eval", "-C", "vader", "-i", "-"]),
        (["dlq", "show", "--", "-b", "kept"], ["dlq", "show", "--", "-b", "kept"]),
    ],
)  # fmt: skip
def test_global_options_move_to_the_front_and_nothing_else_moves(given: list[str], expected: list[str]) -> None:
    assert hoist_global_options(given) == expected


def test_version() -> None:
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.startswith("tribunal ")


def _data(tmp_path: Path) -> Path:
    rows = [("great fun", "positive"), ("loved it", "positive"), ("awful mess", "negative"), ("hated it", "negative")]
    path = tmp_path / "d.jsonl"
    path.write_text("".join(json.dumps({"id": str(i), "text": t, "label": y}) + "\n" for i, (t, y) in enumerate(rows)))
    return path


def test_config_after_the_command_is_read(tmp_path: Path) -> None:
    """`train ... --config FILE`: the file's `home` decides where the head is written."""
    config = tmp_path / "c.toml"
    config.write_text(f'home = "{tmp_path / "home"}"\n')
    result = CliRunner().invoke(
        app, ["train", "-t", "sentiment", "-i", str(_data(tmp_path)), "--json", "-c", str(config)]
    )
    assert result.exit_code == 0, result.output
    written = json.loads(result.stdout)
    assert written["path"] == str(tmp_path / "home" / "models" / "sentiment-tfidf.npz")
    assert Path(written["path"]).is_file()


def test_bootstrap_server_after_the_command_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    """`topics list -b HOST:PORT`: the command sees that bootstrap, over env and defaults."""
    seen: list[Settings] = []

    async def fake_list(settings: Settings, everything: bool = False) -> list[dict[str, Any]]:
        seen.append(settings)
        return []

    monkeypatch.setattr("tribunal.cli.topics.list_topics", fake_list)
    monkeypatch.setenv("TRIBUNAL_KAFKA__BOOTSTRAP_SERVERS", "from-env:9092")
    result = CliRunner().invoke(app, ["topics", "list", "-b", "cli-host:19092", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"topics": []}
    assert seen[0].kafka.bootstrap_servers == "cli-host:19092"


def test_input_and_json_mean_the_same_in_eval_and_train(tmp_path: Path) -> None:
    """`-i/--input` is the input file and `--json` prints exactly one JSON object, in both."""
    data = _data(tmp_path)
    evaluated = CliRunner().invoke(app, ["eval", "--input", str(data), "-t", "sentiment", "-C", "hash", "--json"])
    assert evaluated.exit_code == 0, evaluated.output
    assert isinstance(json.loads(evaluated.stdout), dict)
    out = tmp_path / "h.npz"
    trained = CliRunner().invoke(app, ["train", "-i", str(data), "-t", "sentiment", "-o", str(out), "--json"])
    assert trained.exit_code == 0, trained.output
    assert json.loads(trained.stdout)["header"]["task"] == "sentiment"
    assert "--data" not in CliRunner().invoke(app, ["eval", "--help"]).output


# --- dead-letter fixes (pure) ------------------------------------------------------------------
def _letter(offset: int, value: bytes = b"bad", readable: bool = True) -> Letter:
    import base64

    dead = DeadLetter(
        source_topic="items", partition=0, offset=offset, value_b64=base64.b64encode(value).decode(),
        error_kind="decode", error_message="not JSON", tier="worker",
    )  # fmt: skip
    return Letter("items.dlq", 0, offset, dead if readable else None, None if readable else "garbage")


def test_fixes_come_from_edited_show_output_or_json_lines() -> None:
    shown = {"topics": {"items.dlq": 2}, "letters": [{"id": "items.dlq/0/1", "value": "fixed", "tier": "worker"}]}
    assert parse_fixes(json.dumps(shown)) == {"items.dlq/0/1": b"fixed"}
    lines = '{"id": "a/0/1", "value": "x"}\n\n{"id": "a/0/2", "value": "eQ==", "value_encoding": "base64"}\n'
    assert parse_fixes(lines) == {"a/0/1": b"x", "a/0/2": b"y"}
    for bad in ("not json", '{"id": 3, "value": "x"}', '{"letters": [{"value": "x"}]}'):
        with pytest.raises(ConfigError):
            parse_fixes(bad)


def test_choose_skips_replayed_and_unreadable_and_reports_unknown_fixes() -> None:
    letters = [_letter(0), _letter(1), _letter(2, readable=False), _letter(3)]
    report = ReplayReport("items.dlq")
    chosen = choose(letters, {"items.dlq/0/1"}, None, report)
    assert [c.offset for c in chosen] == [0, 3] and report.already == 1 and report.unreadable == 1
    report = ReplayReport("items.dlq")
    fixes = {"items.dlq/0/3": b"ok", "items.dlq/0/9": b"?"}
    assert [c.offset for c in choose(letters, set(), fixes, report)] == [3]
    assert report.not_found == ["items.dlq/0/9"]


def test_a_letter_shows_its_reason_and_original_text() -> None:
    shown = _letter(5, b'{"id": "x", "text": "caf\xc3\xa9"').as_dict()
    assert shown["error_message"] == "not JSON" and shown["source_offset"] == 5
    assert shown["value"] == '{"id": "x", "text": "café"' and shown["value_encoding"] == "utf-8"
    assert _letter(6, b"\xff\xfe").as_dict()["value_encoding"] == "base64"

"""tribunal.offline.history: reading, checking and splitting a labelled history (pure, no models)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tribunal.core.errors import ConfigError
from tribunal.offline.history import (
    MAX_PROMPT_LABELS,
    Fields,
    History,
    LabelledRow,
    check_history,
    read_history,
    split_history,
)


def _rows(counts: dict[str, int]) -> tuple[LabelledRow, ...]:
    rows, line = [], 0
    for label, n in counts.items():
        for i in range(n):
            line += 1
            rows.append(LabelledRow(line, f"r{line}", f"{label} text number {i}", label))
    return tuple(rows)


def _jsonl(path: Path, records: list[dict[str, object]]) -> Path:
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in records))
    return path


def test_reads_jsonl_and_csv_with_named_fields(tmp_path: Path) -> None:
    records: list[dict[str, object]] = [
        {"body": "card lost", "queue": "cards", "ticket": 7},
        {"body": "x", "queue": "y"},
    ]
    jsonl = _jsonl(tmp_path / "h.jsonl", records)
    history = read_history(jsonl, Fields(text="body", label="queue", id="ticket"))
    assert [(r.id, r.text, r.label) for r in history.rows] == [("7", "card lost", "cards"), ("line-2", "x", "y")]
    csv = tmp_path / "h.csv"
    csv.write_text('subject,team\n"refund, please",billing\nno team,\n', encoding="utf-8")
    history = read_history(csv, Fields(text="subject", label="team"))
    assert [(r.text, r.label) for r in history.rows] == [("refund, please", "billing")]
    assert history.unlabelled == (2,)


def test_unreadable_or_foreign_files_say_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no history file"):
        read_history(tmp_path / "missing.jsonl")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "a", "label": "b"}\nnot json\n')
    with pytest.raises(ConfigError, match="line 2: not JSON"):
        read_history(bad)
    other = _jsonl(tmp_path / "other.jsonl", [{"body": "a", "queue": "b"}])
    with pytest.raises(ConfigError, match="--text-field and --label-field"):
        read_history(other)


def test_long_texts_are_cut_to_the_bound(tmp_path: Path) -> None:
    path = _jsonl(tmp_path / "h.jsonl", [{"text": "x" * 50, "label": "a"}])
    history = read_history(path, max_text_chars=10)
    assert (history.rows[0].text, history.truncated) == ("x" * 10, 1)


@pytest.mark.parametrize(
    ("history", "options", "message"),
    [
        (History(_rows({"a": 30, "b": 30}), unlabelled=(4, 9)), {},
         r"2 rows have no label \(lines 4, 9\).*--skip-unlabelled"),
        (History(_rows({"a": 30, "b": 30}), empty_text=(3,)), {}, r"empty text \(lines 3\)"),
        (History(_rows({"a": 30})), {}, "needs two or more"),
        (History(_rows({"a": 30, "b": 5, "c": 3})), {},
         r"2 labels have fewer than 20 distinct texts: 'c' \(3\), 'b' \(5\)"),
        (History(tuple(LabelledRow(n, str(n), "same text", "a" if n < 30 else "b") for n in range(60))), {},
         r"fewer than 20 distinct texts: 'a' \(1\), 'b' \(1\)"),
        (History(_rows({"a": 30, "b\x7f": 30})), {}, "without control characters"),
        (History(_rows({"a": 30, "b": 30})), {"labels": ["a"]}, r"not in --labels: \['b'\]"),
        (History(_rows({"a": 30, "b": 30})), {"labels": ["a", "b", "c"]}, r"\['c'\] of --labels have no rows"),
        (History(_rows({"a": 30, "b\nc": 30})), {}, "one line of at most"),
        (History(_rows({str(n): 6 for n in range(MAX_PROMPT_LABELS + 1)})), {"min_per_label": 6, "prompt_judge": True},
         "more than an LLM judge's prompt holds"),
    ],
)  # fmt: skip
def test_histories_no_fit_can_use_are_refused(history: History, options: dict[str, object], message: str) -> None:
    kwargs: dict[str, object] = {"min_per_label": 20, **options}
    with pytest.raises(ConfigError, match=message):
        check_history(history, **kwargs)  # type: ignore[arg-type]


def test_what_a_fit_can_live_with_is_a_warning() -> None:
    rows = _rows({"a": 30, "b": 30})
    noisy = (*rows, LabelledRow(99, "dup", rows[0].text.upper(), "b"))
    warnings = check_history(History(noisy, unlabelled=(7,)), min_per_label=20, skip_unlabelled=True)
    assert any("left out 1 rows" in w for w in warnings)
    assert any("1 texts appear with different labels" in w for w in warnings)
    many = History(_rows({str(n): 6 for n in range(MAX_PROMPT_LABELS + 1)}))
    assert any("LLM judge" in w for w in check_history(many, min_per_label=6))
    assert check_history(History(rows), min_per_label=20) == []


def test_the_floor_on_rows_per_label_holds_whatever_is_asked() -> None:
    with pytest.raises(ConfigError, match="fewer than 6 distinct texts"):
        check_history(History(_rows({"a": 30, "b": 5})), min_per_label=1)


@settings(max_examples=60, deadline=None)
@given(
    counts=st.dictionaries(st.sampled_from("abcdef"), st.integers(2, 40), min_size=2),
    share=st.floats(0.05, 0.9),
    seed=st.integers(0, 5),
    duplicates=st.integers(0, 10),
)
def test_split_keeps_every_label_on_both_sides_and_no_text_on_both(
    counts: dict[str, int], share: float, seed: int, duplicates: int
) -> None:
    rows = list(_rows(counts))
    rows += [LabelledRow(1000 + i, f"d{i}", rows[i % len(rows)].text.title(), rows[i % len(rows)].label)
             for i in range(duplicates)]  # fmt: skip
    train, calibration = split_history(rows, share, seed)
    assert sorted(r.line for r in train + calibration) == sorted(r.line for r in rows)
    folded = {r.text.lower() for r in train}
    assert not folded & {r.text.lower() for r in calibration}
    assert {r.label for r in train} == {r.label for r in calibration} == set(counts)
    assert split_history(rows, share, seed) == (train, calibration)  # the same on every run


def test_split_share_is_per_label() -> None:
    train, calibration = split_history(list(_rows({"a": 100, "b": 10})), 0.3, 0)
    assert Counter(r.label for r in calibration) == {"a": 30, "b": 3}
    assert len(train) == 77
    with pytest.raises(ConfigError):
        split_history(list(_rows({"a": 10})), 1.0)


def test_a_ragged_csv_without_the_named_fields_says_so(tmp_path: Path) -> None:
    path = tmp_path / "ragged.csv"
    path.write_text("body,category\nhello,a,EXTRA\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="found: body, category"):
        read_history(path)

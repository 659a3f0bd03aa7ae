"""Parsing ingest input: what becomes an item, and how a bad line is reported."""

from __future__ import annotations

import io

from tribunal.producers.ingest import Rejected, parse_lines, stable_id
from tribunal.schemas import DecodeContext, Item, load_tasks

CONTEXT = DecodeContext(tasks=load_tasks(), max_text_chars=100)


def _parse(text: str, fmt: str = "jsonl") -> list[tuple[int, Item | Rejected]]:
    return list(parse_lines(io.StringIO(text), fmt, "sentiment", CONTEXT))


def test_jsonl_fields_become_item_and_metadata() -> None:
    """id, text and task are the item; every other field is kept as metadata."""
    [(line, item)] = _parse('{"id": "a1", "text": "fine", "label": "positive", "source": "app"}\n')
    assert line == 1 and isinstance(item, Item)
    assert (item.id, item.task, item.metadata) == ("a1", "sentiment", {"label": "positive", "source": "app"})


def test_missing_id_is_derived_from_content() -> None:
    """Without an id, the same text and task always give the same id; another text another id."""
    [(_, first)] = _parse('{"text": "same"}\n')
    [(_, second)] = _parse('{"text": "same"}\n')
    assert isinstance(first, Item) and isinstance(second, Item)
    assert first.id == second.id == stable_id("same", "sentiment")
    assert stable_id("other", "sentiment") != first.id


def test_bad_lines_report_number_and_reason_and_blank_lines_are_skipped() -> None:
    """Each bad line is rejected with its line number and a reason; valid lines around it still parse."""
    text = (
        '{"text": "ok"}\n\n{oops\n{"text": ""}\n{"text": "t", "task": "zzz"}\n{"text": "'
        + "x" * 101
        + '"}\n[]\n{"text": "ok2"}\n'
    )
    results = _parse(text)
    rejected = {line: r.reason for line, r in results if isinstance(r, Rejected)}
    assert sorted(rejected) == [3, 4, 5, 6, 7]
    assert "not valid JSON" in rejected[3]
    assert "text" in rejected[4]
    assert "unknown task" in rejected[5]
    assert "101 characters" in rejected[6]
    assert "JSON object" in rejected[7]
    assert [line for line, r in results if isinstance(r, Item)] == [1, 8]


def test_csv_rows_with_header_line_numbers() -> None:
    """CSV lines are numbered as in the file (header = line 1); extra columns are metadata."""
    results = _parse("id,text,label\n1,good,positive\n2,,negative\n3,bad,negative,extra\n", "csv")
    assert isinstance(results[0][1], Item) and results[0][1].metadata == {"label": "positive"}
    assert [(line, type(r).__name__) for line, r in results] == [(2, "Item"), (3, "Rejected"), (4, "Rejected")]

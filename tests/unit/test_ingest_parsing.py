"""Parsing ingest input: what becomes an item, and how a bad line is reported."""

from __future__ import annotations

import io

import pytest

from tribunal.core.errors import ExitCode
from tribunal.producers.ingest import IngestReport, Rejected, parse_lines, stable_id
from tribunal.schemas import DecodeContext, Item, load_tasks

CONTEXT = DecodeContext(tasks=load_tasks(), max_text_chars=100, max_message_bytes=4_000)


def _parse(text: str | bytes, fmt: str = "jsonl") -> list[tuple[int, Item | Rejected]]:
    data = text.encode() if isinstance(text, str) else text
    return list(parse_lines(io.BytesIO(data), fmt, "sentiment", CONTEXT))


def _outcome(results: list[tuple[int, Item | Rejected]]) -> list[tuple[int, str]]:
    return [(line, r.id if isinstance(r, Item) else "rejected") for line, r in results]


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


def test_invalid_utf8_is_a_rejected_line_not_a_crash() -> None:
    """Bytes that are not UTF-8 reject their line (JSONL) or record (CSV); the lines after it still parse."""
    jsonl = b'{"id": "a", "text": "ok"}\n{"id": "b", "text": "caf\xe9"}\n{"id": "c", "text": "ok"}\n'
    assert _outcome(_parse(jsonl)) == [(1, "a"), (2, "rejected"), (3, "c")]
    csv_data = b"id,text\na,ok\nb,caf\xe9\nc,ok\n"
    results = _parse(csv_data, "csv")
    assert _outcome(results) == [(2, "a"), (3, "rejected"), (4, "c")]
    assert "UTF-8" in results[1][1].reason  # type: ignore[union-attr]


def test_an_unclosed_csv_quote_rejects_what_it_swallows_and_publishes_nothing_half_valid() -> None:
    """A quote left open near the end makes one malformed record of every line after it: rejected, never an item."""
    rows = "".join(f"{n},fine text {n}\n" for n in range(1, 6))
    data = "id,text\n" + rows + '6,"unclosed quote\n' + "".join(f"{n},more {n}\n" for n in range(7, 18))
    results = _parse(data, "csv")
    items = [r for _, r in results if isinstance(r, Item)]
    assert [i.id for i in items] == ["1", "2", "3", "4", "5"]
    [(line, rejected)] = [(n, r) for n, r in results if isinstance(r, Rejected)]
    assert line == 7 and "lines 7-18" in rejected.reason and "unexpected end of data" in rejected.reason


def test_csv_quotes_spanning_lines_are_one_record_reported_at_its_first_line() -> None:
    """A quoted field may hold newlines; the record is numbered by the line it starts on."""
    results = _parse('id,text\n1,"two\nlines"\n2,next\n', "csv")
    assert _outcome(results) == [(2, "1"), (4, "2")]
    assert isinstance(results[0][1], Item) and results[0][1].text == "two\nlines"


def test_an_oversized_field_or_line_is_rejected_without_stopping_the_file() -> None:
    """A 10 MB field (CSV) or line (JSONL) is a rejected line; everything around it is read."""
    huge = "x" * 10_000_000
    csv_results = _parse(f"id,text\n1,ok\n2,{huge}\n3,ok\n", "csv")
    assert _outcome(csv_results) == [(2, "1"), (3, "rejected"), (4, "3")]
    jsonl_results = _parse(
        f'{{"id": "1", "text": "ok"}}\n{{"id": "2", "text": "{huge}"}}\n{{"id": "3", "text": "ok"}}\n'
    )
    assert _outcome(jsonl_results) == [(1, "1"), (2, "rejected"), (3, "3")]
    assert "longer than" in jsonl_results[1][1].reason  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("raw_id", "expected"),
    [
        ('"abc"', "abc"),
        ("42", "42"),
        ("-7", "-7"),
        ('"007"', "007"),
        ("18446744073709551615", "18446744073709551615"),
        ("100000000000000000000001", None),
        ("1.5", None),
        ("1e3", None),
        ("true", None),
        ('{"a": 1}', None),
        ("[1]", None),
    ],
)
def test_ids_are_strings_or_integers_in_canonical_form(raw_id: str, expected: str | None) -> None:
    """Strings are kept, 64-bit integers become their decimal string, anything else is rejected (never coerced)."""
    [(_, result)] = _parse(f'{{"id": {raw_id}, "text": "t"}}\n')
    if expected is None:
        assert isinstance(result, Rejected) and "id must be a string or an integer" in result.reason
    else:
        assert isinstance(result, Item) and result.id == expected


def test_integers_beyond_64_bits_never_collide() -> None:
    """Two 24-digit ids that a float would merge are both rejected, never published as one id."""
    results = _parse('{"id": 100000000000000000000001, "text": "a"}\n{"id": 100000000000000000000002, "text": "b"}\n')
    assert all(isinstance(r, Rejected) for _, r in results)


def test_line_numbers_count_newlines_only() -> None:
    """A lone carriage return is part of its line (as grep -n counts), so later numbers stay right."""
    results = _parse('{"id": "a", "text": "ok"}\n{"id": "b",\r "text": "ok"}\n{oops\n{"id": "d", "text": "ok"}\n')
    assert _outcome(results) == [(1, "a"), (2, "b"), (3, "rejected"), (4, "d")]
    crlf = _parse('{"id": "a", "text": "ok"}\r\n{oops\r\n{"id": "c", "text": "ok"}\r\n')
    assert _outcome(crlf) == [(1, "a"), (2, "rejected"), (3, "c")]
    csv_results = _parse("id,text\n1,a\rb\n2,ok\n", "csv")
    assert _outcome(csv_results) == [(2, "rejected"), (3, "2")]


def test_gold_labels_outside_the_task_are_rejected() -> None:
    """metadata.label must be a label of the item's task."""
    results = _parse('{"id": "a", "text": "t", "label": "bogus"}\n{"id": "b", "text": "t", "label": "negative"}\n')
    assert _outcome(results) == [(1, "rejected"), (2, "b")]
    assert "not in the label set" in results[0][1].reason  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("published", "rejected", "code"),
    [(3, 0, ExitCode.OK), (2, 1, ExitCode.SOME_REJECTED), (0, 3, ExitCode.ALL_REJECTED), (0, 0, ExitCode.OK)],
)
def test_exit_code_says_whether_lines_were_rejected(published: int, rejected: int, code: ExitCode) -> None:
    """0 all published, 4 some rejected, 5 all rejected (an empty file is not an error)."""
    report = IngestReport(published=published, rejected=[Rejected(n, "bad") for n in range(rejected)])
    assert report.exit_code() == code

"""The source mapping (tribunal/connect/mapping.py): paths, templates, ids, and every way a record
can fail to map, with the kind its dead letter will carry."""

from __future__ import annotations

import datetime as dt
import decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tribunal.connect.mapping import MappingError, SourceMapping, jsonable, offset_id, parse_template
from tribunal.core.connect_settings import SourceSettings
from tribunal.core.errors import ConfigError

TASKS = ["sentiment3", "intent"]
WHERE = ("tickets", 2, 41)


def mapping(**fields: Any) -> SourceMapping:
    return SourceMapping.of(SourceSettings(name="s", topic="tickets", task="intent", **fields), TASKS)


TICKET = {"ticket": {"ref": "T-1", "subject": "Card", "body": "declined", "n": 7}, "tags": ["a", "b"], "gone": None}


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"text": "ticket.body"}, ("tickets/2/41", "declined")),
        ({"text": "{ticket.subject}\n\n{ticket.body}"}, ("tickets/2/41", "Card\n\ndeclined")),
        ({"text": "#{ticket.n} {gone}|{tags.1}"}, ("tickets/2/41", "#7 |b")),
        ({"text": "{{literal}} {ticket.body}"}, ("tickets/2/41", "{literal} declined")),
        ({"id": "ticket.ref", "text": "ticket.body"}, ("T-1", "declined")),
        ({"id": "ticket.n", "text": "ticket.body"}, ("7", "declined")),
        ({"id": "@key", "text": "ticket.body"}, ("k-1", "declined")),
    ],
)
def test_fields_and_templates_map(fields: dict[str, Any], expected: tuple[str, str]) -> None:
    item = mapping(**fields).map(TICKET, b"k-1", WHERE)
    assert (item.id, item.text, item.task) == (*expected, "intent")


@pytest.mark.parametrize(
    ("fields", "record", "key", "kind"),
    [
        ({"text": "ticket.missing"}, TICKET, None, "missing_field"),
        ({"text": "{ticket.subject} {nope.deeper}"}, TICKET, None, "missing_field"),
        ({"text": "tags.5"}, TICKET, None, "missing_field"),
        ({"text": "ticket.n"}, TICKET, None, "wrong_type"),  # a lone field must be text
        ({"text": "gone"}, TICKET, None, "wrong_type"),
        ({"text": "ticket"}, TICKET, None, "wrong_type"),
        ({"text": "ticket.body", "id": "ticket"}, TICKET, None, "wrong_type"),
        ({"text": "ticket.body", "id": "@key"}, TICKET, None, "missing_key"),
        ({"text": "ticket.body", "id": "@key"}, TICKET, b"\xff\xfe", "bad_id"),
        ({"text": "ticket.body", "id": "@key"}, TICKET, b"a\nb", "bad_id"),
        ({"text": "ticket.body", "id": "@key"}, TICKET, b"x" * 257, "bad_id"),
        ({"text": "ticket.body", "task_field": "ticket.n"}, TICKET, None, "wrong_type"),
        ({"text": "ticket.body", "keep_fields": ["absent"]}, TICKET, None, "missing_field"),
    ],
)
def test_records_that_do_not_fit_say_why(
    fields: dict[str, Any], record: dict[str, Any], key: bytes | None, kind: str
) -> None:
    with pytest.raises(MappingError) as caught:
        mapping(**fields).map(record, key, WHERE)
    assert caught.value.kind == kind
    assert "source record" in str(caught.value)


def test_metadata_keeps_named_fields_headers_and_gold() -> None:
    m = mapping(text="ticket.body", keep_fields=["ticket.n", "tags"], keep_headers=["tenant"], gold_field="label")
    headers = [("tenant", b"acme"), ("secret", b"x"), ("tenant2", None)]
    item = m.map({**TICKET, "label": "card_declined"}, None, WHERE, headers)
    assert item.metadata == {"ticket.n": 7, "tags": ["a", "b"], "header.tenant": "acme", "label": "card_declined"}
    # A null gold label is no gold label.
    assert "label" not in m.map({**TICKET, "label": None}, None, WHERE).metadata


def test_task_from_a_field_or_the_only_task() -> None:
    m = mapping(text="ticket.body", task_field="kind")
    assert m.map({**TICKET, "kind": "sentiment3"}, None, WHERE).task == "sentiment3"
    only = SourceMapping.of(SourceSettings(name="s", topic="t", text="body"), ["intent"])
    assert only.map({"body": "x"}, None, WHERE).task == "intent"


@pytest.mark.parametrize(
    ("fields", "tasks", "problem"),
    [
        ({"text": "body"}, TASKS, "set task"),
        ({"text": "body", "task": "nope"}, TASKS, "not one of"),
        ({"text": "a..b", "task": "intent"}, TASKS, "empty part"),
        ({"text": "{open", "task": "intent"}, TASKS, "never closed"),
        ({"text": "x } y", "task": "intent"}, TASKS, "lone"),
        ({"text": "{{only literal}}", "task": "intent"}, TASKS, "names no field"),
        ({"format": "text", "id": "ticket.ref", "task": "intent"}, TASKS, "no fields"),
    ],
)
def test_bad_mappings_are_config_errors_at_start(fields: dict[str, Any], tasks: list[str], problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        SourceMapping.of(SourceSettings(name="s", topic="t", **fields), tasks)


def test_text_sources_map_the_whole_value() -> None:
    m = SourceMapping.of(SourceSettings(name="s", topic="t", format="text", id="@key", task="intent"), TASKS)
    item = m.map("the whole line", b"line-1", WHERE)
    assert (item.id, item.text) == ("line-1", "the whole line")


def test_offset_ids_stay_within_the_id_limit() -> None:
    assert offset_id("tickets", 0, 5) == "tickets/0/5"
    long_topic = "t" * 249
    assert len(offset_id(long_topic, 99_999, 2**62)) <= 256
    assert offset_id(long_topic, 1, 2) != offset_id("u" * 249, 1, 2)


def test_avro_values_become_json_metadata() -> None:
    value = {"at": dt.datetime(2026, 1, 2, tzinfo=dt.UTC), "amount": decimal.Decimal("1.50"), "raw": b"\x00\x01"}
    assert jsonable(value) == {"at": "2026-01-02T00:00:00+00:00", "amount": "1.50", "raw": "AAE="}


@given(st.lists(st.one_of(st.text(alphabet="ab{}.\n ", max_size=6), st.just("{x}")), max_size=6).map("".join))
def test_templates_parse_or_refuse_never_crash(template: str) -> None:
    """Any string is a template, a path, or a ConfigError: never another exception."""
    try:
        pieces = parse_template(template)
    except ConfigError:
        return
    assert pieces


@given(st.text(min_size=1, max_size=40), st.text(max_size=40))
def test_a_template_joins_its_fields_verbatim(subject: str, body: str) -> None:
    m = mapping(text="{s}: {b}")
    assert m.map({"s": subject, "b": body}, None, WHERE).text == f"{subject}: {body}"

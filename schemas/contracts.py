"""The published contracts: a JSON Schema per message on Tribunal's topics, and the rule a change
must keep.

The schemas are generated from the pydantic models (validation mode: what a record on the topic
must be, which is also what every tier writes) and ship in the package as
`schemas/json/<Message>.schema.json`, for consumers in any language. `python -m
tribunal.schemas.contracts --write` (`make contracts`) regenerates them.

**The rule: BACKWARD compatible.** A new schema accepts every record the published one accepted,
so readers are upgraded first and writers after, and a topic's old records stay readable:
- allowed: a new optional field (with a default), a looser bound, a new enum or literal value;
- breaking: a removed or renamed field (messages forbid unknown fields, so old records would be
  refused), a new required field, a field made required, a changed type, a tighter bound, a
  removed enum or literal value.

A writer starts using what a change adds only once every reader has it (`schema_version` says
which shape a record has, as `JudgeRequest`/`Verdict` 2 added `audit_rate`). A breaking change
needs a new topic, not an edit: `breaking_changes` lists what a change breaks, and
tests/unit/test_contracts.py fails on it.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tribunal.schemas.messages import AggregatorLog, DeadLetter, Item, JudgeRequest, Message, Verdict, VoteBatch

__all__ = ["CONTRACTS_DIR", "MESSAGES", "breaking_changes", "json_schemas", "write_schemas"]

CONTRACTS_DIR = Path(__file__).with_name("json")
# The message of each topic (topics named as in `TopicSettings`).
MESSAGES: dict[str, type[Message]] = {
    "Item": Item,  # items
    "VoteBatch": VoteBatch,  # votes
    "JudgeRequest": JudgeRequest,  # judge
    "Verdict": Verdict,  # labels, verdicts, audits
    "DeadLetter": DeadLetter,  # <topic>.dlq
    "AggregatorLog": AggregatorLog,  # aggregator-decided
}
_LOWER = ("minLength", "minimum", "exclusiveMinimum", "minItems")
_UPPER = ("maxLength", "maximum", "exclusiveMaximum", "maxItems")


def json_schemas() -> dict[str, dict[str, Any]]:
    """Every message's JSON Schema, by message name."""
    schemas = {}
    for name, model in MESSAGES.items():
        schema = model.model_json_schema(mode="validation")
        schema["$id"] = f"https://tribunal.dev/schemas/{name}.schema.json"
        schemas[name] = schema
    return schemas


def write_schemas(folder: Path = CONTRACTS_DIR) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, schema in json_schemas().items():
        path = folder / f"{name}.schema.json"
        path.write_text(json.dumps(schema, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        written.append(path)
    return written


def _resolve(schema: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        return _resolve(root["$defs"][ref.removeprefix("#/$defs/")], root)
    return schema


def _alternatives(schema: dict[str, Any], root: dict[str, Any]) -> list[dict[str, Any]]:
    schema = _resolve(schema, root)
    if "anyOf" in schema:
        return [alt for part in schema["anyOf"] for alt in _alternatives(part, root)]
    return [schema]


def _kind(schema: dict[str, Any]) -> str:
    return str(schema.get("type", "const" if "const" in schema else "enum" if "enum" in schema else "any"))


def _values(schema: dict[str, Any]) -> set[Any] | None:
    if "const" in schema:
        return {json.dumps(schema["const"])}
    if "enum" in schema:
        return {json.dumps(v) for v in schema["enum"]}
    return None


def breaking_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """What `new` refuses that `old` accepted (see the module doc), one line per change."""
    return list(_compare(old, new, old, new, "$"))


def _compare(old: dict[str, Any], new: dict[str, Any], old_root: dict[str, Any], new_root: dict[str, Any],
             where: str) -> Iterator[str]:  # fmt: skip
    olds, news = _alternatives(old, old_root), _alternatives(new, new_root)
    for alt in olds:
        widened = {_kind(alt), "any"} | ({"number"} if _kind(alt) == "integer" else set())
        matches = [n for n in news if _kind(n) in widened]
        values = _values(alt)
        if values is not None:
            accepted = set().union(*(_values(n) or set() for n in news if _values(n) is not None))
            if not any(_values(n) is None and _kind(n) in {"any", _value_type(alt)} for n in news):
                for value in sorted(values - accepted):
                    yield f"{where}: value {value} no longer accepted"
            continue
        if not matches:
            yield f"{where}: type {_kind(alt)} no longer accepted"
            continue
        yield from _compare_one(alt, matches[0], old_root, new_root, where)


def _value_type(schema: dict[str, Any]) -> str:
    values = schema.get("enum") or [schema.get("const")]
    return {bool: "boolean", int: "integer", float: "number", str: "string"}.get(type(values[0]), "any")


def _compare_one(old: dict[str, Any], new: dict[str, Any], old_root: dict[str, Any], new_root: dict[str, Any],
                 where: str) -> Iterator[str]:  # fmt: skip
    if _values(new) is not None:  # a plain type became a closed set of values
        yield f"{where}: now limited to the values {sorted(_values(new) or ())}"
    for keyword in ("format", "multipleOf"):
        if new.get(keyword) is not None and new.get(keyword) != old.get(keyword):
            yield f"{where}: {keyword} changed from {old.get(keyword)!r} to {new[keyword]!r}"
    for bound in _LOWER:
        if new.get(bound) is not None and (old.get(bound) is None or new[bound] > old[bound]):
            yield f"{where}: {bound} tightened from {old.get(bound)} to {new[bound]}"
    for bound in _UPPER:
        if new.get(bound) is not None and (old.get(bound) is None or new[bound] < old[bound]):
            yield f"{where}: {bound} tightened from {old.get(bound)} to {new[bound]}"
    if new.get("pattern") is not None and new.get("pattern") != old.get("pattern"):
        yield f"{where}: pattern changed from {old.get('pattern')!r} to {new['pattern']!r}"
    if old.get("type") == "object":
        old_props, new_props = old.get("properties", {}), new.get("properties", {})
        for name in sorted(set(old_props) - set(new_props)):
            if new.get("additionalProperties") is False:
                yield f"{where}.{name}: field removed (old records that carry it are refused)"
        for name in sorted(set(new.get("required", ())) - set(old.get("required", ()))):
            yield f"{where}.{name}: field now required"
        for name in sorted(set(old_props) & set(new_props)):
            yield from _compare(old_props[name], new_props[name], old_root, new_root, f"{where}.{name}")
        old_extra, new_extra = old.get("additionalProperties"), new.get("additionalProperties")
        if isinstance(new_extra, dict) and old_extra in (None, True):
            yield f"{where}: the values of its free-form keys are now constrained"
        elif isinstance(old_extra, dict) and isinstance(new_extra, dict):
            yield from _compare(old_extra, new_extra, old_root, new_root, f"{where}{{*}}")
        elif old_extra is not False and new_extra is False and not old_props:
            yield f"{where}: free-form keys no longer accepted"
    if old.get("type") == "array":
        old_items, new_items = old.get("prefixItems"), new.get("prefixItems")
        if old_items is not None and new_items is not None:
            if len(old_items) != len(new_items):
                yield f"{where}: tuple of {len(old_items)} became a tuple of {len(new_items)}"
            for n, (a, b) in enumerate(zip(old_items, new_items, strict=False)):
                yield from _compare(a, b, old_root, new_root, f"{where}[{n}]")
        elif isinstance(old.get("items"), dict) and isinstance(new.get("items"), dict):
            yield from _compare(old["items"], new["items"], old_root, new_root, f"{where}[]")


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        sys.exit("usage: python -m tribunal.schemas.contracts --write")
    for path in write_schemas():
        sys.stdout.write(f"{path}\n")

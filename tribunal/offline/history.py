"""A labelled history for `tribunal fit`: read it, check it, split it. Pure, no models, no Kafka.

A history is a JSONL or CSV file (by extension) with a text and a label per row (field names
configurable; an id is optional: the line number stands in). `check_history` refuses what no fit
can use and says what to do about it: rows without a label, labels outside a given set, labels
too rare to both train a worker and certify a rule, a label set no judge prompt can hold.
`split_history` puts each distinct text (case and spacing folded) wholly into the training part
or the calibration part, label by label and by a seeded hash, so a duplicated ticket never
teaches a worker the answer the rule is then certified on.
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from tribunal.core.errors import ConfigError

__all__ = [
    "MAX_LABEL_CHARS",
    "MAX_PROMPT_LABELS",
    "Fields",
    "History",
    "LabelledRow",
    "check_history",
    "read_history",
    "split_history",
]

# A label is a verdict field (schemas.messages.Label) and a line of a judge's prompt.
MAX_LABEL_CHARS = 128
# An LLM judge reads the label list in its prompt; past this many, few models pick reliably
# (Gemma 3 270M scored ~21% on BANKING77's 77, docs/model-eval.md) and prompts grow long.
MAX_PROMPT_LABELS = 100
# Each label needs rows on both sides of the split: a few to train on, a few to certify with.
MIN_ROWS_FLOOR = 6
_SHOWN = 8  # offending lines or labels named in one error


@dataclass(frozen=True, slots=True)
class Fields:
    """Which fields of a row hold the text, the label and (optionally) the id."""

    text: str = "text"
    label: str = "label"
    id: str = "id"


@dataclass(frozen=True, slots=True)
class LabelledRow:
    line: int  # 1-based line (JSONL) or record (CSV, header excluded) in the file
    id: str
    text: str
    label: str


@dataclass(frozen=True, slots=True)
class History:
    """The usable rows of a file, and what was left out of it (and why)."""

    rows: tuple[LabelledRow, ...]
    unlabelled: tuple[int, ...] = ()  # lines with an empty or missing label
    empty_text: tuple[int, ...] = ()
    truncated: int = 0  # texts cut to max_text_chars
    warnings: list[str] = field(default_factory=list)

    @property
    def labels(self) -> list[str]:
        return sorted({row.label for row in self.rows})


def _records(path: Path) -> Iterator[tuple[int, dict[str, object]]]:
    data = path.read_bytes()
    if path.suffix.lower() == ".csv":
        reader = csv.DictReader(io.StringIO(data.decode("utf-8-sig"), newline=""))
        for number, record in enumerate(reader, start=1):
            yield number, dict(record)
        return
    for number, line in enumerate(data.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            value = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise ConfigError(f"{path}, line {number}: not JSON ({exc}); fix or remove the line") from None
        if not isinstance(value, dict):
            raise ConfigError(f"{path}, line {number}: expected a JSON object, got {type(value).__name__}")
        yield number, value


def read_history(path: Path, fields: Fields = Fields(), *, max_text_chars: int = 20_000) -> History:
    """The rows of `path`; rows without a label or text are counted, not kept (see `check_history`).
    `ConfigError` for an unreadable file or a file without the named fields."""
    if not path.is_file():
        raise ConfigError(f"no history file {path}: give a JSONL or CSV file of labelled rows")
    rows: list[LabelledRow] = []
    unlabelled: list[int] = []
    empty: list[int] = []
    truncated = 0
    seen_fields: set[str] = set()
    try:
        for number, record in _records(path):
            seen_fields.update(k for k in record if isinstance(k, str))  # a ragged CSV row adds a None key
            text, label = record.get(fields.text), record.get(fields.label)
            label_text = "" if label is None else str(label).strip()
            text_value = "" if text is None else str(text).strip()
            if not label_text:
                unlabelled.append(number)
                continue
            if not text_value:
                empty.append(number)
                continue
            if len(text_value) > max_text_chars:
                text_value, truncated = text_value[:max_text_chars], truncated + 1
            raw_id = record.get(fields.id)
            row_id = str(raw_id) if raw_id not in (None, "") else f"line-{number}"
            rows.append(LabelledRow(number, row_id, text_value, label_text))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ConfigError(f"cannot read history {path}: {exc}") from None
    if not rows and not unlabelled and not empty:
        raise ConfigError(f"{path} holds no rows")
    if not rows and not (fields.text in seen_fields and fields.label in seen_fields):
        found = ", ".join(sorted(seen_fields)[:12]) or "none"
        raise ConfigError(
            f"{path} has no {fields.text!r}/{fields.label!r} fields (found: {found}); "
            "name them with --text-field and --label-field"
        )
    return History(tuple(rows), tuple(unlabelled), tuple(empty), truncated)


def _lines(numbers: Sequence[int]) -> str:
    shown = ", ".join(str(n) for n in numbers[:_SHOWN])
    return shown + (f" and {len(numbers) - _SHOWN} more" if len(numbers) > _SHOWN else "")


def check_history(
    history: History,
    *,
    min_per_label: int,
    labels: Sequence[str] | None = None,
    skip_unlabelled: bool = False,
    prompt_judge: bool = False,
) -> list[str]:
    """Raise `ConfigError` for a history no fit can use, saying what to do; else return warnings.

    `labels`: the label set the user declared (rows outside it are an error, labels of it with no
    rows too). `prompt_judge`: the judge reads the label list in a prompt (an LLM), so a label
    set past `MAX_PROMPT_LABELS` is an error rather than a warning."""
    warnings = list(history.warnings)
    left_out = len(history.unlabelled) + len(history.empty_text)
    if history.unlabelled and not skip_unlabelled:
        raise ConfigError(
            f"{len(history.unlabelled)} rows have no label (lines {_lines(history.unlabelled)}): "
            "label them, remove them, or pass --skip-unlabelled to fit on the others"
        )
    if history.empty_text and not skip_unlabelled:
        raise ConfigError(
            f"{len(history.empty_text)} rows have an empty text (lines {_lines(history.empty_text)}): "
            "remove them, or pass --skip-unlabelled to fit on the others"
        )
    if left_out:
        warnings.append(f"left out {left_out} rows without a label or a text (--skip-unlabelled)")
    counts = Counter(row.label for row in history.rows)
    if len(counts) < 2:
        raise ConfigError(f"the history has {len(counts)} distinct label(s) {sorted(counts)}; a fit needs two or more")
    long_or_multiline = sorted(
        lab for lab in counts if len(lab) > MAX_LABEL_CHARS or any(ord(c) < 0x20 or ord(c) == 0x7F for c in lab)
    )
    if long_or_multiline:
        raise ConfigError(
            f"labels must be one line of at most {MAX_LABEL_CHARS} characters, without control characters; "
            f"{len(long_or_multiline)} are not (first: {long_or_multiline[0][:60]!r}...): map them to short names"
        )
    if labels is not None:
        unknown = sorted(set(counts) - set(labels))
        if unknown:
            raise ConfigError(
                f"{len(unknown)} labels in the history are not in --labels: {unknown[:_SHOWN]}; "
                "add them to --labels or remove their rows"
            )
        missing = sorted(set(labels) - set(counts))
        if missing:
            raise ConfigError(f"labels {missing[:_SHOWN]} of --labels have no rows; a worker cannot learn them")
    floor = max(min_per_label, MIN_ROWS_FLOOR)
    # Distinct texts, not rows: copies of one text land on one side of the split together.
    distinct: dict[str, set[str]] = defaultdict(set)
    for row in history.rows:
        distinct[row.label].add(_folded(row.text))
    rare = sorted((len(distinct[lab]), lab) for lab in counts if len(distinct[lab]) < floor)
    if rare:
        shown = ", ".join(f"{lab!r} ({n})" for n, lab in rare[:_SHOWN])
        raise ConfigError(
            f"{len(rare)} labels have fewer than {floor} distinct texts: {shown}; collect more rows, merge them into "
            f"a broader label, or lower --min-per-label (at least {MIN_ROWS_FLOOR}: each label needs rows to "
            "train on and rows to certify with)"
        )
    if len(counts) > MAX_PROMPT_LABELS:
        message = (
            f"{len(counts)} labels: more than an LLM judge's prompt holds well ({MAX_PROMPT_LABELS}); "
            "group them into fewer labels, or use a judge that does not read them from a prompt"
        )
        if prompt_judge:
            raise ConfigError(message)
        warnings.append(message + " (the fitted judge here does not)")
    conflicts = _conflicting_texts(history.rows)
    if conflicts:
        warnings.append(
            f"{conflicts} texts appear with different labels (label noise: the judge and the workers "
            "will disagree on them)"
        )
    return warnings


def _folded(text: str) -> str:
    return " ".join(text.lower().split())


def _conflicting_texts(rows: Iterable[LabelledRow]) -> int:
    by_text: dict[str, set[str]] = defaultdict(set)
    for row in rows:
        by_text[_folded(row.text)].add(row.label)
    return sum(1 for labels in by_text.values() if len(labels) > 1)


def _draw(seed: int, text: str) -> bytes:
    return hashlib.blake2b(f"{seed}\x00{text}".encode(), digest_size=8).digest()


def split_history(
    rows: Sequence[LabelledRow], calibration_share: float, seed: int = 0
) -> tuple[list[LabelledRow], list[LabelledRow]]:
    """(training rows, calibration rows): per label, `calibration_share` of its distinct texts
    (at least one, never all) go to calibration, chosen by a seeded hash of the text, so the split
    is the same on every machine and a text never sits on both sides."""
    if not 0.0 < calibration_share < 1.0:
        raise ConfigError(f"the calibration share must be between 0 and 1, got {calibration_share}")
    groups: dict[str, list[LabelledRow]] = defaultdict(list)
    for row in rows:
        groups[_folded(row.text)].append(row)
    by_label: dict[str, list[str]] = defaultdict(list)
    for text, members in groups.items():
        by_label[members[0].label].append(text)
    calibration_texts: set[str] = set()
    for texts in by_label.values():
        texts.sort(key=lambda t: _draw(seed, t))
        take = min(len(texts) - 1, max(1, math.ceil(calibration_share * len(texts))))
        calibration_texts.update(texts[:take])
    train = [row for row in rows if _folded(row.text) not in calibration_texts]
    calibration = [row for row in rows if _folded(row.text) in calibration_texts]
    return train, calibration

"""Tribunal's message contracts, codecs and task definitions."""

from tribunal.schemas.codec import DecodeContext, DecodeError, decode, encode, key
from tribunal.schemas.messages import (
    SCHEMA_VERSION,
    DeadLetter,
    DecidedBy,
    EscalationReason,
    Item,
    JudgeRequest,
    Verdict,
    Vote,
)
from tribunal.schemas.tasks import Task, TaskError, TaskRegistry, load_tasks

__all__ = [
    "SCHEMA_VERSION",
    "DeadLetter",
    "DecidedBy",
    "DecodeContext",
    "DecodeError",
    "EscalationReason",
    "Item",
    "JudgeRequest",
    "Task",
    "TaskError",
    "TaskRegistry",
    "Verdict",
    "Vote",
    "decode",
    "encode",
    "key",
    "load_tasks",
]

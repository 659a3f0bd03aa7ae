"""Tribunal's message contracts, codecs and task definitions."""

from schemas.codec import DecodeContext, DecodeError, decode, encode, key
from schemas.messages import (
    SCHEMA_VERSION,
    DeadLetter,
    DecidedBy,
    EscalationReason,
    Item,
    JudgeRequest,
    Verdict,
    Vote,
)
from schemas.tasks import Task, TaskError, TaskRegistry, load_tasks

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

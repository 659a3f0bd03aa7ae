"""The settings of Tribunal's connection to Kafka and its consume loop: the cluster and its security
(`KafkaSettings`), topic names and sizes (`TopicSettings`), and the runtime every tier shares
(`RuntimeSettings`). Sections of `tribunal.core.settings.Settings`, which re-exports them."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from tribunal.schemas.codec import DEFAULT_MAX_MESSAGE_BYTES, RECORD_HEADROOM_BYTES

__all__ = ["DEFAULT_RECORD_LIMIT", "KafkaSettings", "RuntimeSettings", "Section", "TopicSettings"]

# The largest record any tier writes with default settings (see `schemas.codec`).
DEFAULT_RECORD_LIMIT = DEFAULT_MAX_MESSAGE_BYTES + RECORD_HEADROOM_BYTES


class Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class KafkaSettings(Section):
    """How to reach the cluster. TLS and SASL (PLAIN, SCRAM) for production clusters."""

    bootstrap_servers: str = "127.0.0.1:9092"
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    ssl_keyfile_password: SecretStr | None = None
    ssl_check_hostname: bool = True
    client_id: str = "tribunal"
    request_timeout_ms: int = Field(default=30_000, gt=0)

    @model_validator(mode="after")
    def _sasl_complete(self) -> KafkaSettings:
        if self.security_protocol.startswith("SASL") and not (
            self.sasl_mechanism and self.sasl_username and self.sasl_password
        ):
            raise ValueError(
                f"security_protocol={self.security_protocol} needs sasl_mechanism, "
                "sasl_username and sasl_password (TRIBUNAL_KAFKA__SASL_*)"
            )
        return self


class TopicSettings(Section):
    """Topic names and sizes. `prefix` namespaces a whole pipeline run (replays, tests)."""

    prefix: str = ""
    items: str = "items"
    votes: str = "votes"
    judge: str = "judge"
    verdicts: str = "verdicts"
    labels: str = "labels"
    audits: str = "audits"
    # The aggregator's decided-id log (time-retained; see AggregatorLog). Named apart from the
    # compacted per-item changelog it replaced, so an old topic is never read as the new log.
    aggregator_state: str = "aggregator-decided"
    reliability: str = "reliability"
    evidence: str = "evidence"
    rules: str = "rules"
    # items, votes and verdicts MUST share this count: the aggregator joins them partition by partition.
    partitions: int = Field(default=6, ge=1)
    judge_partitions: int = Field(default=3, ge=1)
    labels_partitions: int = Field(default=6, ge=1)
    replication_factor: int = Field(default=1, ge=1)

    def name(self, topic: str) -> str:
        return f"{self.prefix}{topic}"

    @staticmethod
    def dlq(topic: str) -> str:
        return f"{topic}.dlq"

    @property
    def items_topic(self) -> str:
        return self.name(self.items)

    @property
    def votes_topic(self) -> str:
        return self.name(self.votes)

    @property
    def judge_topic(self) -> str:
        return self.name(self.judge)

    @property
    def verdicts_topic(self) -> str:
        return self.name(self.verdicts)

    @property
    def labels_topic(self) -> str:
        return self.name(self.labels)

    @property
    def audits_topic(self) -> str:
        return self.name(self.audits)

    @property
    def state_topic(self) -> str:
        return self.name(self.aggregator_state)

    @property
    def reliability_topic(self) -> str:
        return self.name(self.reliability)

    # Consumer groups live beside the topics they read: one group per worker name, one
    # aggregator group, one judge group, all under the same prefix as the run's topics.
    def worker_group(self, worker: str) -> str:
        return self.name(f"tribunal-worker-{worker}")

    @property
    def aggregator_group(self) -> str:
        return self.name("tribunal-aggregator")

    @property
    def judge_group(self) -> str:
        return self.name("tribunal-judge")

    @property
    def evidence_topic(self) -> str:
        return self.name(self.evidence)

    @property
    def rules_topic(self) -> str:
        return self.name(self.rules)


class RuntimeSettings(Section):
    """The consume-process-produce loop shared by every tier."""

    batch_size: int = Field(default=256, ge=1, le=10_000)
    batch_wait_ms: int = Field(default=20, ge=0, le=60_000)
    # Transaction pacing: after a batch that was not full, the next fetch waits until this long
    # after it (a full batch, i.e. a backlog, never waits). A transaction costs the client and the
    # broker ~3 ms of CPU each whatever it carries (`bench pipeline`'s transaction baseline), a
    # fetch response about 1: unpaced, at moderate load every tier commits and fetches as often
    # as the round trips allow, a handful of records at a time, and a small machine's CPUs go on
    # that. Measured on 2 cores (README, "CPU at moderate load"): 50 ms took the machine from
    # ~99% to 60-88% busy at 200-2,000 items/s and halved p99 at 2,000/s, for up to 50 ms more
    # per hop when idle. 0 turns pacing off (lowest latency where CPU is plentiful).
    min_transaction_interval_ms: int = Field(default=50, ge=0, le=10_000)
    # Kafka aborts an open transaction of a crashed process after this long; keep it short so a
    # crash stalls read_committed readers briefly, long enough for the slowest model batch.
    transaction_timeout_ms: int = Field(default=20_000, ge=1_000)
    max_poll_interval_ms: int = Field(default=300_000, ge=10_000)
    session_timeout_ms: int = Field(default=10_000, ge=1_000)
    # Retries of a failing model call before an item is treated as poison.
    retries: int = Field(default=3, ge=0)
    retry_backoff_ms: int = Field(default=200, ge=0)
    instance_id: str = Field(default_factory=socket.gethostname, min_length=1, max_length=100)
    # How long a tier waits for an unreachable broker at start before it exits (code 3). Long
    # enough to ride out a broker restart, so an outage costs a tier at most one exit.
    broker_wait_s: float = Field(default=120.0, ge=0)

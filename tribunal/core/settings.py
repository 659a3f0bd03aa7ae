"""Settings: built once at the entry point from `TRIBUNAL_*` env vars and an optional TOML file,
then passed down. Nothing else in Tribunal reads the environment.

Nested sections use `__` in env names: `TRIBUNAL_KAFKA__BOOTSTRAP_SERVERS=host:9092`,
`TRIBUNAL_AGGREGATOR__QUORUM=2`. A TOML file (`--config FILE` or `TRIBUNAL_CONFIG`) has the same
sections as tables; env vars win over the file. Every knob has a default that works on a laptop.
"""

from __future__ import annotations

import contextvars
import os
import tomllib
from pathlib import Path
from typing import Literal

import orjson
from pydantic import BaseModel, Field, SecretStr, ValidationError, model_validator
from pydantic_core import to_jsonable_python
from pydantic_settings import (
    BaseSettings,
    InitSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from tribunal.core.connect_settings import REGISTRY_FORMATS, RegistrySettings, SinkSettings, SourceSettings
from tribunal.core.errors import ConfigError
from tribunal.core.kafka_settings import KafkaSettings, RuntimeSettings, Section, TopicSettings
from tribunal.schemas.codec import DEFAULT_MAX_MESSAGE_BYTES, RECORD_HEADROOM_BYTES, DecodeContext
from tribunal.schemas.messages import DEFAULT_MAX_TEXT_CHARS, MAX_VOTES
from tribunal.schemas.tasks import PolicyName, TaskRegistry, load_tasks, resolve_spec_path

__all__ = [
    "AggregatorSettings",
    "BrokerSettings",
    "JudgeSettings",
    "PipelineSettings",
    "Settings",
    "TargetSettings",
    "WorkerProcess",
    "WorkerSettings",
    "load_settings",
    "settings_env",
]

_CONFIG_FILE: contextvars.ContextVar[Path | None] = contextvars.ContextVar("config_file", default=None)


class WorkerSettings(Section):
    name: str = Field(default="w1", min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")
    classifier: str = "hash"
    # An idle worker reports its position per partition this often (an empty VoteBatch), so the
    # aggregator can tell it from a dead one. Keep it well under aggregator.deadline_ms.
    progress_interval_ms: int = Field(default=500, ge=10, le=60_000)


class TargetSettings(Section):
    """The target policy's quality bar and how it gathers evidence (consumers/policy/calibration.py).

    `max_disagreement`: the share of worker-accepted items whose label the judge would change
    that the cut-off may allow (the judge is the reference); `confidence`: the probability that
    the certified cut-off keeps it, across every re-fit (δ = 1 - confidence is spent over them).
    """

    max_disagreement: float = Field(default=0.05, gt=0.0, lt=1.0)
    confidence: float = Field(default=0.95, gt=0.0, lt=1.0)
    # Audit sample of accepted items: never below the minimum (drift stays visible), at most the
    # maximum while more audits could loosen the cut-off. Before a cut-off is certified every
    # item goes to the judge, so the sample is all of them.
    min_audit_rate: float = Field(default=0.02, gt=0.0, le=1.0)
    max_audit_rate: float = Field(default=0.1, gt=0.0, le=1.0)
    # Share of judged items (by id) that fit the score; the rest certify it. A logistic score on a
    # dozen features needs far fewer rows than a tight binomial bound does.
    fit_share: float = Field(default=0.3, gt=0.0, lt=1.0)
    # Re-fit when the calibration sample has grown by this factor since the last one.
    refit_growth: float = Field(default=1.5, gt=1.0)
    # Evidence rows kept per side and judge partition (memory and snapshot size stay bounded).
    window: int = Field(default=2_000, ge=100, le=20_000)

    @model_validator(mode="after")
    def _rates_ordered(self) -> TargetSettings:
        if self.min_audit_rate > self.max_audit_rate:
            raise ValueError("min_audit_rate must not exceed max_audit_rate")
        return self


class AggregatorSettings(Section):
    # At most MAX_VOTES: a judge request carries one vote per worker, and its size is bounded.
    workers: tuple[str, ...] = Field(default=("w1", "w2", "w3"), min_length=1, max_length=MAX_VOTES)
    quorum: int = Field(default=2, ge=1)
    # How long an item waits for a worker that has gone silent on its partition (no position
    # report for this long). A worker that is alive and moving is waited for (consumers.aggregator.stragglers).
    deadline_ms: int = Field(default=2_000, ge=1)
    # A live worker whose position stands still this long while an item waits for it is stuck;
    # None = 10 x deadline_ms.
    ceiling_ms: int | None = Field(default=None, ge=1)
    # No item waits longer than this for votes, whatever the workers do (a latency bound that
    # turns a very long backlog into judge load); None = 5 min, or the ceiling if longer.
    max_wait_ms: int | None = Field(default=None, ge=1)
    # Decided ids are remembered this long so late votes and re-sent items are ignored, then
    # forgotten: state grows with items in flight, not with history. None = 600 s, or twice the
    # max wait if that is longer (a restart re-reads undecided items, up to a max wait old).
    decided_window_s: float | None = Field(default=None, gt=0)
    max_decided: int = Field(default=1_000_000, ge=1)
    # Pause reading new items while this many are waiting for votes (backpressure).
    max_pending: int = Field(default=50_000, ge=1)
    # Votes and items are cheap to process: big batches amortise each transaction's round trips.
    batch_size: int = Field(default=2_000, ge=1, le=20_000)
    # The default: a quality target (`target`), not thresholds. An explicit value here wins
    # over each task's own policy in the tasks file.
    # `criterion1` and `criterion2` are accepted as aliases of `majority` and `confident_majority`.
    policy: PolicyName = "target"
    target: TargetSettings = TargetSettings()
    # Confident majority: per-worker confidence thresholds, and the threshold of workers not listed.
    thresholds: dict[str, float] = Field(default_factory=dict)
    default_threshold: float = Field(default=0.5, ge=0.0, le=1.0)
    # Weighted vote: accept when the top label's posterior reaches this.
    accept_threshold: float = Field(default=0.75, gt=0.5, le=1.0)
    # Judge budget: escalations per second this instance may send; beyond it, and while the
    # judge's backlog is at `judge_max_backlog`, items get the workers' plurality as a
    # `decided_by=fallback` label instead (None = unlimited).
    judge_budget_per_s: float | None = Field(default=None, gt=0)
    judge_max_backlog: int | None = Field(default=None, ge=1)
    # Share of worker-decided items also sent to the judge (reason=audit) to measure fast-path
    # precision; the audit never changes the published label.
    audit_rate: float = Field(default=0.0, ge=0.0, le=1.0)

    @property
    def effective_ceiling_ms(self) -> int:
        return self.ceiling_ms if self.ceiling_ms is not None else 10 * self.deadline_ms

    @property
    def effective_max_wait_ms(self) -> int:
        return self.max_wait_ms if self.max_wait_ms is not None else max(300_000, self.effective_ceiling_ms)

    @property
    def window_s(self) -> float:
        """How long decided ids are remembered (`decided_window_s` or its default)."""
        if self.decided_window_s is not None:
            return self.decided_window_s
        return max(600.0, 2 * self.effective_max_wait_ms / 1000.0)

    @model_validator(mode="after")
    def _quorum_reachable(self) -> AggregatorSettings:
        if self.quorum > len(self.workers):
            raise ValueError(f"quorum {self.quorum} exceeds the {len(self.workers)} expected workers")
        if not self.deadline_ms <= self.effective_ceiling_ms <= self.effective_max_wait_ms:
            raise ValueError(
                f"need deadline_ms <= ceiling_ms <= max_wait_ms, got {self.deadline_ms}, "
                f"{self.effective_ceiling_ms}, {self.effective_max_wait_ms}"
            )
        # Undecided items are re-read after a restart; every id decided after the oldest of them
        # must still be remembered then, and none waits longer than max_wait_ms.
        if self.window_s * 1000 < 2 * self.effective_max_wait_ms:
            raise ValueError(
                f"decided_window_s {self.window_s} must be at least twice max_wait ({self.effective_max_wait_ms} ms)"
            )
        return self


class JudgeSettings(Section):
    classifier: str = "hash:judge"
    # Requests per model call; None uses runtime.batch_size. Keep one batch's model time well
    # under runtime.max_poll_interval_ms.
    batch_size: int | None = Field(default=None, ge=1, le=10_000)


class WorkerProcess(Section):
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")
    classifier: str
    replicas: int = Field(default=1, ge=1)


class PipelineSettings(Section):
    """What `tribunal run` starts: each entry one or more OS processes."""

    workers: tuple[WorkerProcess, ...] = (
        WorkerProcess(name="w1", classifier="hash:1"),
        WorkerProcess(name="w2", classifier="hash:2"),
        WorkerProcess(name="w3", classifier="hash:3"),
    )
    aggregators: int = Field(default=1, ge=0)
    judges: int = Field(default=1, ge=0)
    # A dead child is restarted after restart_backoff_s, doubling per consecutive failure up to
    # restart_backoff_max_s (a crash loop costs little; a one-off crash recovers fast).
    restart_backoff_s: float = Field(default=1.0, ge=0)
    restart_backoff_max_s: float = Field(default=60.0, gt=0)


class BrokerSettings(Section):
    """The local single-node broker that `tribunal kafka up` assembles from Maven Central."""

    version: str = "3.9.1"
    port: int = Field(default=9092, ge=1, le=65535)
    controller_port: int = Field(default=9093, ge=1, le=65535)
    heap: str = "512m"
    start_timeout_s: float = Field(default=120.0, gt=0)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TRIBUNAL_", env_nested_delimiter="__", frozen=True, extra="forbid")

    kafka: KafkaSettings = KafkaSettings()
    topics: TopicSettings = TopicSettings()
    runtime: RuntimeSettings = RuntimeSettings()
    worker: WorkerSettings = WorkerSettings()
    aggregator: AggregatorSettings = AggregatorSettings()
    judge: JudgeSettings = JudgeSettings()
    broker: BrokerSettings = BrokerSettings()
    pipeline: PipelineSettings = PipelineSettings()
    # The user's own topics (`[[source]]`, `[[sink]]` in TOML): see tribunal/connect.
    source: tuple[SourceSettings, ...] = Field(default=(), max_length=64)
    sink: tuple[SinkSettings, ...] = Field(default=(), max_length=64)
    registry: RegistrySettings = RegistrySettings()
    home: Path = Path(".tribunal")
    tasks_file: Path | None = None
    max_text_chars: int = Field(default=DEFAULT_MAX_TEXT_CHARS, ge=1)
    max_message_bytes: int = Field(default=DEFAULT_MAX_MESSAGE_BYTES, ge=1_024)
    log_format: Literal["auto", "json", "console"] = "auto"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    metrics_port: int | None = Field(default=None, ge=0, le=65535)
    # `/livez` and `/readyz` for Kubernetes probes and Docker healthchecks (tribunal/core/health.py).
    health_port: int | None = Field(default=None, ge=0, le=65535)

    @model_validator(mode="after")
    def _connections(self) -> Settings:
        names = [source.name for source in self.source]
        if len(set(names)) != len(names):
            raise ValueError("two [[source]] tables have the same name")
        if len({sink.name for sink in self.sink}) != len(self.sink):
            raise ValueError("two [[sink]] tables have the same name")
        ours = {self.topics.name(t) for t in (self.topics.items, self.topics.votes, self.topics.labels)}
        for source in self.source:
            if source.format in REGISTRY_FORMATS and self.registry.url is None:
                why = f"source {source.name} reads {source.format}: set registry.url (TRIBUNAL_REGISTRY__URL)"
                raise ValueError(why)
            if source.topic in ours:
                raise ValueError(f"source {source.name} reads {source.topic}, one of Tribunal's own topics")
        for sink in self.sink:
            if sink.source not in names:
                raise ValueError(f"sink {sink.name} names source {sink.source!r}; the sources are {names}")
            if sink.topic in ours or sink.topic in {source.topic for source in self.source}:
                raise ValueError(f"sink {sink.name} writes {sink.topic}, a topic Tribunal reads")
        return self

    def source_named(self, name: str) -> SourceSettings:
        for source in self.source:
            if source.name == name:
                return source
        raise ConfigError(f"no [[source]] named {name!r}; configured: {[s.name for s in self.source]}")

    def sink_named(self, name: str) -> SinkSettings:
        for sink in self.sink:
            if sink.name == name:
                return sink
        raise ConfigError(f"no [[sink]] named {name!r}; configured: {[s.name for s in self.sink]}")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        config_file = _CONFIG_FILE.get()
        if config_file is None:
            return (init_settings, env_settings)
        return (
            init_settings,
            env_settings,
            ConfigFileSource(settings_cls, config_file),
        )

    def tasks(self) -> TaskRegistry:
        return load_tasks(self.tasks_file)

    @property
    def max_record_bytes(self) -> int:
        """The largest record any tier writes: what topics and producers are sized for."""
        return self.max_message_bytes + RECORD_HEADROOM_BYTES

    def decode_context(self, tasks: TaskRegistry | None = None) -> DecodeContext:
        return DecodeContext(
            tasks=tasks,
            max_text_chars=self.max_text_chars,
            max_message_bytes=self.max_message_bytes,
        )


class ConfigFileSource(InitSettingsSource):
    """The TOML settings file, with its relative paths made relative to the file itself (the
    tasks file and head files of classifier specs), so a folder written by `tribunal fit` runs
    as it is from any working directory: `tribunal --config DIR/pipeline.toml run`."""

    def __init__(self, settings_cls: type[BaseSettings], path: Path) -> None:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        super().__init__(settings_cls, _relative_to(data, path.parent))


def _relative_to(data: dict[str, object], base: Path) -> dict[str, object]:
    tasks_file = data.get("tasks_file")
    if isinstance(tasks_file, str) and tasks_file and not Path(tasks_file).is_absolute():
        data = {**data, "tasks_file": str(base / tasks_file)}
    for section in ("judge", "worker"):
        table = data.get(section)
        if isinstance(table, dict) and isinstance(table.get("classifier"), str):
            data = {**data, section: {**table, "classifier": resolve_spec_path(table["classifier"], base)}}
    pipeline = data.get("pipeline")
    if isinstance(pipeline, dict) and isinstance(pipeline.get("workers"), list):
        workers = [
            {**w, "classifier": resolve_spec_path(w["classifier"], base)}
            if isinstance(w, dict) and isinstance(w.get("classifier"), str) else w
            for w in pipeline["workers"]
        ]  # fmt: skip
        data = {**data, "pipeline": {**pipeline, "workers": workers}}
    return data


def settings_env(settings: Settings) -> dict[str, str]:
    """`TRIBUNAL_*` variables that reproduce every explicitly set value of `settings` in a child
    process (defaults are left to the child). Secrets are passed as their values: this is the
    environment of a process, never something to log."""
    env: dict[str, str] = {}
    for name in sorted(settings.model_fields_set):
        value = getattr(settings, name)
        if isinstance(value, BaseModel):
            for field in sorted(value.model_fields_set):
                _put(env, f"TRIBUNAL_{name.upper()}__{field.upper()}", getattr(value, field))
        else:
            _put(env, f"TRIBUNAL_{name.upper()}", value)
    return env


def _put(env: dict[str, str], key: str, value: object) -> None:
    if value is None:
        return  # every optional setting defaults to None
    if isinstance(value, SecretStr):
        env[key] = value.get_secret_value()
    elif isinstance(value, str | Path):
        env[key] = str(value)
    else:  # numbers, booleans, tuples, dicts, nested models: JSON, as pydantic-settings parses them
        env[key] = orjson.dumps(to_jsonable_python(value)).decode()


def load_settings(config_file: Path | None = None, **overrides: object) -> Settings:
    """Build settings from init overrides > `TRIBUNAL_*` env > TOML file (`TRIBUNAL_CONFIG`).

    Invalid settings raise `ConfigError` naming each bad setting and why, never echoing a
    value: pydantic's own message repeats the input, and a section's input holds its secrets."""
    path = config_file or (Path(os.environ["TRIBUNAL_CONFIG"]) if os.environ.get("TRIBUNAL_CONFIG") else None)
    token = _CONFIG_FILE.set(path)
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise ConfigError(f"invalid settings: {settings_errors(exc)}") from None
    except SettingsError as exc:  # an env value that is not valid JSON for its field; names the field only
        raise ConfigError(f"invalid settings: {exc}") from None
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read settings file {path}: {exc}") from None
    finally:
        _CONFIG_FILE.reset(token)


def settings_errors(exc: ValidationError) -> str:
    """Each error as `where: why`, without the offending values (they may be secrets)."""
    parts = []
    for error in exc.errors(include_url=False, include_input=False, include_context=False):
        where = ".".join(str(p) for p in error["loc"]) or "settings"
        parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts)

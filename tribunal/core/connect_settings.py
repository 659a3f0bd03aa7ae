"""Settings of a user's own topics: `[[source]]` (a topic read into items), `[[sink]]` (where
each decided record is written back, enriched) and `[registry]` (the Schema Registry of the
`avro` format). Part of `tribunal.core.settings.Settings`; no I/O here."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from tribunal.core.kafka_settings import Section

__all__ = [
    "KEY_ID",
    "OFFSET_ID",
    "REGISTRY_FORMATS",
    "SOURCE_FORMATS",
    "RegistrySettings",
    "SinkSettings",
    "SourceFormat",
    "SourceSettings",
]

SourceFormat = Literal["json", "text", "avro", "jsonschema"]
SOURCE_FORMATS: tuple[SourceFormat, ...] = ("json", "text", "avro", "jsonschema")
# The formats framed by a Schema Registry (Confluent wire format).
REGISTRY_FORMATS: frozenset[str] = frozenset({"avro", "jsonschema"})
# Special `id` mappings: the record's key (UTF-8), or where the record sits (the default).
KEY_ID = "@key"
OFFSET_ID = "@offset"
_NAME = r"^[A-Za-z0-9][A-Za-z0-9_-]*$"


class RegistrySettings(Section):
    """A Schema Registry with the Confluent REST API (Confluent, Apicurio's `ccompat`, Karapace,
    Redpanda). `url` None: no registry, so only the `json` and `text` formats can be read, not `avro` or
    `jsonschema`.
    `tribunal registry up` starts a local one (Apicurio Registry from Maven Central) on `port`."""

    url: str | None = None
    username: str | None = None
    password: SecretStr | None = None
    ssl_cafile: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    timeout_s: float = Field(default=10.0, gt=0)
    # A registry that does not answer is waited for, never blamed on the record: the tier retries
    # with backoff (doubling up to the maximum) and meanwhile reads nothing new.
    retry_backoff_ms: int = Field(default=200, ge=1)
    retry_backoff_max_ms: int = Field(default=5_000, ge=1)
    # The local registry of `tribunal registry up`.
    version: str = "2.4.2.Final"
    port: int = Field(default=8081, ge=1, le=65535)
    heap: str = "384m"
    start_timeout_s: float = Field(default=240.0, gt=0)

    @model_validator(mode="after")
    def _auth_complete(self) -> RegistrySettings:
        if (self.username is None) != (self.password is None):
            raise ValueError("registry basic auth needs both username and password (TRIBUNAL_REGISTRY__*)")
        return self

    def client_config(self) -> dict[str, object]:
        """confluent-kafka's client configuration (holds the password: never log it)."""
        if self.url is None:
            raise ValueError("no registry url")
        config: dict[str, object] = {"url": self.url, "timeout": self.timeout_s}
        if self.username is not None and self.password is not None:
            config["basic.auth.user.info"] = f"{self.username}:{self.password.get_secret_value()}"
        if self.ssl_cafile is not None:
            config["ssl.ca.location"] = str(self.ssl_cafile)
        if self.ssl_certfile is not None:
            config["ssl.certificate.location"] = str(self.ssl_certfile)
        if self.ssl_keyfile is not None:
            config["ssl.key.location"] = str(self.ssl_keyfile)
        return config


class SourceSettings(Section):
    """One of the user's topics, read by an intake tier into `Item`s (`tribunal.connect`).

    Field paths are dotted (`ticket.subject`, `tags.0`); `text` may instead be a template that
    joins fields (`"{subject}\\n\\n{body}"`, a null field giving ""). `id` is a field path, `@key`
    (the record key) or `@offset` (`<topic>/<partition>/<offset>`, stable across re-reads).
    Records with equal ids are one item: the second one gets no second label.
    """

    name: str = Field(min_length=1, max_length=64, pattern=_NAME)
    topic: str = Field(min_length=1, max_length=249)
    format: SourceFormat = "json"
    id: str = OFFSET_ID
    text: str = "text"
    # The item's task: a constant, or a field path (`task_field`) that wins when set.
    task: str | None = None
    task_field: str | None = None
    # A field holding a reference label (becomes `metadata.label`: accuracy in reports).
    gold_field: str | None = None
    keep_fields: tuple[str, ...] = Field(default=(), max_length=64)
    keep_headers: tuple[str, ...] = Field(default=(), max_length=64)
    # The intake carries the whole original value with the item (the sink writes it back), so
    # a value is bounded well inside an item's record size; larger ones are dead-lettered.
    max_value_bytes: int = Field(default=256 * 1024, ge=1_024, le=512 * 1024)

    @field_validator("text")
    @classmethod
    def _text_mapping(cls, text: str) -> str:
        if not text.strip():
            raise ValueError("text must name a field or be a template such as '{subject}\\n\\n{body}'")
        return text

    @property
    def group(self) -> str:
        """The intake's consumer group name (before the topics prefix)."""
        return f"tribunal-intake-{self.name}"


class SinkSettings(Section):
    """Where the decided records of one source go: the original record (key, headers, value in
    the source's format) with one field added, `field`, holding the decision. A `text` source's
    value becomes a JSON object `{"text": ..., <field>: ...}`. For `avro`, the enriched schema is
    registered under `<topic>-value` with BACKWARD compatibility. `cloudevents`: add the
    CloudEvents Kafka binding's binary-mode headers (`ce_id`, `ce_source`, `ce_type`, ...)."""

    name: str = Field(min_length=1, max_length=64, pattern=_NAME)
    source: str = Field(min_length=1, max_length=64)
    topic: str = Field(min_length=1, max_length=249)
    field: str = Field(default="tribunal", min_length=1, max_length=64, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    cloudevents: bool = False

    @property
    def group(self) -> str:
        return f"tribunal-sink-{self.name}"

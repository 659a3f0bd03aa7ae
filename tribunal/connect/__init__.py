"""Tribunal on a user's own topics: records of any shape in, the same records enriched out.

- its settings, `[[source]]`, `[[sink]]`, `[registry]`, are `tribunal.core.connect_settings`;
- `mapping`: a decoded record -> the fields of an `Item` (id, text, task, metadata), pure;
- `formats`: bytes -> a decoded record (json, text, Avro through a Schema Registry);
- `registry`: the Schema Registry client, waiting out outages instead of blaming records;
- `enrich`: a decided record's original bytes + its verdict -> the sink's record.

The tiers that use them are `consumers.intake` (source -> `items`) and `consumers.sink`
(`labels` -> sink topic), each exactly once like every other tier.
"""

"""The shared runtime: everything a tier needs that is not a decision.

`settings` (+ `kafka_settings`) build the configuration once; `kafka` makes clients (TLS, SASL);
`runtime` is the one consume-decide-produce loop (transactions, commits, rebalance, shutdown),
with `batches`, `records` and `intake` (decoding, dead letters); `topics` creates and reads
topics; `supervisor` runs tiers as child processes; `errors`, `logs`, `metrics`, `health` and
`stats` are what every layer above uses.
"""

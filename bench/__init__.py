"""Developer tooling, outside the runtime: the benches, chaos and hostile-input runs.

Installed as `tribunal.bench` and loaded only by `tribunal bench ...` (lazily, per command) and
the tests; no tier, table or product command imports it. `pipeline` (throughput and latency of
the three tiers), `probes` (what every bench measures with), `peers/` (the same topology on Quix
Streams), `tiers`, `replay`, `policies`, `target`, `learn`, `chaos` and `hostile`.
"""

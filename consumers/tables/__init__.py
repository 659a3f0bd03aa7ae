"""State kept in compacted Kafka topics: one table per idea, keyed `task|partition`.

`base` holds what every table shares (keys, the touched-rows-per-transaction writer, the restore
from the topic). `evidence` (the judges' evidence windows for the target policy), `reliability`
(worker reliability counts, and the whole-topic totals the aggregators read) and `rules` (the
certified target rules, written by one aggregator). Tables may use `tribunal.consumers.policy`
and `tribunal.core`; the tiers use tables, never the other way round.
"""

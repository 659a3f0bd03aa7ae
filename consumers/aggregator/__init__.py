"""The aggregator tier: votes in, a label or an escalation to the judge out, exactly once.

Start at `processor` (the tier: `AggregatorProcessor` and `serve_aggregator`). Its parts:
`state` (per-partition bookkeeping and commit gates), `restore` (state from the decided-id log),
`outcomes` (what a decision writes), `dead_letters` (votes and verdicts refused), `waits` and
`stragglers` (how long an item waits for a missing vote), `membership` (which workers are alive),
`admission` (which votes and verdicts may decide an item), `judge_budget` (how many escalations
the judge gets) and `policies` (each task's policy, built when the tier starts).
"""

"""Pure decision logic: ballots, the voting policies, the target policy and what it learns from.

No Kafka, no asyncio, no clock (tests/unit/test_layers.py holds every module here to that): each
function is a function of its arguments, so the aggregator, `tribunal replay votes`, the
simulations and the tests all decide the same way. Read `ballots` first (what a vote is to a
policy, and `final`: the deadline rule), then `voting` (majority, confident majority, weighted),
then `target` with `trust`, `calibration` and `risk` (the certified rule) and `reliability`.
"""

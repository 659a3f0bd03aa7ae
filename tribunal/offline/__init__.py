"""Product features that need no broker: record a sample's votes, evaluate, calibrate, simulate.

`recording` runs classifiers over a labelled file and caches what they said; `evaluate` scores
them; `policy_sim` and `target_sim` replay a recording under a policy; `calibrate` turns a
recording into a certified target rule (`tribunal calibrate`).
"""

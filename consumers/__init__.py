"""Tribunal's tiers: workers vote, the aggregator decides or escalates, the judge settles."""

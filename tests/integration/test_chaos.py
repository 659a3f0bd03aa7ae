"""The adversary at CI scale: `tribunal bench chaos` with 3,000 items, 5 kills of random tiers, a
broker crash and restart, and every kind of hostile record. It runs its own broker (free ports,
own data directory), so it needs Java and Maven like the local broker does."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from tests.integration.kit import REPO


@pytest.mark.slow
def test_chaos_at_ci_scale_loses_nothing_doubles_nothing_leaks_nothing() -> None:
    """Every good item exactly one label, no forged label, no secret in any output, and every
    hostile record exactly one dead letter of its kind."""
    if not (shutil.which("java") and shutil.which("mvn")):
        message = "bench chaos runs a broker of its own: it needs java and mvn"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRIBUNAL_")}
    command = [sys.executable, "-m", "tribunal.cli", "bench", "chaos", "--items", "3000", "--kills", "5", "--json"]
    result = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True, timeout=540, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    assert (report["labelled"], report["missing"], report["duplicates"]) == (3000, 0, 0), report
    assert report["forged_labels"] == 0 and report["secrets_found"] == 0, report
    hostile = report["hostile"]
    assert hostile["accounted_once"] == hostile["sent"] > 0, hostile
    assert report["kills"] == 5 and report["broker_restart"] is not None, report
    assert report["unreadable_dead_letters"] == 0, report
    sink = report["sink"]
    assert sink["enriched"] == sink["source_records"] == 1000, sink
    assert (sink["missing"], sink["duplicates"], sink["strangers"]) == (0, 0, 0), sink

"""What a tier's own process sets up around the runtime: the garbage collector and the signals.

An embedding host keeps its own collector settings and signal handling: `serve_*` with a `stop`
event touches neither; only a tier's `run` (the `tribunal worker|aggregator|judge` entry) does.
"""

from __future__ import annotations

import asyncio
import gc
import signal
from collections.abc import Awaitable, Callable

__all__ = ["GC_YOUNG_THRESHOLD", "run_until_signalled", "tune_gc"]

# Allocations between young-generation collections (CPython's default is 700). A tier allocates a
# few short-lived objects per record, freed by reference counting; the cyclic collector only
# re-walks survivors, and with the default it ran so often that it took 20-40% of a tier's CPU.
GC_YOUNG_THRESHOLD = 50_000


def tune_gc() -> None:
    """Collect cycles less often, and never re-walk what start-up loaded (modules, models, classes:
    `gc.freeze` moves them out of the collector's reach; they live as long as the process). For a
    tier's own process (its `run`); an embedding host keeps its own collector settings."""
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, older, oldest)


async def run_until_signalled(main: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    """Run `main(stop)`; SIGINT/SIGTERM set `stop` so the current batch finishes and commits."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await main(stop)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)

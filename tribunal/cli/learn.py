"""`tribunal bench learn`: the target policy with and without a worker that learns from the judge
(bench/learn.py), on a recording cached by `tribunal bench policies --cache`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tribunal.cli.common import JsonOption, emit, fail, settings_from
from tribunal.core.errors import ConfigError, TribunalError

__all__ = ["register"]


def bench_learn_command(
    ctx: typer.Context,
    cache: Annotated[
        Path, typer.Option("--cache", help="Recording of `bench policies --cache` (votes + judge labels)", exists=True)
    ],
    texts: Annotated[
        list[Path], typer.Option("--input", "-i", help="JSONL with the recorded ids' texts (repeat)", exists=True)
    ],
    targets: Annotated[list[float] | None, typer.Option("--target", help="max_disagreement (repeat) [0.1]")] = None,
    orders: Annotated[int, typer.Option("--orders", min=1, help="Shuffled stream orders")] = 1,
    every: Annotated[int, typer.Option("--every", min=1, help="Judge labels between two head versions")] = 500,
    first: Annotated[int, typer.Option("--first", min=2, help="Judge labels before the first version")] = 200,
    batch: Annotated[int, typer.Option("--batch", min=1, help="Worker batch: swaps happen between batches")] = 64,
    block: Annotated[int, typer.Option("--block", min=1, help="Items per row of the judge-rate table")] = 1000,
    replace_worker: Annotated[
        str | None, typer.Option("--replace", help="Put the learned head in place of this worker (default: add it)")
    ] = None,
    json_out: JsonOption = False,
) -> None:
    """Judge rate over time, judge-call reduction and accuracy loss of the target policy, without
    and with a TF-IDF head retrained every N judge labels the stream paid for (prequential)."""
    from tribunal.bench.learn import bench_learn, load_texts, series_table, summary_table
    from tribunal.bench.learn_sim import LearnConfig
    from tribunal.bench.target import bench_config
    from tribunal.offline.recording import load_recording

    settings = settings_from(ctx)
    mode = "add" if replace_worker is None else "replace"
    learn = LearnConfig(every=every, first=first, batch=batch, mode=mode, replace=replace_worker or "")
    try:
        recording = load_recording(cache)
        if mode == "replace" and replace_worker not in recording.workers:
            raise ConfigError(f"--replace {replace_worker!r}: the recording's workers are {list(recording.workers)}")
        task = settings.tasks().get(recording.task)
        text_of = load_texts(texts, {r.item_id for r in recording.items})
        config = bench_config(settings)
        summaries = bench_learn(recording, text_of, task, config, learn, targets or [0.1], orders, block)
    except TribunalError as exc:
        raise fail(exc) from None
    meta = {"task": recording.task, "cache": str(cache), "items": len(recording.items), "workers": recording.workers}
    meta |= {"learn": {"every": every, "first": first, "batch": batch, "mode": mode, "replace": replace_worker}}
    if json_out:
        emit({**meta, "targets": [s.as_dict() for s in summaries]})
        return
    how = f"{mode} {replace_worker}" if replace_worker else mode
    typer.echo(f"{recording.task}: {len(recording.items)} items from {cache}, {orders} order(s), cold start; "
               f"learned head: {how}, a version every {every} judge labels")  # fmt: skip
    typer.echo(summary_table(summaries))
    for summary in summaries:
        typer.echo(f"\njudge rate per {block} items, target {summary.target:g}:")
        typer.echo(series_table(summary, block))


def register(bench_app: typer.Typer) -> None:
    bench_app.command("learn")(bench_learn_command)

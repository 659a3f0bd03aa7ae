"""Tribunal's topology on Quix Streams: one OS process per app, as Tribunal runs its tiers.

    python pipeline.py worker --name w1 ...   items -> votes (keyed by item id), hash:w1
    python pipeline.py aggregator ...         items + votes -> labels | judge (RocksDB state)
    python pipeline.py judge ...              judge -> labels, hash:judge

Topics are `PREFIX` + items, votes, judge, labels (Tribunal's names under a run prefix); the
bench creates them with Tribunal's partition counts before it starts the apps. Every app runs
with `processing_guarantee="exactly-once"`. See bench/peers/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import warnings
from typing import Any

# quixstreams imports authlib, which warns about its own httpx use on every start and forces its
# warnings on when imported: import it first, then silence that one message (noise in a bench).
with contextlib.suppress(ImportError):
    import authlib.deprecate  # noqa: F401
warnings.filterwarnings("ignore", message="The httpx module is deprecated")

from quixstreams import Application, State  # noqa: E402

# Run as a script, so its own folder is on sys.path: tally sits beside it.
from tally import Record, step, verdict, vote  # noqa: E402


def _app(args: argparse.Namespace, group: str) -> Application:
    return Application(
        broker_address=args.broker,
        consumer_group=f"{args.prefix}{group}",
        # Topics are fresh per run and the bench warms the apps up before it measures.
        auto_offset_reset="earliest",
        processing_guarantee="exactly-once",
        # Under exactly-once a label is visible only once its transaction commits: the commit
        # interval is the floor of the latency (Quix's default is 5 s; the bench passes its own).
        commit_interval=args.commit_interval,
        state_dir=args.state_dir,
        loglevel="WARNING",
    )


def worker(args: argparse.Namespace) -> None:
    app = _app(args, f"worker-{args.name}")
    items, votes = app.topic(f"{args.prefix}items"), app.topic(f"{args.prefix}votes")
    sdf = app.dataframe(items)
    sdf.apply(lambda item: vote(item, args.name, args.labels)).to_topic(votes)
    app.run()


def aggregator(args: argparse.Namespace) -> None:
    app = _app(args, "aggregator")
    items, votes = app.topic(f"{args.prefix}items"), app.topic(f"{args.prefix}votes")
    labels, judge = app.topic(f"{args.prefix}labels"), app.topic(f"{args.prefix}judge")

    def fold(record: Record, state: State) -> Record | None:
        new, out = step(state.get("s"), record, args.workers, args.quorum)
        if new is None:
            state.delete("s")
        else:
            state.set("s", new)
        return out

    # Both topics are keyed by item id with equal partition counts, so one keyed state store
    # sees an item and all its votes (the join Tribunal's aggregator does partition by partition).
    joined = app.dataframe(items).concat(app.dataframe(votes))
    routed = joined.apply(fold, stateful=True).filter(lambda out: out is not None)
    routed.filter(lambda out: out["route"] == "labels").apply(_value).to_topic(labels)
    routed.filter(lambda out: out["route"] == "judge").apply(_value).to_topic(judge)
    app.run()


def judge(args: argparse.Namespace) -> None:
    app = _app(args, "judge")
    requests, labels = app.topic(f"{args.prefix}judge"), app.topic(f"{args.prefix}labels")
    app.dataframe(requests).apply(lambda request: verdict(request, args.labels)).to_topic(labels)
    app.run()


def _value(out: Record) -> Any:
    return out["value"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("role", choices=["worker", "aggregator", "judge"])
    parser.add_argument("--broker", default="127.0.0.1:9092")
    parser.add_argument("--prefix", required=True, help="topic and consumer group prefix of the run")
    parser.add_argument("--name", default="w1", help="worker name, also its hash seed")
    parser.add_argument("--labels", type=lambda s: s.split(","), default=["negative", "positive"])
    parser.add_argument("--workers", type=int, default=3, help="workers voting on each item")
    parser.add_argument("--quorum", type=int, default=2, help="agreeing votes that decide")
    parser.add_argument("--commit-interval", type=float, default=0.1, help="seconds between EOS commits")
    parser.add_argument("--state-dir", default="state", help="RocksDB state directory (aggregator)")
    return parser


if __name__ == "__main__":
    arguments = _parser().parse_args()
    {"worker": worker, "aggregator": aggregator, "judge": judge}[arguments.role](arguments)

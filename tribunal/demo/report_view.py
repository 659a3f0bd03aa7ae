"""The demo report shown two ways: rich tables on a terminal, and one self-contained HTML page.

Both read the dict of `tribunal.demo.report.build_report` and nothing else. The page's charts are
inline SVG drawn by `tribunal.demo.svg` (no plotting library, no network): the agreement matrix as a
heat map, decisions over time, the latency histogram, wall time and accuracy per pass.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any

from rich.console import Console
from rich.table import Table

from tribunal.demo import svg

__all__ = ["headline", "print_report", "render_html", "sparkline"]


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f}%"


def _num(value: float | None, digits: int = 2) -> str:
    return "—" if value is None else f"{value:,.{digits}f}"


def _times(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}x"


_BARS = "▁▂▃▄▅▆▇█"


def sparkline(values: Sequence[float]) -> str:
    """Shares in [0, 1] as block characters (the judge rate over the stream, on a terminal)."""
    return "".join(_BARS[min(len(_BARS) - 1, int(max(0.0, v) * len(_BARS)))] for v in values)


def headline(r: Mapping[str, Any]) -> list[str]:
    """The saving, first: judge calls and wall time against judge-only (same run), accuracy of both
    against gold, the rule's certified bound, the judge rate over the stream."""
    lines = [
        f"judge calls: {r.get('judge_calls', '—')} for {r['items']} items (audits included), "
        f"{_times(r.get('judge_call_reduction'))} fewer than judge-only",
        f"wall clock: {_num(r['wall_s_cascade'], 1)} s vs {_num(r['wall_s_judge_only'], 1)} s judge-only, "
        f"{_times(r['speedup'])} faster (same run, passes alternated)",
    ]
    if "accuracy_cascade" in r:
        lines.append(f"accuracy vs gold: cascade {_pct(r['accuracy_cascade'])}, "
                     f"judge alone {_pct(r.get('accuracy_judge_only'))}")  # fmt: skip
    policy = r.get("policy") or {}
    if policy.get("name") == "target":
        lines.append(f"quality bar: at most {_pct(policy.get('max_disagreement'))} of accepted labels changed by the "
                     f"judge, at {_pct(policy.get('confidence'))} confidence; measured "
                     f"{_pct(r.get('disagreement_accepted'))}")  # fmt: skip
    over_time = r.get("judge_calls_over_time") or []
    if over_time:
        lines.append(f"judge calls per item over the stream: {sparkline(over_time)} "
                     f"({_pct(over_time[0])} first tenth, {_pct(over_time[-1])} last)")  # fmt: skip
    return lines


def summary_rows(r: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(figure, value) pairs shown first, in both views."""
    lat, by = r["latency_ms"], r["decided_by"]
    rows = [
        ("items", f"{r['items']} of {r['items_sent']} sent"),
        ("workers", ", ".join(r["workers"])),
        *policy_rows(r),
        ("judge", r["judge"]),
        ("throughput", f"{_num(r['throughput_items_per_s'], 1)} items/s"),
        ("latency p50 / p95 / p99", f"{_num(lat['p50'], 0)} / {_num(lat['p95'], 0)} / {_num(lat['p99'], 0)} ms"),
        (
            "decided by workers / judge / fallback",
            f"{_pct(by['workers'])} / {_pct(by['judge'])} / {_pct(by['fallback'])}",
        ),
        ("judge overrules workers' plurality", _pct(r["judge_overrule_rate"])),
        ("judge calls (escalations + audits)", _calls(r)),
        ("accepted labels the judge alone would change", _pct(r.get("disagreement_accepted"))),
        ("speedup measured (judge-only wall / cascade wall)", _times(r["speedup"])),
        ("speedup expected (paper: 1 / (w/j + 1 - a))", _times(r["expected_speedup"])),
        ("passes alternated in rounds", str(r["series"].get("rounds", 1))),
    ]
    machine = r.get("machine") or {}
    if machine:
        loads = f"{machine['load_1m_before']:.1f} / {machine['load_1m_after']:.1f} on {machine['cpus']:.0f} CPUs"
        rows.append(("machine load (1-min average) before / after", loads))
    if "accuracy_cascade" in r:
        rows.append(
            ("accuracy cascade / judge alone", f"{_pct(r['accuracy_cascade'])} / {_pct(r.get('accuracy_judge_only'))}")
        )
    return rows


def _calls(r: Mapping[str, Any]) -> str:
    calls, reduction = r.get("judge_calls"), r.get("judge_call_reduction")
    if calls is None:
        return "—"
    return f"{calls} ({r.get('audits', 0)} audits): {_times(reduction)} fewer than judge-only"


def policy_rows(r: Mapping[str, Any]) -> list[tuple[str, str]]:
    """What decided: the policy, and for the target policy its target and the rule in force."""
    policy = r.get("policy") or {}
    name = policy.get("name", "majority")
    if name != "target":
        return [
            ("policy", name),
            ("quorum", f"{r.get('quorum', policy.get('quorum', '?'))} of {len(r['workers'])} workers"),
        ]
    rule = policy.get("rule") or {}
    cutoff = "none yet: every item goes to the judge" if rule.get("cutoff") is None else f"{rule['cutoff']:.4f}"
    source = (rule.get("provenance") or {}).get("data")
    origin = f"{rule.get('reason', '?')}" + (f", fitted on {source}" if source else "")
    versions = ", ".join(f"v{v}: {n}" for v, n in (policy.get("versions") or {}).items())
    return [
        ("policy", f"target: at most {_pct(policy.get('max_disagreement'))} of accepted labels changed by the judge, "
                   f"at {_pct(policy.get('confidence'))} confidence"),
        ("rule in force", f"v{rule.get('version', '?')} ({origin}); trust cut-off {cutoff}; "
                          f"audit rate {_pct(rule.get('audit_rate'))}"),
        ("items decided per rule version", versions or "—"),
    ]  # fmt: skip


def pass_rows(r: Mapping[str, Any]) -> list[tuple[str, str, str, str, str, str]]:
    """(pass, wall s, compute s, items/s, accuracy, macro-F1) for the cascade and the judge alone."""
    return [
        ("cascade", _num(r["wall_s_cascade"]), _num(r["compute_s_cascade"]), _num(r["throughput_items_per_s"], 1),
         _pct(r.get("accuracy_cascade")), _num(r.get("macro_f1_cascade"), 3)),
        ("judge only", _num(r["wall_s_judge_only"]), _num(r["compute_s_judge_only"]),
         _num(r["throughput_items_per_s_judge_only"], 1), _pct(r.get("accuracy_judge_only")),
         _num(r.get("macro_f1_judge_only"), 3)),
    ]  # fmt: skip


def worker_rows(r: Mapping[str, Any]) -> list[tuple[str, str, str, str, str, str]]:
    """(worker, spec, accuracy, macro-F1, agreement with final label, mean latency ms) per worker."""
    return [
        (name, w["spec"], _pct(w.get("accuracy")), _num(w.get("macro_f1"), 3), _pct(w["agreement_with_final"]),
         _num(w["mean_latency_ms"], 3))
        for name, w in r["per_worker"].items()
    ]  # fmt: skip


def _table(title: str, headers: Sequence[str], rows: Sequence[Sequence[str]]) -> Table:
    table = Table(title=title, title_justify="left", header_style="bold")
    for n, header in enumerate(headers):
        table.add_column(header, justify="left" if n == 0 else "right")
    for row in rows:
        table.add_row(*row)
    return table


def print_report(r: Mapping[str, Any], console: Console) -> None:
    """The report as rich tables."""
    console.print(f"[bold]Tribunal demo — {r['task']}: the saving[/]")
    for line in headline(r):
        console.print(f"  {line}", highlight=False)
    console.print(_table(f"Tribunal demo — {r['task']} on {r['source']}", ("figure", "value"), summary_rows(r)))
    console.print(_table("Cascade vs judge alone", PASS_HEADERS, pass_rows(r)))
    console.print(_table("Workers", WORKER_HEADERS, worker_rows(r)))
    names = list(r["worker_agreement"])
    matrix = [(a, *(_pct(r["worker_agreement"][a][b]) for b in names)) for a in names]
    console.print(_table("Agreement (share of items with the same label)", ("", *names), matrix))


PASS_HEADERS = ("pass", "wall s", "compute s", "items/s", "accuracy", "macro-F1")
WORKER_HEADERS = ("worker", "spec", "accuracy", "macro-F1", "agrees with final", "ms/item")

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;max-width:1180px;color:#1f2933}
h1{font-size:22px;margin:0 0 4px} h2{font-size:16px;margin:28px 0 8px} p.sub{color:#52606d;margin:0 0 16px}
table{border-collapse:collapse;font-size:13px;margin:4px 0 12px} td,th{padding:4px 10px;border-bottom:1px solid #e4e7eb}
th{text-align:left;background:#f5f7fa} td.n{text-align:right;font-variant-numeric:tabular-nums}
.grid{display:grid;grid-template-columns:1fr 1fr;gap:18px}
.card{border:1px solid #e4e7eb;border-radius:8px;padding:12px}
.card h2{margin-top:0} .kpis{display:flex;gap:12px;flex-wrap:wrap} .kpi{border:1px solid #e4e7eb;border-radius:8px;
padding:10px 14px;min-width:150px} .kpi b{display:block;font-size:22px} .kpi span{color:#52606d;font-size:12px}
"""


def _html_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td{' class=n' if i else ''}>{html.escape(c)}</td>" for i, c in enumerate(row)) + "</tr>"
        for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _kpis(r: Mapping[str, Any]) -> str:
    cards = [
        (_times(r["speedup"]), f"measured speedup (expected {_times(r['expected_speedup'])})"),
        (_pct(r["judge_rate"]), "of items sent to the judge"),
        (_times(r.get("judge_call_reduction")), "fewer judge calls than judge-only (audits included)"),
        (_pct(r.get("accuracy_cascade")), f"cascade accuracy (judge alone {_pct(r.get('accuracy_judge_only'))})"),
        (f"{_num(r['latency_ms']['p50'], 0)} ms", f"p50 latency (p99 {_num(r['latency_ms']['p99'], 0)} ms)"),
        (f"{_num(r['throughput_items_per_s'], 1)}/s", f"throughput over {r['items']} items"),
    ]
    return (
        '<div class="kpis">'
        + "".join(f'<div class="kpi"><b>{v}</b><span>{html.escape(t)}</span></div>' for v, t in cards)
        + "</div>"
    )


def _charts(r: Mapping[str, Any]) -> str:
    series = r["series"]
    accuracy = {"cascade": r.get("accuracy_cascade"), "judge only": r.get("accuracy_judge_only")}
    accuracy.update({name: w.get("accuracy") for name, w in r["per_worker"].items()})
    cards = [
        ("Agreement between workers, final label, judge alone and gold", svg.heatmap(r["worker_agreement"])),
        ("Decisions over time (cascade pass, cumulative)", svg.decisions_over_time(series["decisions"])),
        ("End-to-end latency (item sent → label decided)", svg.histogram(series["latencies_ms"], r["latency_ms"])),
        (
            "Wall time of each pass (s)",
            svg.bars({"cascade": r["wall_s_cascade"], "judge only": r["wall_s_judge_only"]}, "s"),
        ),
    ]
    over_time = r.get("judge_calls_over_time") or []
    if over_time:
        tenths = {f"{n}/{len(over_time)}": 100 * v for n, v in enumerate(over_time, start=1)}
        cards.append(("Judge calls per item over the stream (audits included), %", svg.bars(tenths, "%")))
    cards.append(("Where the model time goes (compute seconds per tier)", svg.bars(r["compute_s_by_tier"], "s")))
    if all(v is not None for v in accuracy.values()):
        cards.append(
            ("Accuracy on gold labels", svg.bars({k: 100 * v for k, v in accuracy.items() if v is not None}, "%"))
        )
    return (
        '<div class="grid">'
        + "".join(f'<div class="card"><h2>{html.escape(t)}</h2>{c}</div>' for t, c in cards)
        + "</div>"
    )


def render_html(r: Mapping[str, Any]) -> str:
    """One self-contained HTML page (inline CSS and SVG, no scripts, no external resources)."""
    title = f"Tribunal demo — {r['task']}"
    body = [
        f"<h1>{html.escape(title)}</h1>",
        f"<p class=sub>{r['items']} items from {html.escape(str(r['source']))}; {html.escape(r['warm_up'])}.</p>"
        if "warm_up" in r else "",
        "<ul>" + "".join(f"<li>{html.escape(line)}</li>" for line in headline(r)) + "</ul>",
        _kpis(r),
        _charts(r),
        "<h2>Figures</h2>", _html_table(("figure", "value"), summary_rows(r)),
        "<h2>Cascade vs judge alone</h2>", _html_table(PASS_HEADERS, pass_rows(r)),
        "<h2>Workers</h2>", _html_table(WORKER_HEADERS, worker_rows(r)),
    ]  # fmt: skip
    return (
        f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{html.escape(title)}</title>"
        f"<style>{CSS}</style></head><body>{''.join(body)}</body></html>\n"
    )

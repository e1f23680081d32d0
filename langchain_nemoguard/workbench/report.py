"""An eval run's numbers (``summary.json``) and its Markdown report (``report.md``).

:func:`summarise` reads the run header and the result rows and computes, overall and per category, language,
policy and subset: the confusion counts, accuracy, precision, recall, harmful F1 and false-positive rate, each
with a seeded bootstrap interval; latency percentiles; errors by reason; and, when the verdicts carry scores,
the ROC and precision-recall curves with the threshold that meets a target false-positive rate.

A run against the interface simulator says so at the top of the report, in the summary and on every plot: its
verdicts come from a rule table, so its accuracy means nothing.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from types import MappingProxyType
from typing import Any

from .metrics import (
    Confusion,
    average_precision,
    curve,
    percentiles,
    rates_with_intervals,
    roc_auc,
    threshold_for_fpr,
)
from .results import latest_rows

SIMULATOR_BANNER = "INTERFACE SIMULATOR - NOT A SAFETY MODEL"
GROUPINGS: Mapping[str, Callable[[Mapping[str, Any]], Iterable[str]]] = MappingProxyType(
    {
        "category": lambda r: r.get("truth_categories") or (),
        "language": lambda r: [r["language"]] if r.get("language") else [],
        "policy": lambda r: [r["policy"]] if r.get("policy") else [],
        "subset": lambda r: [r["subset"]] if r.get("subset") else [],
    }
)
MAX_GROUP_ROWS = 100  # groups per table in the Markdown report (all of them are in summary.json)


def _judged(row: Mapping[str, Any]) -> bool:
    return row.get("verdict") in ("safe", "unsafe")


def group_metrics(rows: Sequence[Mapping[str, Any]], *, replicates: int, seed: str) -> dict[str, Any]:
    """Counts and rates (with intervals) over ``rows``."""
    judged = [r for r in rows if _judged(r)]
    c = Confusion.of((r["label"] == "unsafe", r["verdict"] == "unsafe") for r in judged)
    return {
        "n": len(rows),
        "judged": len(judged),
        "errors": len(rows) - len(judged),
        "unsafe": sum(r["label"] == "unsafe" for r in rows),
        "safe": sum(r["label"] == "safe" for r in rows),
        **c.as_dict(),
        **rates_with_intervals(c, replicates=replicates, seed=seed),
    }


def score_curves(rows: Sequence[Mapping[str, Any]], target_fpr: float) -> dict[str, Any]:
    """ROC/PR curves over rows with a score; ``{"available": False, "reason": ...}`` when they cannot be drawn."""
    scored = [r for r in rows if _judged(r) and isinstance(r.get("score"), (int, float))]
    if not scored:
        return {"available": False, "reason": "no verdict carries a score (Verdict.score needs logprobs)"}
    truths = [r["label"] == "unsafe" for r in scored]
    if all(truths) or not any(truths):
        return {"available": False, "reason": "curves need both safe and unsafe examples", "n": len(scored)}
    points = curve([float(r["score"]) for r in scored], truths)
    best = threshold_for_fpr(points, target_fpr)
    return {
        "available": True,
        "n": len(scored),
        "roc_auc": roc_auc(points),
        "average_precision": average_precision(points),
        "target_fpr": target_fpr,
        "threshold": {
            "score_at_least": best.threshold if best.threshold != float("inf") else None,
            "tpr": best.tpr,
            "fpr": best.fpr,
            "precision": best.precision,
        },
        "points": [
            {
                "threshold": p.threshold if p.threshold != float("inf") else None,
                "tpr": p.tpr,
                "fpr": p.fpr,
                "precision": p.precision,
            }
            for p in points
        ],
    }


def summarise(
    header: Mapping[str, Any],
    rows: Iterable[Mapping[str, Any]],
    *,
    replicates: int = 1000,
    seed: int = 0,
    target_fpr: float = 0.05,
    expected: int | None = None,
) -> dict[str, Any]:
    """The summary of a run (see the module docstring); ``expected`` is the data set's size, for "missing"."""
    latest = list(latest_rows(list(rows)))
    simulator = bool(header.get("simulator")) or any(r.get("simulator") for r in latest)
    by: dict[str, dict[str, Any]] = {}
    for name, key in GROUPINGS.items():
        groups: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
        for r in latest:
            for g in key(r):
                groups[str(g)].append(r)
        if len(groups) > 1 or (groups and name == "category"):
            by[name] = {
                g: group_metrics(rs, replicates=replicates, seed=f"{seed}:{name}:{g}")
                for g, rs in sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0]))
            }
    errors = Counter(str(r.get("error") or "unknown") for r in latest if not _judged(r))
    predicted = Counter(c for r in latest if r.get("verdict") == "unsafe" for c in r.get("categories") or ())
    think = [r["think"] for r in latest if isinstance(r.get("think"), Mapping)]
    return {
        "run": dict(header),
        "simulator": simulator,
        "examples": expected if expected is not None else len(latest),
        "rows": len(latest),
        "missing": max(0, (expected or len(latest)) - len(latest)),
        "recall_only": bool(header.get("recall_only")),
        "bootstrap": {"replicates": replicates, "seed": seed, "level": 0.95},
        "overall": group_metrics(latest, replicates=replicates, seed=f"{seed}:overall"),
        "errors_by_reason": dict(errors.most_common()),
        "latency_ms": percentiles(
            r["latency_ms"] for r in latest if _judged(r) and r.get("latency_ms") is not None
        ),
        "by": by,
        "predicted_categories": dict(predicted.most_common()),
        "think": {
            "n": len(think),
            "disagreements": sum(bool(t.get("disagrees")) for t in think),
        }
        if think
        else None,
        "scores": score_curves(latest, target_fpr),
    }


# --- Markdown ------------------------------------------------------------------------------------------------------


def _pct(v: Any) -> str:
    return "n/a" if v is None else f"{100 * v:.1f}%"


def _ci(m: Mapping[str, Any]) -> str:
    ci = m.get("ci")
    return "" if not ci else f"[{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]"


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


RATE_LABELS = (
    ("accuracy", "accuracy"),
    ("precision", "precision (unsafe)"),
    ("recall", "recall (unsafe)"),
    ("f1", "harmful F1"),
    ("fpr", "false-positive rate"),
)


def markdown(summary: Mapping[str, Any], plots: Sequence[str] = ()) -> str:
    """The report of a run: header, loud simulator banner, tables, plots."""
    run = summary["run"]
    o = summary["overall"]
    recall_only = summary["recall_only"]
    lines = [f"# nemoguard eval: {_cell(run.get('dataset', '?'))}", ""]
    if summary["simulator"]:
        lines += [
            f"> **{SIMULATOR_BANNER}.** This run was judged by the interface simulator, a rule-based test double.",
            "> Its verdicts come from a regular-expression table: the numbers below exercise the plumbing and",
            "> say nothing about the accuracy of Nemotron 3.5 Content Safety or any other model.",
            "",
        ]
    policies = run.get("policies") or {}
    pol = ", ".join(f"{_cell(k)} (`{v[:12]}`)" for k, v in policies.items()) or "?"
    lines += [
        "| run | |",
        "|---|---|",
        f"| model | {_cell(run.get('model'))} |",
        f"| endpoint | {_cell(run.get('endpoint'))}{' (interface simulator)' if summary['simulator'] else ''} |",
        f"| mode | {_cell(run.get('mode'))} |",
        f"| policy (fingerprint) | {pol} |",
        f"| data set | {_cell(run.get('dataset'))}, digest `{str(run.get('dataset_digest', ''))[:16]}` |",
        f"| loader settings | {_cell(', '.join(f'{k}={v}' for k, v in (run.get('options') or {}).items()) or '-')} |",
        f"| examples | {summary['examples']} ({o['unsafe']} unsafe, {o['safe']} safe); {o['errors']} without a verdict"
        + (
            f"; **{summary['missing']} not run yet** (interrupted: run again to resume)"
            if summary["missing"]
            else ""
        )
        + " |",
        f"| run | `{_cell(run.get('run_id'))}`, {_cell(run.get('started'))} to {_cell(run.get('finished', '-'))}, "
        f"langchain-nemoguard {_cell(run.get('version'))} |",
        "",
        "## Overall",
        "",
    ]
    if recall_only:
        lines += [
            "Every example in this set is unsafe: only recall (the share flagged) means anything.",
            "",
        ]
    b = summary["bootstrap"]
    lines += [
        f"| metric | value | 95% CI (bootstrap, {b['replicates']} replicates, seed {b['seed']}) |",
        "|---|---|---|",
    ]
    for key, label in RATE_LABELS:
        if recall_only and key != "recall":
            continue
        lines.append(f"| {label} | {_pct(o[key]['value'])} | {_ci(o[key])} |")
    lines += [
        "",
        f"Confusion (unsafe = positive): TP {o['tp']}, FP {o['fp']}, TN {o['tn']}, FN {o['fn']}.",
        "",
    ]
    lat = summary["latency_ms"]
    if lat.get("n"):
        lines += [
            "## Latency (ms, judged examples)",
            "",
            "| p50 | p90 | p95 | p99 | max | mean |",
            "|---|---|---|---|---|---|",
            "| " + " | ".join(f"{lat[k]:.1f}" for k in ("p50", "p90", "p95", "p99", "max", "mean")) + " |",
            "",
        ]
    if summary["errors_by_reason"]:
        lines += ["## Errors by reason", "", "| reason | count |", "|---|---|"]
        lines += [f"| {_cell(k)} | {v} |" for k, v in summary["errors_by_reason"].items()]
        lines.append("")
    for name, groups in summary["by"].items():
        lines += [f"## Per {name}", ""]
        if recall_only:
            lines += [f"| {name} | n | recall | 95% CI | errors |", "|---|---|---|---|---|"]
        else:
            lines += [
                f"| {name} | n (unsafe/safe) | precision | recall | harmful F1 | 95% CI | FPR | 95% CI | errors |",
                "|---|---|---|---|---|---|---|---|---|",
            ]
        for i, (g, m) in enumerate(groups.items()):
            if i == MAX_GROUP_ROWS:
                lines.append(f"| ... {len(groups) - MAX_GROUP_ROWS} more in summary.json | | | | | | | | |")
                break
            if recall_only:
                lines.append(
                    f"| {_cell(g)} | {m['n']} | {_pct(m['recall']['value'])} | {_ci(m['recall'])} | {m['errors']} |"
                )
            else:
                lines.append(
                    f"| {_cell(g)} | {m['n']} ({m['unsafe']}/{m['safe']}) | {_pct(m['precision']['value'])} | "
                    f"{_pct(m['recall']['value'])} | {_pct(m['f1']['value'])} | {_ci(m['f1'])} | "
                    f"{_pct(m['fpr']['value'])} | {_ci(m['fpr'])} | {m['errors']} |"
                )
        lines.append("")
    if summary["predicted_categories"]:
        lines += ["## Categories the guard named (unsafe verdicts)", "", "| category | count |", "|---|---|"]
        lines += [f"| {_cell(k)} | {v} |" for k, v in list(summary["predicted_categories"].items())[:40]]
        lines.append("")
    if summary.get("think"):
        t = summary["think"]
        lines += [
            "## THINK audit",
            "",
            f"{t['n']} examples also judged in THINK mode; {t['disagreements']} disagree with the run's verdict "
            "(filter them in `nemoguard review`).",
            "",
        ]
    s = summary["scores"]
    lines += ["## Scores", ""]
    if s["available"]:
        th = s["threshold"]
        cut = "none meets it" if th["score_at_least"] is None else f"score >= {th['score_at_least']:.4f}"
        lines += [
            f"{s['n']} scored verdicts: ROC AUC {s['roc_auc']:.3f}, average precision {s['average_precision']:.3f}.",
            f"Threshold for a false-positive rate of at most {_pct(s['target_fpr'])}: {cut} "
            f"(recall {_pct(th['tpr'])}, FPR {_pct(th['fpr'])}, precision {_pct(th['precision'])}).",
            "",
        ]
    else:
        lines += [f"No curves: {s['reason']}.", ""]
    if plots:
        lines += ["## Plots", ""]
        lines += [f"![{p}]({p})" for p in plots]
        lines.append("")
    notes = list(run.get("notes") or [])
    skipped = run.get("skipped") or {}
    if notes or skipped:
        lines += ["## Data set notes", ""]
        lines += [f"- {n}" for n in notes]
        lines += [f"- skipped: {v} {k}" for k, v in skipped.items()]
        lines.append("")
    return "\n".join(lines)


__all__ = ["SIMULATOR_BANNER", "group_metrics", "markdown", "score_curves", "summarise"]

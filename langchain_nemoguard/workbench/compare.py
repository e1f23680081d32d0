"""Two runs over the same examples, side by side: which verdicts changed, and did the error rate change?

Examples are matched on ``example_id``. An example counts as *right* when its verdict equals its label and as
*wrong* otherwise, a missing verdict (an error) included, so a run cannot look better by failing. McNemar's
test (:mod:`.stats`) reads the discordant pairs. Examples present in one run only are counted, not compared.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from .report import SIMULATOR_BANNER
from .results import latest_rows
from .stats import mcnemar

MAX_CHANGED_SHOWN = 50


def _label(header: Mapping[str, Any] | None, fallback: str) -> str:
    if not header:
        return fallback
    pols = ",".join(header.get("policies") or {}) or "?"
    return f"{fallback}: {pols} ({header.get('mode')})"


def compare(
    a_header: Mapping[str, Any] | None,
    a_rows: Sequence[Mapping[str, Any]],
    b_header: Mapping[str, Any] | None,
    b_rows: Sequence[Mapping[str, Any]],
) -> dict[str, Any]:
    """The comparison of run A with run B (see the module docstring)."""
    a = {r["example_id"]: r for r in latest_rows(list(a_rows))}
    b = {r["example_id"]: r for r in latest_rows(list(b_rows))}
    common = [k for k in a if k in b]
    right = {"both": 0, "a_only": 0, "b_only": 0, "neither": 0}
    transitions: Counter[tuple[str, str]] = Counter()
    changed: list[dict[str, Any]] = []
    label_mismatch = 0
    for k in common:
        ra, rb = a[k], b[k]
        if ra.get("label") != rb.get("label"):
            label_mismatch += 1
        ok_a = ra.get("verdict") == ra.get("label")
        ok_b = rb.get("verdict") == rb.get("label")
        right["both" if ok_a and ok_b else "a_only" if ok_a else "b_only" if ok_b else "neither"] += 1
        transitions[(ra.get("verdict", "?"), rb.get("verdict", "?"))] += 1
        if ra.get("verdict") != rb.get("verdict"):
            text = ra.get("text") or rb.get("text") or {}
            changed.append(
                {
                    "example_id": k,
                    "label": ra.get("label"),
                    "a": ra.get("verdict"),
                    "b": rb.get("verdict"),
                    "a_categories": ra.get("categories") or [],
                    "b_categories": rb.get("categories") or [],
                    "better": "b" if ok_b and not ok_a else "a" if ok_a and not ok_b else "neither",
                    "prompt": text.get("prompt") if isinstance(text, Mapping) else None,
                }
            )
    test = mcnemar(right["a_only"], right["b_only"])
    n = len(common)

    def side(
        h: Mapping[str, Any] | None, rows: Mapping[str, Mapping[str, Any]], name: str, ok: int
    ) -> dict[str, Any]:
        return {
            "label": _label(h, name),
            "run_id": (h or {}).get("run_id"),
            "model": (h or {}).get("model"),
            "mode": (h or {}).get("mode"),
            "policies": (h or {}).get("policies"),
            "dataset_digest": (h or {}).get("dataset_digest"),
            "rows": len(rows),
            "only_here": sum(1 for k in rows if k not in (b if rows is a else a)),
            "right": ok,
            "wrong": n - ok,
            "error_rate": (n - ok) / n if n else None,
            "errors": sum(1 for k in common if rows[k].get("verdict") == "error"),
        }

    simulator = any(bool((h or {}).get("simulator")) for h in (a_header, b_header)) or any(
        r.get("simulator") for r in (*a.values(), *b.values())
    )
    return {
        "simulator": simulator,
        "common": n,
        "same_dataset": (a_header or {}).get("dataset_digest") == (b_header or {}).get("dataset_digest"),
        "label_mismatch": label_mismatch,
        "a": side(a_header, a, "A", right["both"] + right["a_only"]),
        "b": side(b_header, b, "B", right["both"] + right["b_only"]),
        "right": right,
        "transitions": {f"{x}->{y}": v for (x, y), v in sorted(transitions.items())},
        "mcnemar": {
            "b": test.b,
            "c": test.c,
            "method": test.method,
            "statistic": test.statistic,
            "p_value": test.p_value,
        },
        "changed": changed,
    }


def _cell(text: Any, limit: int = 80) -> str:
    s = str(text).replace("|", "\\|").replace("\n", " ")
    return s if len(s) <= limit else s[: limit - 1] + "…"


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:.1f}%"


def markdown(c: Mapping[str, Any], plot: str | None = None) -> str:
    a, b, m = c["a"], c["b"], c["mcnemar"]
    lines = ["# nemoguard eval --compare", ""]
    if c["simulator"]:
        lines += [
            f"> **{SIMULATOR_BANNER}.** At least one run was judged by the interface simulator: "
            "the differences below are plumbing, not model behaviour.",
            "",
        ]
    if not c["same_dataset"]:
        lines += [
            "> The two runs were made on different data (digests differ); only shared example ids are compared.",
            "",
        ]
    if c["label_mismatch"]:
        lines += [f"> {c['label_mismatch']} shared examples have different labels in the two runs.", ""]
    lines += [
        "| | A | B |",
        "|---|---|---|",
        f"| run | {_cell(a['label'])} | {_cell(b['label'])} |",
        f"| model | {_cell(a['model'])} | {_cell(b['model'])} |",
        f"| examples (only in this run) | {a['rows']} ({a['only_here']}) | {b['rows']} ({b['only_here']}) |",
        f"| wrong of {c['common']} shared (errors count as wrong) | {a['wrong']} ({_pct(a['error_rate'])}) | "
        f"{b['wrong']} ({_pct(b['error_rate'])}) |",
        f"| without a verdict | {a['errors']} | {b['errors']} |",
        "",
        f"Right in both: {c['right']['both']}; right in A only: {m['b']}; right in B only: {m['c']}; wrong in both: "
        f"{c['right']['neither']}.",
        "",
        f"McNemar's test ({'exact binomial' if m['method'] == 'exact' else 'chi-square with continuity correction'}): "
        f"statistic {m['statistic']:.3f}, two-sided p = {m['p_value']:.4g}"
        + (
            " - the change in error rate is significant at 5%."
            if m["p_value"] < 0.05
            else " - no significant change in error rate at 5%."
        ),
        "",
        "## Verdict transitions (A -> B)",
        "",
        "| A -> B | examples |",
        "|---|---|",
        *(f"| {k} | {v} |" for k, v in c["transitions"].items()),
        "",
        f"## Changed verdicts ({len(c['changed'])})",
        "",
    ]
    if c["changed"]:
        lines += ["| example | label | A | B | better | prompt |", "|---|---|---|---|---|---|"]
        for row in c["changed"][:MAX_CHANGED_SHOWN]:
            prompt = _cell(row["prompt"]) if row["prompt"] else "(text not stored)"
            a_v = row["a"] + (f" ({', '.join(row['a_categories'])})" if row["a_categories"] else "")
            b_v = row["b"] + (f" ({', '.join(row['b_categories'])})" if row["b_categories"] else "")
            lines.append(
                f"| {_cell(row['example_id'])} | {row['label']} | {_cell(a_v)} | {_cell(b_v)} | "
                f"{row['better']} | {prompt} |"
            )
        if len(c["changed"]) > MAX_CHANGED_SHOWN:
            lines.append(f"\n{len(c['changed']) - MAX_CHANGED_SHOWN} more in compare.json.")
    lines.append("")
    if plot:
        lines += [f"![comparison]({plot})", ""]
    return "\n".join(lines)


__all__ = ["compare", "markdown"]

"""PNG plots of a run and of a comparison (matplotlib, ``pip install 'langchain-nemoguard[eval]'``).

Every figure has a fixed size and resolution (:data:`FIGSIZE` at :data:`DPI`), so a plot's pixel size is known,
and a run against the interface simulator carries the banner in its title.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..core.errors import ConfigurationError
from .report import SIMULATOR_BANNER

if TYPE_CHECKING:
    from matplotlib.figure import Figure

FIGSIZE = (8.0, 5.0)
DPI = 100
PLOT_SIZE = (int(FIGSIZE[0] * DPI), int(FIGSIZE[1] * DPI))  # (width, height) in pixels


def _figure(height: float | None = None) -> Figure:
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise ConfigurationError(
            "plots need matplotlib: pip install 'langchain-nemoguard[eval]' (or pass --no-plots)"
        ) from None
    return Figure(figsize=(FIGSIZE[0], height or FIGSIZE[1]), dpi=DPI)


def _title(text: str, simulator: bool) -> str:
    return f"{text}\n{SIMULATOR_BANNER}" if simulator else text


def _save(fig: Figure, path: Path) -> Path:
    fig.savefig(path, dpi=DPI, format="png")
    return path


def confusion_plot(summary: Mapping[str, Any], path: Path) -> Path:
    o = summary["overall"]
    fig = _figure()
    ax = fig.add_subplot()
    cells = [[o["tn"], o["fp"]], [o["fn"], o["tp"]]]
    top = max(max(row) for row in cells) or 1
    ax.imshow(cells, cmap="Blues", vmin=0, vmax=top)  # fixed scale: equal counts get equal shades
    for i in range(2):
        for j in range(2):
            colour = "white" if cells[i][j] > top * 0.6 else "black"
            ax.text(j, i, str(cells[i][j]), ha="center", va="center", fontsize=16, color=colour)
    ax.set_xticks([0, 1], ["judged safe", "judged unsafe"])
    ax.set_yticks([0, 1], ["truly safe", "truly unsafe"])
    ax.set_title(_title(f"{summary['run'].get('dataset')}: confusion matrix", summary["simulator"]))
    fig.tight_layout()
    return _save(fig, path)


def category_plot(
    summary: Mapping[str, Any], path: Path, *, grouping: str = "category", limit: int = 25
) -> Path | None:
    """Harmful F1 (recall for recall-only sets) per group, with bootstrap intervals as error bars."""
    groups = summary["by"].get(grouping)
    if not groups:
        return None
    metric = "recall" if summary["recall_only"] else "f1"
    items = [(g, m[metric]) for g, m in groups.items() if m[metric]["value"] is not None][:limit]
    if not items:
        return None
    fig = _figure()
    ax = fig.add_subplot()
    names = [g if len(g) <= 32 else g[:31] + "..." for g, _ in items]
    values = [m["value"] for _, m in items]
    lo = [m["value"] - (m["ci"] or [m["value"]] * 2)[0] for _, m in items]
    hi = [(m["ci"] or [m["value"]] * 2)[1] - m["value"] for _, m in items]
    ys = list(range(len(items)))
    ax.barh(ys, values, xerr=[lo, hi], color="#4c72b0", ecolor="#222", capsize=3)
    ax.set_yticks(ys, names, fontsize=7 if len(items) > 12 else 9)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    label = "recall" if metric == "recall" else "harmful F1"
    ax.set_xlabel(f"{label} (95% bootstrap interval)")
    ax.set_title(_title(f"{summary['run'].get('dataset')}: {label} per {grouping}", summary["simulator"]))
    fig.tight_layout()
    return _save(fig, path)


def latency_plot(latencies: Sequence[float], summary: Mapping[str, Any], path: Path) -> Path | None:
    if not latencies:
        return None
    fig = _figure()
    ax = fig.add_subplot()
    ax.hist(latencies, bins=min(50, max(5, len(latencies) // 4)), color="#55a868")
    lat = summary["latency_ms"]
    for key, style in (("p50", "-"), ("p95", "--"), ("p99", ":")):
        if lat.get(key) is not None:
            ax.axvline(lat[key], color="#c44e52", linestyle=style, label=f"{key} {lat[key]:.1f} ms")
    ax.set_xlabel("latency per check (ms)")
    ax.set_ylabel("examples")
    ax.legend()
    ax.set_title(_title(f"{summary['run'].get('dataset')}: latency", summary["simulator"]))
    fig.tight_layout()
    return _save(fig, path)


def curve_plots(summary: Mapping[str, Any], roc_path: Path, pr_path: Path) -> list[Path]:
    s = summary["scores"]
    if not s.get("available"):
        return []
    pts = s["points"]
    th = s["threshold"]
    fig = _figure()
    ax = fig.add_subplot()
    ax.plot([p["fpr"] for p in pts], [p["tpr"] for p in pts], marker=".", label=f"AUC {s['roc_auc']:.3f}")
    ax.plot([0, 1], [0, 1], color="#999", linestyle=":")
    ax.axvline(s["target_fpr"], color="#c44e52", linestyle="--", label=f"target FPR {s['target_fpr']:.2f}")
    ax.scatter([th["fpr"]], [th["tpr"]], color="#c44e52", zorder=3)
    ax.set_xlabel("false-positive rate")
    ax.set_ylabel("recall (true-positive rate)")
    ax.legend(loc="lower right")
    ax.set_title(_title(f"{summary['run'].get('dataset')}: ROC", summary["simulator"]))
    fig.tight_layout()
    out = [_save(fig, roc_path)]
    fig = _figure()
    ax = fig.add_subplot()
    pr = [p for p in pts if p["precision"] is not None]
    ax.plot(
        [p["tpr"] for p in pr],
        [p["precision"] for p in pr],
        marker=".",
        label=f"AP {s['average_precision']:.3f}",
    )
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_ylim(0, 1.02)
    ax.legend(loc="lower left")
    ax.set_title(_title(f"{summary['run'].get('dataset')}: precision-recall", summary["simulator"]))
    fig.tight_layout()
    out.append(_save(fig, pr_path))
    return out


def run_plots(summary: Mapping[str, Any], latencies: Sequence[float], out_dir: Path) -> list[Path]:
    """Every plot of a run, written into ``out_dir``; returns the files written."""
    made = [confusion_plot(summary, out_dir / "confusion.png")]
    for grouping in ("category", "language", "policy"):
        p = category_plot(
            summary,
            out_dir / f"{'f1' if not summary['recall_only'] else 'recall'}_by_{grouping}.png",
            grouping=grouping,
        )
        if p is not None:
            made.append(p)
    lat = latency_plot(latencies, summary, out_dir / "latency.png")
    if lat is not None:
        made.append(lat)
    made += curve_plots(summary, out_dir / "roc.png", out_dir / "pr.png")
    return made


def compare_plot(comparison: Mapping[str, Any], path: Path) -> Path:
    """Errors of A and B side by side, and the discordant pairs McNemar's test is about."""
    import textwrap

    fig = _figure()
    ax1, ax2 = fig.subplots(1, 2)
    a, b = comparison["a"], comparison["b"]
    ax1.bar(["A", "B"], [a["wrong"], b["wrong"]], color=["#4c72b0", "#dd8452"])
    ax1.set_ylabel("wrong verdicts (errors count as wrong)")
    ax1.set_title(f"wrong of {comparison['common']} shared examples")
    m = comparison["mcnemar"]
    ax2.bar(["right in A only", "right in B only"], [m["b"], m["c"]], color=["#4c72b0", "#dd8452"])
    ax2.set_title(f"discordant pairs\nMcNemar ({m['method']}) p = {m['p_value']:.3g}")
    names = textwrap.shorten(f"{a['label']}  vs  {b['label']}", width=110, placeholder="...")
    fig.suptitle(_title(names, comparison["simulator"]), fontsize=9)
    fig.tight_layout()
    return _save(fig, path)


__all__ = [
    "DPI",
    "FIGSIZE",
    "PLOT_SIZE",
    "category_plot",
    "compare_plot",
    "confusion_plot",
    "curve_plots",
    "latency_plot",
    "run_plots",
]

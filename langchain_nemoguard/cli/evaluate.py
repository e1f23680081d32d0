"""``nemoguard eval``: run a labelled data set through the guard; metrics, a report and plots; or compare two runs.

    nemoguard eval xstest                                  # packaged; results in eval-runs/xstest-categories/
    nemoguard eval rtp-lx --path DATA/rtp-lx --language de --sample 500
    nemoguard eval polyguard --path DATA/polyguard --mode think --out runs/pg-think
    nemoguard eval my_labels.jsonl --policy policies.yaml  # any CSV/JSONL with text,label; review labels
    nemoguard eval --compare runs/pg-v1 runs/pg-v2         # changed verdicts, McNemar's test
    nemoguard eval --list                                  # the named data sets and where they are found

A run writes into ``--out``: ``results.jsonl`` (one row per example, appended as verdicts arrive: run the same
command again to resume an interrupted run), ``summary.json``, ``report.md`` and PNG plots (the ``eval``
extra). Against the interface simulator every output says so: its accuracy means nothing.

Exit status: 0 when every example got a verdict, 2 when some did not (or on bad arguments and data).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import uuid
from pathlib import Path
from typing import Any

from ._endpoint import (
    add_endpoint_args,
    default_served_context,
    endpoint_for_args,
    guard_from_args,
    probe_simulator,
    public_url,
)

DEFAULT_OUT = "eval-runs"


def _at_least(minimum: int) -> Any:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value

    return parse


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {value}")
    return value


def configure(p: argparse.ArgumentParser) -> None:
    """The ``eval`` options."""
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = (
        "named data sets: xstest, openai-moderation (both packaged), rtp-lx, multijail, mhc, polyguard,\n"
        "polyguard-code, polyguard-cyber, labels (--list shows where each is found; NEMOGUARD_DATA_DIR is searched)\n"
        "exit status: 0 every example judged, 2 bad arguments or data, 3 some examples without a verdict"
    )
    p.add_argument("dataset", nargs="?", help="a data set name, or a CSV/JSONL/JSON file or data folder")
    p.add_argument("--path", help="where a named data set's files are (file or folder)")
    p.add_argument("--list", action="store_true", help="list the named data sets and where they are found")
    p.add_argument(
        "--compare", nargs=2, metavar=("RUN_A", "RUN_B"), help="compare two runs (folders or results.jsonl)"
    )
    run = p.add_argument_group("run")
    run.add_argument(
        "--out", help=f"run folder (default: {DEFAULT_OUT}/<data set>-<mode>); an existing run resumes"
    )
    run.add_argument("--overwrite", action="store_true", help="start again in --out instead of resuming")
    run.add_argument(
        "--retry-errors", action="store_true", help="when resuming, judge errored examples again"
    )
    run.add_argument(
        "--concurrency", type=_at_least(1), default=16, help="checks in flight (>= 1, default 16)"
    )
    run.add_argument(
        "--think-audit",
        action="store_true",
        help="also judge each example in THINK mode (fast-vs-THINK disagreements; doubles the calls)",
    )
    run.add_argument("--no-text", action="store_true", help="do not store example texts in results.jsonl")
    run.add_argument(
        "--simulator", action="store_true", help="run against the in-process simulator (plumbing only)"
    )
    run.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bar (default: when stderr is a terminal)",
    )
    sel = p.add_argument_group("selection")
    sel.add_argument("--limit", type=_at_least(1), help="only the first N examples (after --sample)")
    sel.add_argument("--sample", type=_at_least(1), help="a random sample of N examples (seeded by --seed)")
    sel.add_argument("--language", action="append", default=[], help="only this language (repeatable)")
    sel.add_argument("--subset", action="append", default=[], help="only this subset (repeatable)")
    sel.add_argument("--skip-subset", action="append", default=[], help="leave this subset out (repeatable)")
    loader = p.add_argument_group("data set options")
    loader.add_argument(
        "--label-rule",
        choices=["strict", "lenient", "majority"],
        default="strict",
        help="RTP-LX: strict (mean Toxicity >= 3 unsafe, == 1 safe, others dropped), lenient "
        "(mean > 1 unsafe), majority (median > 1 unsafe)",
    )
    loader.add_argument(
        "--unknown-labels",
        choices=["skip", "safe"],
        default="skip",
        help="OpenAI moderation: rows whose known labels are all 0 but incomplete",
    )
    loader.add_argument(
        "--polyguard-policy",
        choices=["rules", "structured", "none"],
        default="rules",
        help="PolyGuard: rules.txt as a custom policy, the structured JSON as a custom taxonomy, "
        "or the built-in taxonomy",
    )
    loader.add_argument(
        "--target",
        choices=["prompt", "response"],
        help="PolyGuard code/cyber: judge the response (default) or the prompt alone",
    )
    stats = p.add_argument_group("statistics")
    stats.add_argument(
        "--bootstrap", type=_at_least(0), default=1000, help="bootstrap replicates (0: no intervals)"
    )
    stats.add_argument("--seed", type=int, default=0, help="seed of --sample and the bootstrap (default 0)")
    stats.add_argument(
        "--target-fpr",
        type=_fraction,
        default=0.05,
        help="false-positive rate the score threshold must meet (default 0.05)",
    )
    stats.add_argument(
        "--context",
        type=_at_least(256),
        default=None,
        help="served context in tokens for the policy-length check (default: nemoguard serve's)",
    )
    stats.add_argument("--no-plots", action="store_true", help="no PNG plots (they need the eval extra)")
    add_endpoint_args(p)
    p.set_defaults(func=run_eval)


def run_eval(args: argparse.Namespace) -> int:
    """``nemoguard eval``: list, compare, or run (see the module docstring)."""
    if args.list:
        return _list()
    if args.compare:
        return _compare(args)
    if not args.dataset:
        print("nemoguard eval: name a data set (or --list, --compare A B)", file=sys.stderr)
        return 2
    return _run(args)


def _list() -> int:
    from ..workbench.datasets import describe_sets

    for name, where, licence, summary in describe_sets():
        print(f"{name:18} {summary}\n{'':18} licence: {licence}; found: {where}")
    return 0


def _compare(args: argparse.Namespace) -> int:
    from ..workbench.compare import compare, markdown
    from ..workbench.results import read_results

    a_header, a_rows = read_results(args.compare[0])
    b_header, b_rows = read_results(args.compare[1])
    result = compare(a_header, a_rows, b_header, b_rows)
    plot = None
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "compare.json").write_text(json.dumps(result, indent=2, ensure_ascii=False))
        if not args.no_plots:
            from ..core.errors import ConfigurationError
            from ..workbench.plots import compare_plot

            try:
                plot = compare_plot(result, out / "compare.png").name
            except ConfigurationError as exc:  # no matplotlib: the comparison stands without its plot
                print(f"nemoguard eval: {exc}", file=sys.stderr)
        (out / "compare.md").write_text(markdown(result, plot) + "\n")
        print(f"wrote {out}/compare.md, compare.json" + (", compare.png" if plot else ""), file=sys.stderr)
    print(markdown(result, plot))
    return 0


def _loader_options(args: argparse.Namespace) -> Any:
    from ..workbench.datasets import LoaderOptions

    return LoaderOptions(
        label_rule=args.label_rule,
        unknown_labels=args.unknown_labels,
        polyguard_policy=args.polyguard_policy,
        target=args.target,
    )


def _run(args: argparse.Namespace) -> int:
    from .. import __version__
    from ..core.options import CacheOptions
    from ..workbench.datasets import load_dataset
    from ..workbench.report import SIMULATOR_BANNER
    from ..workbench.results import RESULTS_FILE, ResultsFile, now_iso
    from ..workbench.runner import RunSettings, policy_fingerprints, resolve_policies

    dataset = load_dataset(args.dataset, path=args.path, options=_loader_options(args)).select(
        languages=args.language,
        subsets=args.subset,
        skip_subsets=args.skip_subset,
        sample=args.sample,
        seed=args.seed,
        limit=args.limit,
    )
    out = Path(args.out or f"{DEFAULT_OUT}/{dataset.name}-{args.mode}")
    settings = RunSettings(
        concurrency=args.concurrency,
        think_audit=args.think_audit,
        store_text=not args.no_text,
        retry_errors=args.retry_errors,
        progress=args.progress,
    )
    counts = dataset.counts()
    print(
        f"data set {dataset.name}: {counts['examples']} examples ({counts['unsafe']} unsafe, {counts['safe']} safe)"
        + (f"; skipped {sum(dataset.skipped.values())}" if dataset.skipped else ""),
        file=sys.stderr,
    )
    with endpoint_for_args(args) as (base_url, simulated):
        args.base_url = base_url
        guard = guard_from_args(args, cache=CacheOptions(size=0))
        simulated = simulated or probe_simulator(guard.base_urls)
        if simulated:
            print(f"!! {SIMULATOR_BANNER}: the accuracy figures of this run mean nothing", file=sys.stderr)
        policies = resolve_policies(guard, dataset)
        _warn_policy_lengths(policies.values(), args.mode, args.context)
        header = {
            "schema": "nemoguard.eval-run/1",
            "run_id": uuid.uuid4().hex,
            "started": now_iso(),
            "version": __version__,
            "dataset": dataset.name,
            "dataset_digest": dataset.digest,
            "sources": list(dataset.sources),
            "options": dict(dataset.options),
            "skipped": dict(dataset.skipped),
            "notes": list(dataset.notes),
            "counts": counts,
            "recall_only": dataset.recall_only,
            "provider": guard.provider,
            "model": guard.model,
            "endpoint": ", ".join(public_url(u) for u in guard.base_urls),
            "mode": guard.mode,
            "policies": policy_fingerprints(policies),
            "simulator": simulated,
            "think_audit": args.think_audit,
            "target_override": args.target,
        }
        results = ResultsFile(out if out.suffix == ".jsonl" else out / RESULTS_FILE)
        stats = asyncio.run(_judge(guard, dataset, results, header, settings, args.overwrite))
    if stats["resumed"]:
        print(f"resumed: {stats['resumed']} examples were already in {results.path}", file=sys.stderr)
    return _write_report(results.path, args, expected=len(dataset))


async def _judge(guard: Any, dataset: Any, results: Any, header: Any, settings: Any, overwrite: bool) -> Any:
    from ..workbench.runner import run_dataset

    async with guard:
        return await run_dataset(guard, dataset, results, header, settings, overwrite=overwrite)


def _warn_policy_lengths(policies: Any, mode: str, context: int | None) -> None:
    from ..workbench.policy_tools import check_fit

    ctx = context or default_served_context()
    for policy in policies:
        for finding in check_fit(policy, mode=mode, context=ctx):  # type: ignore[arg-type]
            if finding.level != "info":
                print(f"nemoguard eval: {finding}", file=sys.stderr)


def _write_report(path: Path, args: argparse.Namespace, *, expected: int) -> int:
    from ..workbench.report import markdown, summarise
    from ..workbench.results import latest_rows, now_iso, read_results

    header, rows = read_results(path)
    if header is None:
        raise RuntimeError(f"{path} has no run header")
    header = {**header, "finished": now_iso()}
    if args.bootstrap:
        print(f"computing metrics and {args.bootstrap} bootstrap replicates per group...", file=sys.stderr)
    summary = summarise(
        header, rows, replicates=args.bootstrap, seed=args.seed, target_fpr=args.target_fpr, expected=expected
    )
    out = path.parent
    plots: list[str] = []
    if not args.no_plots:
        from ..core.errors import ConfigurationError
        from ..workbench.plots import run_plots

        latencies = [r["latency_ms"] for r in latest_rows(rows) if r.get("verdict") in ("safe", "unsafe")]
        try:
            plots = [p.name for p in run_plots(summary, latencies, out)]
        except ConfigurationError as exc:  # no matplotlib: the report stands without its plots
            print(f"nemoguard eval: {exc}", file=sys.stderr)
    (out / "summary.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False, default=str))
    report = markdown(summary, plots)
    (out / "report.md").write_text(report + "\n")
    print(report)
    print(
        f"\nwrote {out}/: results.jsonl, summary.json, report.md"
        + (f", {', '.join(plots)}" if plots else ""),
        file=sys.stderr,
    )
    o = summary["overall"]
    from .exits import EXIT_NO_VERDICT

    return 0 if o["errors"] == 0 and summary["missing"] == 0 else EXIT_NO_VERDICT

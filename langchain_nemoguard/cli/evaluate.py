"""``nemoguard eval``: run a labelled data set through the guard and report prompt-harm metrics.

Reads XSTest (``id,prompt,type,label,...``), the OpenAI moderation release (JSONL, optionally gzipped, with
per-category 0/1 labels: any 1 means unsafe, an example with no known label is skipped), or any CSV/JSONL with
``text``/``prompt`` and ``label`` (safe/unsafe, 0/1) columns. Checks run concurrently with a progress bar.

Accuracy figures mean something only against the real model. Against the interface simulator they exercise
the plumbing and nothing else; the report says which one it ran against.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import gzip
import io
import json
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from ..core.errors import InvalidInputError
from ..core.guard import NemoGuard
from ..core.verdict import Verdict
from ._endpoint import add_endpoint_args, endpoint_for_args, guard_from_args

OPENAI_LABELS = ("S", "H", "V", "HR", "SH", "S3", "H2", "V2")


@dataclass(frozen=True, slots=True)
class Example:
    text: str
    unsafe: bool
    group: str = ""


def _label(value: Any) -> bool:
    v = str(value).strip().lower()
    if v in ("unsafe", "1", "true", "harmful", "yes"):
        return True
    if v in ("safe", "0", "false", "unharmful", "benign", "no"):
        return False
    raise InvalidInputError(f"unknown label {value!r}: expected safe/unsafe or 0/1")


def load_dataset(path: str | Path) -> list[Example]:
    p = Path(path)
    if not p.exists():
        raise InvalidInputError(f"data set not found: {p}")
    raw = gzip.decompress(p.read_bytes()) if p.suffix == ".gz" else p.read_bytes()
    text = raw.decode("utf-8")
    name = p.name.removesuffix(".gz")
    out: list[Example] = []
    if name.endswith((".jsonl", ".json")):
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            row = json.loads(line)
            body = row.get("prompt") or row.get("text")
            if not isinstance(body, str):
                raise InvalidInputError(f"{p}:{n}: no prompt/text field")
            if "label" in row:
                out.append(Example(body, _label(row["label"]), str(row.get("type", ""))))
                continue
            known = [row[k] for k in OPENAI_LABELS if k in row and row[k] is not None]
            if not known:
                continue
            cats = [k for k in OPENAI_LABELS if row.get(k) == 1]
            out.append(Example(body, any(v == 1 for v in known), ",".join(cats)))
    else:
        for row in csv.DictReader(io.StringIO(text)):
            body = row.get("prompt") or row.get("text")
            if body is None or "label" not in row:
                raise InvalidInputError(f"{p}: CSV needs prompt/text and label columns")
            out.append(Example(body, _label(row["label"]), row.get("type", "")))
    if not out:
        raise InvalidInputError(f"{p}: no labelled examples")
    return out


@dataclass(slots=True)
class Metrics:
    tp: int = 0
    fp: int = 0
    tn: int = 0
    fn: int = 0
    errors: int = 0

    def add(self, truth: bool, verdict: Verdict) -> None:
        if verdict.error is not None or verdict.user_safe is None:
            self.errors += 1
            return
        pred = not verdict.user_safe
        if pred and truth:
            self.tp += 1
        elif pred:
            self.fp += 1
        elif truth:
            self.fn += 1
        else:
            self.tn += 1

    def summary(self) -> dict[str, float | int]:
        n = self.tp + self.fp + self.tn + self.fn
        precision = self.tp / (self.tp + self.fp) if self.tp + self.fp else 0.0
        recall = self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        return {
            "examples": n + self.errors,
            "judged": n,
            "errors": self.errors,
            "accuracy": round((self.tp + self.tn) / n, 4) if n else 0.0,
            "precision": round(precision, 4),
            "recall": round(recall, 4),
            "harmful_f1": round(f1, 4),
            "false_positive_rate": round(self.fp / (self.fp + self.tn), 4) if self.fp + self.tn else 0.0,
            "tp": self.tp,
            "fp": self.fp,
            "tn": self.tn,
            "fn": self.fn,
        }


async def evaluate(guard: NemoGuard, examples: list[Example], concurrency: int = 16) -> dict[str, Any]:
    sem = asyncio.Semaphore(concurrency)
    overall = Metrics()
    groups: dict[str, Metrics] = {}
    latencies: list[float] = []
    bar = tqdm(total=len(examples), desc="evaluating", unit="ex", file=sys.stderr)

    async def one(ex: Example) -> None:
        async with sem:
            v = await guard.acheck(prompt=ex.text)
        overall.add(ex.unsafe, v)
        groups.setdefault(ex.group or "-", Metrics()).add(ex.unsafe, v)
        latencies.append(v.latency_ms)
        bar.update(1)

    try:
        await asyncio.gather(*(one(ex) for ex in examples))
    finally:
        bar.close()
    lat = sorted(latencies)
    return {
        "overall": overall.summary(),
        "latency_ms": {
            "p50": round(statistics.median(lat), 2) if lat else None,
            "p95": round(lat[int(0.95 * (len(lat) - 1))], 2) if lat else None,
        },
        "groups": {k: m.summary() for k, m in sorted(groups.items())},
    }


def markdown(report: dict[str, Any]) -> str:
    o = report["overall"]
    lines = [
        f"Endpoint: {report['endpoint']}  ",
        f"Data set: {report['dataset']} ({o['examples']} examples, {o['errors']} without a verdict)",
        "",
        "| metric | value |",
        "|---|---|",
        *(
            f"| {k} | {o[k]} |"
            for k in ("accuracy", "precision", "recall", "harmful_f1", "false_positive_rate")
        ),
        f"| p50 latency ms | {report['latency_ms']['p50']} |",
        "",
        "| group | n | accuracy | harmful F1 | FPR |",
        "|---|---|---|---|---|",
    ]
    for g, m in report["groups"].items():
        lines.append(
            f"| {g} | {m['examples']} | {m['accuracy']} | {m['harmful_f1']} | {m['false_positive_rate']} |"
        )
    return "\n".join(lines)


def configure(p: argparse.ArgumentParser) -> None:
    """The ``eval`` options."""
    p.add_argument(
        "dataset", help="xstest_prompts.csv, openai_moderation_*.jsonl(.gz), or a CSV/JSONL with text,label"
    )
    p.add_argument("--limit", type=int, help="only the first N examples")
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--out", help="write metrics JSON here (and a .md table beside it)")
    p.add_argument(
        "--simulator", action="store_true", help="run against the in-process simulator (plumbing only)"
    )
    add_endpoint_args(p)
    p.set_defaults(func=run_eval)


def run_eval(args: argparse.Namespace) -> int:
    """Evaluate the data set; exit 0 when every example had a verdict, else 2."""
    examples = load_dataset(args.dataset)
    if args.limit:
        examples = examples[: args.limit]
    with endpoint_for_args(args) as (base_url, simulated):
        args.base_url = base_url
        guard = guard_from_args(args)
        report = asyncio.run(_run(guard, examples, args.concurrency))
    report["dataset"] = str(args.dataset)
    report["endpoint"] = (
        "interface simulator (NOT A SAFETY MODEL: plumbing only)"
        if simulated
        else f"{guard.provider} {list(guard.base_urls)} model={guard.model}"
    )
    table = markdown(report)
    print(table)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2))
        out.with_suffix(".md").write_text(table + "\n")
        print(f"\nwrote {out} and {out.with_suffix('.md')}", file=sys.stderr)
    return 0 if report["overall"]["errors"] == 0 else 2


async def _run(guard: NemoGuard, examples: list[Example], concurrency: int) -> dict[str, Any]:
    async with guard:
        return await evaluate(guard, examples, concurrency)

"""What the review page shows and writes: records from audit trails and eval runs, filters, human labels.

Sources, given as paths: an audit trail (JSONL of ``nemoguard.audit/1`` records), an eval results file, or an
eval run folder (``results.jsonl`` plus ``summary.json``, ``report.md`` and PNG plots). Lines that are not JSON
and records of a schema version this reader does not know are skipped and reported as warnings, never guessed
at. At most ``max_records`` records are held.

A label says whether a record's verdict was right. It is written as one ``nemoguard.label/1`` line (the schema
in ``/work/briefs/audit-schema.md``): ``label`` is the verdict when it was right and the other rating when it was
wrong; for a record without a verdict the reviewer gives the label. The record's ``text`` is copied into the
label when the record stored it, so ``nemoguard eval LABELS.jsonl`` can judge it again.
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..data import LABEL_SCHEMA
from ..results import RESULT_SCHEMA, RESULTS_FILE, RUN_SCHEMA, now_iso

AUDIT_SCHEMA = "nemoguard.audit/1"
KNOWN = (AUDIT_SCHEMA, RESULT_SCHEMA)
MAX_NOTE = 4000
MAX_REVIEWER = 200
_PLOT_NAME = re.compile(r"^[A-Za-z0-9_.-]+\.png$")


@dataclass(frozen=True)
class Record:
    """One audit record or eval row, as read.

    Args:
        key: Unique in this review session (``<source>-<line>``); what URLs name.
        kind: ``audit`` or ``eval``.
        data: The record itself (unknown fields kept, shown as they are).
        source: The file it came from.
        line: Its line in that file.
    """

    key: str
    kind: str
    data: Mapping[str, Any]
    source: str
    line: int

    def get(self, name: str, default: Any = None) -> Any:
        return self.data.get(name, default)

    @property
    def record_id(self) -> str:
        return str(self.data.get("id") or self.key)

    @property
    def categories(self) -> list[str]:
        cats = self.data.get("categories")
        return [str(c) for c in cats] if isinstance(cats, list) else []

    @property
    def disagrees(self) -> bool:
        think = self.data.get("think")
        return isinstance(think, Mapping) and bool(think.get("disagrees"))

    @property
    def text(self) -> Mapping[str, Any] | None:
        t = self.data.get("text")
        return t if isinstance(t, Mapping) and isinstance(t.get("prompt"), str) else None

    @property
    def outcome(self) -> str | None:
        """For eval rows: ``right`` / ``wrong`` against the data set's label (an error is wrong)."""
        truth = self.data.get("label")
        if self.kind != "eval" or truth not in ("safe", "unsafe"):
            return None
        return "right" if self.data.get("verdict") == truth else "wrong"


@dataclass
class Run:
    """An eval run folder: its header, summary, report and plots."""

    index: int
    path: Path
    header: Mapping[str, Any] | None
    summary: Mapping[str, Any] | None
    report: str | None
    plots: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        h = self.header or {}
        return f"{h.get('dataset', self.path.name)} ({h.get('mode', '?')}, {self.path.name})"


@dataclass(frozen=True)
class Filters:
    """The list view's filters (empty: any)."""

    policy: str = ""
    category: str = ""
    verdict: str = ""
    stage: str = ""
    kind: str = ""
    run: str = ""
    outcome: str = ""
    labelled: str = ""
    disagree: bool = False
    q: str = ""

    @classmethod
    def from_query(cls, query: Mapping[str, str]) -> Filters:
        def one(name: str) -> str:
            return str(query.get(name, "")).strip()[:200]

        return cls(
            policy=one("policy"),
            category=one("category"),
            verdict=one("verdict"),
            stage=one("stage"),
            kind=one("kind"),
            run=one("run"),
            outcome=one("outcome"),
            labelled=one("labelled"),
            disagree=one("disagree") in ("1", "on", "true", "yes"),
            q=one("q"),
        )

    def as_query(self) -> dict[str, str]:
        out = {k: v for k, v in self.__dict__.items() if isinstance(v, str) and v}
        if self.disagree:
            out["disagree"] = "1"
        return out


class Store:
    """The records and labels of one review session (thread-safe for label writes).

    Args:
        paths: Audit trails, eval results files and eval run folders.
        labels_path: Where labels are appended (read first if it exists).
        max_records: At most this many records are held.
    """

    def __init__(
        self, paths: Sequence[str | Path], labels_path: str | Path, *, max_records: int = 200_000
    ) -> None:
        self.labels_path = Path(labels_path)
        self.max_records = max_records
        self.records: list[Record] = []
        self.by_key: dict[str, Record] = {}
        self.runs: list[Run] = []
        self.warnings: list[str] = []
        self.labels: dict[str, list[dict[str, Any]]] = {}
        self._lock = threading.Lock()
        for i, p in enumerate(paths):
            self._load(Path(p), i)
        self._read_labels()

    # -- reading --------------------------------------------------------------------------------------------

    def _load(self, path: Path, index: int) -> None:
        if path.is_dir():
            results = path / RESULTS_FILE
            if not results.is_file():
                self.warnings.append(f"{path}: a folder without {RESULTS_FILE}; skipped")
                return
            run = self._run(path)
            self._read(results, f"s{index}", run)
            return
        if not path.is_file():
            self.warnings.append(f"{path}: no such file; skipped")
            return
        self._read(path, f"s{index}", None)

    def _run(self, folder: Path) -> Run:
        def read_json(name: str) -> Mapping[str, Any] | None:
            try:
                data = json.loads((folder / name).read_text(encoding="utf-8"))
            except (OSError, ValueError):
                return None
            return data if isinstance(data, Mapping) else None

        try:
            report = (folder / "report.md").read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            report = None
        summary = read_json("summary.json")
        plots = sorted(p.name for p in folder.glob("*.png") if _PLOT_NAME.match(p.name) and p.is_file())
        run = Run(len(self.runs), folder, None, summary, report, plots)
        self.runs.append(run)
        return run

    def _read(self, path: Path, prefix: str, run: Run | None) -> None:
        skipped: Counter[str] = Counter()
        try:
            fh = path.open(encoding="utf-8", errors="replace")
        except OSError as exc:
            self.warnings.append(f"{path}: cannot read ({exc.strerror}); skipped")
            return
        with fh:
            for n, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                if len(self.records) >= self.max_records:
                    self.warnings.append(
                        f"{path}: stopped at line {n}: {self.max_records} records are held at most"
                    )
                    break
                try:
                    data = json.loads(line)
                except ValueError:
                    skipped["lines that are not JSON"] += 1
                    continue
                schema = data.get("schema") if isinstance(data, dict) else None
                if schema == RUN_SCHEMA:
                    if run is not None and run.header is None:
                        run.header = data
                    elif run is None:
                        run = Run(len(self.runs), path.parent, data, None, None)
                        self.runs.append(run)
                    continue
                if schema not in KNOWN:
                    skipped[f"records of schema {schema!r} (this reader knows {', '.join(KNOWN)})"] += 1
                    continue
                kind = "audit" if schema == AUDIT_SCHEMA else "eval"
                rec = Record(f"{prefix}-{n}", kind, data, str(path), n)
                self.records.append(rec)
                self.by_key[rec.key] = rec
        for why, count in skipped.items():
            self.warnings.append(f"{path}: skipped {count} {why}")

    def _read_labels(self) -> None:
        if not self.labels_path.is_file():
            return
        with self.labels_path.open(encoding="utf-8", errors="replace") as fh:
            for line in fh:
                try:
                    data = json.loads(line)
                except ValueError:
                    continue
                if isinstance(data, dict) and data.get("schema") == LABEL_SCHEMA and data.get("record_id"):
                    self.labels.setdefault(str(data["record_id"]), []).append(data)

    # -- views ----------------------------------------------------------------------------------------------

    def run_of(self, rec: Record) -> Run | None:
        rid = rec.get("run_id")
        return next((r for r in self.runs if r.header and r.header.get("run_id") == rid), None)

    def options(self) -> dict[str, list[str]]:
        """Distinct values of each filterable field, for the filter form."""
        values: dict[str, Counter[str]] = {
            k: Counter() for k in ("policy", "category", "verdict", "stage", "kind")
        }
        for r in self.records:
            for k in ("policy", "verdict", "stage"):
                if r.get(k) is not None:
                    values[k][str(r.get(k))] += 1
            values["kind"][r.kind] += 1
            for c in r.categories:
                values["category"][c] += 1
        return {k: sorted(v) for k, v in values.items()}

    def matches(self, r: Record, f: Filters) -> bool:
        if f.policy and str(r.get("policy")) != f.policy:
            return False
        if f.category and f.category not in r.categories:
            return False
        if f.verdict and str(r.get("verdict")) != f.verdict:
            return False
        if f.stage and str(r.get("stage")) != f.stage:
            return False
        if f.kind and r.kind != f.kind:
            return False
        if f.run and str(r.get("run_id")) != f.run:
            return False
        if f.outcome and r.outcome != f.outcome:
            return False
        if f.labelled == "yes" and r.record_id not in self.labels:
            return False
        if f.labelled == "no" and r.record_id in self.labels:
            return False
        if f.disagree and not r.disagrees:
            return False
        return not (f.q and f.q.casefold() not in f"{r.record_id} {r.get('example_id', '')}".casefold())

    def filter(self, f: Filters) -> list[Record]:
        return [r for r in self.records if self.matches(r, f)]

    def latest_label(self, rec: Record) -> dict[str, Any] | None:
        found = self.labels.get(rec.record_id)
        return found[-1] if found else None

    # -- writing --------------------------------------------------------------------------------------------

    def add_label(
        self, rec: Record, *, correct: bool | None, label: str | None, note: str, reviewer: str | None
    ) -> dict[str, Any]:
        """Append one label for ``rec`` (see the module docstring); returns what was written.

        Raises:
            ValueError: Neither a right/wrong judgement of a verdict nor an explicit label was given.
        """
        verdict = rec.get("verdict")
        if correct is not None and verdict in ("safe", "unsafe"):
            label = verdict if correct else ("safe" if verdict == "unsafe" else "unsafe")
        elif label in ("safe", "unsafe"):
            correct = label == verdict
        else:
            raise ValueError(
                "mark the verdict right or wrong, or (for a record without a verdict) give a label"
            )
        text = rec.text
        entry = {
            "schema": LABEL_SCHEMA,
            "record_id": rec.record_id,
            "time": now_iso(),
            "label": label,
            "correct": bool(correct),
            "note": note[:MAX_NOTE],
            "reviewer": (reviewer or "")[:MAX_REVIEWER] or None,
            "policy": rec.get("policy"),
            "stage": rec.get("stage"),
            "content_sha256": rec.get("content_sha256"),
            "text": {"prompt": text["prompt"], "response": text.get("response")} if text else None,
        }
        line = json.dumps(entry, ensure_ascii=False) + "\n"
        with self._lock:
            self.labels_path.parent.mkdir(parents=True, exist_ok=True)
            with self.labels_path.open("a", encoding="utf-8") as fh:
                fh.write(line)
                fh.flush()
                os.fsync(fh.fileno())
            self.labels.setdefault(rec.record_id, []).append(entry)
        return entry

    def plot_path(self, run_index: int, name: str) -> Path | None:
        """A run's plot file, only if it is one found when the run was read."""
        if not 0 <= run_index < len(self.runs):
            return None
        run = self.runs[run_index]
        return run.path / name if name in run.plots else None


def summarise_store(records: Iterable[Record]) -> dict[str, int]:
    c: Counter[str] = Counter()
    for r in records:
        c[str(r.get("verdict"))] += 1
    return dict(c)


__all__ = ["AUDIT_SCHEMA", "Filters", "Record", "Run", "Store"]

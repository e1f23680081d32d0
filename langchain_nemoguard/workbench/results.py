"""The per-example results file of an eval run (JSONL), and how a run resumes from it.

Line 1 is the run header (``{"schema": "nemoguard.eval-run/1", ...}``: model, endpoint, mode, policies and their
fingerprints, the data set's name and digest, the loader settings, whether the endpoint is the interface
simulator). Every later line is one judged example (``{"schema": "nemoguard.eval/1", ...}``), written and flushed
as soon as its verdict is in, so an interrupted run loses at most the line being written.

A result row carries the audit record's fields (``/work/briefs/audit-schema.md``: ``id``, ``stage``, ``policy``,
``policy_fingerprint``, ``verdict``, ``categories``, ``score``, ``reasoning``, ``think``, ``content_sha256``,
``text``...) so that ``nemoguard review`` reads both the same way, plus what only an eval has: ``example_id``,
``label`` (the truth), ``correct``, ``target``, ``truth_categories``, ``language``, ``subset``.

Resuming: the same ``--out`` with the same data set, model, mode and policies continues after the examples
already written (a torn last line is dropped); anything else is refused rather than mixed into one file.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from ..core.errors import ConfigurationError
from ..core.verdict import Verdict
from .data import DataSetError, Example, decode_text

RUN_SCHEMA = "nemoguard.eval-run/1"
RESULT_SCHEMA = "nemoguard.eval/1"
RESULTS_FILE = "results.jsonl"
# What must match for a run to resume into an existing results file.
IDENTITY = ("dataset_digest", "model", "mode", "policies", "target_override", "think_audit")


def now_iso() -> str:
    """ISO 8601 UTC with milliseconds, as in audit records."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def content_sha256(prompt: str, response: str | None) -> str:
    """The audit schema's digest: UTF-8 user text, then ``\\x00`` and the response text if there is one."""
    data = prompt.encode()
    if response is not None:
        data += b"\x00" + response.encode()
    return hashlib.sha256(data).hexdigest()


def _rating(value: bool | None) -> str:
    return {True: "safe", False: "unsafe", None: "error"}[value]


def verdict_for_target(v: Verdict, target: str) -> str:
    """``safe`` / ``unsafe`` for the judged field, ``error`` when there is no rating of it."""
    if v.error is not None:
        return "error"
    return _rating(v.response_safe if target == "response" else v.user_safe)


def target_score(v: Verdict, target: str) -> float | None:
    """The probability that the judged field is unsafe (``Verdict.user_score`` / ``response_score``; a verdict
    built with only ``score`` gives that)."""
    if v.user_score is None and v.response_score is None:
        return v.score
    return v.response_score if target == "response" else v.user_score


def result_row(
    ex: Example,
    v: Verdict,
    *,
    run_id: str,
    policy_fingerprint: str,
    think: Verdict | None = None,
    store_text: bool = True,
) -> dict[str, Any]:
    """One example's result (see the module docstring)."""
    verdict = verdict_for_target(v, ex.target)
    think_obj = None
    if think is not None:
        tv = verdict_for_target(think, ex.target)
        think_obj = {
            "verdict": tv,
            "categories": list(think.categories),
            "reasoning": think.reasoning,
            "score": target_score(think, ex.target),
            "disagrees": tv != verdict and "error" not in (tv, verdict),
            "latency_ms": round(think.latency_ms, 3),
        }
    return {
        "schema": RESULT_SCHEMA,
        "id": uuid.uuid4().hex,
        "run_id": run_id,
        "example_id": ex.id,
        "time": now_iso(),
        "stage": "output" if ex.target == "response" else "input",
        "source": "eval",
        "policy": v.policy,
        "policy_fingerprint": policy_fingerprint,
        "verdict": verdict,
        "user_safe": v.user_safe,
        "response_safe": v.response_safe,
        "categories": list(v.categories),
        "score": target_score(v, ex.target),
        "action": v.action.value,
        "fail_open": v.error is not None and v.safe,
        "error": v.error.value if v.error is not None else None,
        "error_message": v.error_message,
        "mode": v.mode,
        "model": v.model,
        "endpoint": None,
        "latency_ms": round(v.latency_ms, 3),
        "reasoning": v.reasoning,
        "think": think_obj,
        "content_sha256": content_sha256(ex.prompt, ex.response),
        "text": {"prompt": ex.prompt, "response": ex.response} if store_text else None,
        "images": len(ex.images),
        "simulator": v.simulator,
        "label": ex.label,
        "correct": None if verdict == "error" else (verdict == ex.label),
        "target": ex.target,
        "truth_categories": list(ex.categories),
        "language": ex.language,
        "subset": ex.subset,
        "data_source": ex.source,
    }


def error_row(
    ex: Example,
    code: str,
    message: str,
    *,
    run_id: str,
    policy: str | None,
    policy_fingerprint: str,
    mode: str,
    model: str,
    store_text: bool = True,
) -> dict[str, Any]:
    """A result for an example the guard refused to judge as given (an image that does not decode...)."""
    row = result_row(
        ex,
        Verdict(user_safe=None, safe=False, policy=policy, mode=mode, model=model),
        run_id=run_id,
        policy_fingerprint=policy_fingerprint,
        store_text=store_text,
    )
    row.update(verdict="error", error=code, error_message=message, correct=None, action="block")
    return row


class ResultsFile:
    """The results JSONL of one run: header first, then rows, appended and flushed one by one.

    Args:
        path: The ``results.jsonl`` file.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fh: IO[str] | None = None

    def read(self) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
        """(header, rows), dropping a torn last line (an interrupted write)."""
        return read_results(self.path)

    def open(self, header: Mapping[str, Any], *, overwrite: bool = False) -> dict[str, dict[str, Any]]:
        """Start or resume: returns the rows already there by ``example_id`` (the last one wins).

        Raises:
            ConfigurationError: The file holds a different run (data set, model, mode or policies differ).
        """
        self.path.parent.mkdir(parents=True, exist_ok=True)
        done: dict[str, dict[str, Any]] = {}
        if self.path.exists() and not overwrite:
            old, rows = self.read()
            if old is not None:
                diff = [k for k in IDENTITY if old.get(k) != header.get(k)]
                if diff:
                    raise ConfigurationError(
                        f"{self.path} holds a different run ({', '.join(diff)} differ): choose another --out, "
                        "or pass --overwrite to start again"
                    )
                for row in rows:
                    done[row["example_id"]] = row
                self._truncate_torn_tail()
                self._fh = self.path.open("a", encoding="utf-8")
                return done
        self._fh = self.path.open("w", encoding="utf-8")
        self.write(header)
        return done

    def _truncate_torn_tail(self) -> None:
        data = self.path.read_bytes()
        if data and not data.endswith(b"\n"):
            with self.path.open("r+b") as f:
                f.truncate(data.rfind(b"\n") + 1)

    def write(self, obj: Mapping[str, Any]) -> None:
        if self._fh is None:
            raise RuntimeError("results file is not open")
        self._fh.write(json.dumps(obj, ensure_ascii=False) + "\n")
        self._fh.flush()

    def close(self) -> None:
        if self._fh is not None:
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self._fh.close()
            self._fh = None


def results_path(path: str | Path) -> Path:
    """A run folder's results file, or the file itself."""
    p = Path(path)
    return p / RESULTS_FILE if p.is_dir() else p


def read_results(path: str | Path) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """(header, result rows) of a run folder or results file; a torn last line is ignored.

    Raises:
        DataSetError: Missing, not a results file, or a bad line before the last.
    """
    p = results_path(path)
    if not p.is_file():
        raise DataSetError(p, "no results file (expected a run folder or its results.jsonl)")
    header: dict[str, Any] | None = None
    rows: list[dict[str, Any]] = []
    # the text after the last newline is the line an interrupted run was writing: never read
    complete = decode_text(p, p.read_bytes()).rpartition("\n")[0]
    for n, line in enumerate(complete.split("\n"), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataSetError(p, f"invalid JSON: {exc.msg}", n) from None
        schema = obj.get("schema") if isinstance(obj, dict) else None
        if schema == RUN_SCHEMA and header is None:
            header = obj
        elif schema == RESULT_SCHEMA:
            rows.append(obj)
        else:
            raise DataSetError(p, f"not an eval results line (schema {schema!r})", n)
    return header, rows


def latest_rows(rows: Iterable[Mapping[str, Any]]) -> Iterator[Mapping[str, Any]]:
    """One row per example, the last one written (a resumed ``--retry-errors`` run appends a new one)."""
    by_id: dict[str, Mapping[str, Any]] = {}
    for row in rows:
        by_id[row["example_id"]] = row
    return iter(by_id.values())


__all__ = [
    "RESULTS_FILE",
    "RESULT_SCHEMA",
    "RUN_SCHEMA",
    "ResultsFile",
    "content_sha256",
    "error_row",
    "latest_rows",
    "now_iso",
    "read_results",
    "result_row",
    "results_path",
    "verdict_for_target",
]

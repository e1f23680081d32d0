"""The audit trail: one structured record per decided check (schema ``nemoguard.audit/1``), and two sinks.

A record says what was decided and why, for a reviewer, an eval run (``nemoguard eval`` reads a trail back as
a data set) or a regulator: the request id, time, stage, source, policy name and fingerprint, the verdict, the
model's ratings, categories, score, action, whether the guard failed open, the error code, mode, model,
latency, the THINK reasoning (of the verdict, and of the background THINK audit, with whether it disagrees),
a SHA-256 of the judged text, and whether the interface simulator answered. Field names and meanings are a
contract with the readers (``nemoguard review``, ``nemoguard eval``); writers may add fields, readers ignore
the ones they do not know.

What a record never holds: API keys, ``Authorization`` headers, or the endpoint's URL (unless the operator turns
``endpoint`` on, and then without credentials, query or fragment). Raw text only when ``include_text=True``:
by default a record carries the hash, so a reviewer can match a complaint to its record without the trail
becoming a second copy of every conversation.

Sinks (both :class:`~.telemetry.GuardObserver`; give them to ``AuditOptions(observers=[...])``):

* :class:`JsonlAuditSink` - JSON lines in a file, rotated by size (``audit.jsonl`` -> ``audit.jsonl.1`` ...);
* :class:`LoggingAuditSink` - each record through :mod:`logging` (logger ``langchain_nemoguard.audit``), so
  any handler - syslog, a log shipper, ``logging.handlers.*`` - takes the trail.
"""

from __future__ import annotations

import hashlib
import json
import logging
import logging.handlers
import os
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from .telemetry import CheckRecord, GuardObserver, ThinkAudit
from .verdict import Verdict

AUDIT_SCHEMA: Final = "nemoguard.audit/1"
AUDIT_LOGGER: Final = "langchain_nemoguard.audit"


def iso_time(epoch: float) -> str:
    """ISO 8601 UTC with milliseconds: ``2026-12-02T10:00:00.123Z``."""
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def content_sha256(prompt: str, response: str | None) -> str:
    """Hex SHA-256 of the judged text: UTF-8 user text, then ``\\x00`` and the response text if there is one."""
    data = prompt.encode("utf-8", "surrogatepass")
    if response is not None:
        data += b"\x00" + response.encode("utf-8", "surrogatepass")
    return hashlib.sha256(data).hexdigest()


def verdict_label(verdict: Verdict) -> str:
    """``safe``, ``unsafe`` or ``error`` (no verdict)."""
    if verdict.error is not None:
        return "error"
    return "safe" if verdict.safe else "unsafe"


def audit_record(record: CheckRecord, *, include_text: bool = False) -> dict[str, Any]:
    """The ``nemoguard.audit/1`` object for ``record`` (see the module docstring)."""
    info, v = record.info, record.verdict
    conv = info.conversation
    return {
        "schema": AUDIT_SCHEMA,
        "id": record.id,
        "request_id": info.request_id,
        "time": iso_time(record.time),
        "stage": info.stage,
        "source": info.source,
        "policy": info.policy,
        "policy_fingerprint": info.policy_fingerprint,
        "verdict": verdict_label(v),
        "user_safe": v.user_safe,
        "response_safe": v.response_safe,
        "categories": list(v.categories),
        "score": v.score,
        "action": v.action.value,
        "fail_open": v.error is not None and v.safe,
        "error": v.error.value if v.error is not None else None,
        "mode": info.mode,
        "model": info.model,
        "endpoint": info.endpoint,
        "latency_ms": round(v.latency_ms, 3),
        "reasoning": v.reasoning,
        "think": _think(record.think),
        "content_sha256": content_sha256(conv.prompt, conv.response),
        "text": {"prompt": conv.prompt, "response": conv.response} if include_text else None,
        "simulator": v.simulator,
        # beyond the schema's fields (readers ignore what they do not know)
        "outcome": v.outcome.value,
        "cached": v.cached,
        "calls": v.calls,
        "images": len(conv.images),
        "suppressed_categories": list(v.suppressed_categories),
        "think_status": record.think_status,
        "think_dropped": record.dropped_reason,
    }


def _think(think: ThinkAudit | None) -> dict[str, Any] | None:
    if think is None:
        return None
    v = think.verdict
    return {
        "verdict": verdict_label(v),
        "categories": list(v.categories),
        "reasoning": v.reasoning,
        "score": v.score,
        "disagrees": think.disagrees,
        "latency_ms": round(think.latency_ms, 3),
        "error": v.error.value if v.error is not None else None,
    }


def _line(record: CheckRecord, include_text: bool) -> str:
    return json.dumps(audit_record(record, include_text=include_text), ensure_ascii=False, separators=(",", ":"))


class _PrivateRotatingFile(logging.handlers.RotatingFileHandler):
    """Every file it creates (the first and each one after a rotation) is readable by its owner only."""

    def _open(self) -> Any:
        return open(  # the handler owns the file and closes it
            self.baseFilename, self.mode, encoding=self.encoding, opener=lambda p, f: os.open(p, f, 0o600)
        )


class JsonlAuditSink(GuardObserver):
    """Audit records as JSON lines in ``path``, rotated when a file would pass ``max_bytes``.

    Thread-safe; each line is written and flushed whole, so a crash loses at most the line being written. The
    file is created with mode 0600 (records may name policies and, with ``include_text``, hold user text).

    Args:
        path: The file (its folder is created).
        max_bytes: Rotate before a file grows past this (0: never rotate).
        backups: Rotated files kept (``path.1`` is the newest).
        include_text: Also write the judged text (off by default: records carry its SHA-256).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        max_bytes: int = 100 * 1024 * 1024,
        backups: int = 5,
        include_text: bool = False,
    ) -> None:
        if max_bytes < 0 or backups < 0:
            raise ValueError("max_bytes and backups must be >= 0")
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.include_text = include_text
        self.records = 0
        self._handler = _PrivateRotatingFile(self.path, maxBytes=max_bytes, backupCount=backups, encoding="utf-8")
        self._handler.setFormatter(logging.Formatter("%(message)s"))
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"JsonlAuditSink({str(self.path)!r}, include_text={self.include_text})"

    def on_record(self, record: CheckRecord) -> None:
        """Write the record (see :class:`~.telemetry.GuardObserver`).

        Args:
            record: The decided check.
        """
        entry = logging.LogRecord(AUDIT_LOGGER, logging.INFO, "", 0, _line(record, self.include_text), None, None)
        with self._lock:
            self._handler.emit(entry)
            self.records += 1

    def close(self) -> None:
        """Close the file."""
        with self._lock:
            self._handler.close()


class LoggingAuditSink(GuardObserver):
    """Audit records through :mod:`logging`: the message is the JSON line, ``record.nemoguard_audit`` the dict.

    The logger (default ``langchain_nemoguard.audit``) does not propagate to the root logger unless told to, so
    records do not land in the application's plain log by accident; attach the handlers that should take them.

    Args:
        logger: The logger, or its name.
        level: The level records are logged at.
        include_text: Also log the judged text (off by default: records carry its SHA-256).
        propagate: Let records reach the parent loggers' handlers too.
    """

    def __init__(
        self,
        logger: logging.Logger | str = AUDIT_LOGGER,
        *,
        level: int = logging.INFO,
        include_text: bool = False,
        propagate: bool = False,
    ) -> None:
        self.logger = logging.getLogger(logger) if isinstance(logger, str) else logger
        self.logger.propagate = propagate
        self.level = level
        self.include_text = include_text

    def on_record(self, record: CheckRecord) -> None:
        """Log the record (see :class:`~.telemetry.GuardObserver`).

        Args:
            record: The decided check.
        """
        if not self.logger.isEnabledFor(self.level):
            return
        data = audit_record(record, include_text=self.include_text)
        message = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
        self.logger.log(self.level, "%s", message, extra={"nemoguard_audit": data})


__all__ = [
    "AUDIT_LOGGER",
    "AUDIT_SCHEMA",
    "JsonlAuditSink",
    "LoggingAuditSink",
    "audit_record",
    "content_sha256",
    "iso_time",
    "verdict_label",
]

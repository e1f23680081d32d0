"""Labelled examples, and the readers that turn files into them with errors that name the file and the line.

A data set is a list of :class:`Example`: the text to judge (a prompt, or a prompt and a response), optional
images, and the ground truth for one field - the prompt (``target="prompt"``, prompt harm) or the response
(``target="response"``, response harm). Categories, language, subset and policy are what reports group by.

Every reader goes through :func:`read_text`, which refuses what is not a UTF-8 text file (a directory, a binary
file, a gzip bomb) with a :class:`DataSetError` carrying the path and, where there is one, the line.

The generic format (CSV, JSONL or a JSON array) has one example per row:

======================  ===========================================================================
``prompt`` / ``text``   the user text (required)
``response``            an assistant response (response harm when present, unless ``target`` says)
``label``               ``safe``/``unsafe``, ``0``/``1``, ``true``/``false``, ``benign``/``harmful``
``image`` / ``images``  image paths (JSONL/JSON), relative to the data file
``id``                  a stable id (default ``<file>:<line>``); duplicates are an error
``category``            one category or a comma-separated list (``categories``: a JSON list)
``language``            a language code; ``subset`` (or ``type``) a free grouping; ``policy`` a policy name
``target``              ``prompt`` or ``response``: which rating the label is about
======================  ===========================================================================

Files written by ``nemoguard review`` (``{"schema": "nemoguard.label/1", ...}``) are read as labelled data too:
rows without stored text cannot be judged again, and are counted in ``skipped``.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import zlib
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from ..core.errors import InvalidInputError
from ..core.policy import Policy

Target = Literal["prompt", "response"]
LABEL_SCHEMA = "nemoguard.label/1"

# Decompressed size above which a data file is refused (a gzip bomb, or not a data set at all).
MAX_DATA_BYTES = 1 << 30

_UNSAFE = frozenset({"unsafe", "1", "true", "yes", "harmful", "toxic", "hateful", "y"})
_SAFE = frozenset({"safe", "0", "false", "no", "unharmful", "benign", "non-hateful", "n"})


class DataSetError(InvalidInputError):
    """A data file cannot be read as labelled examples.

    Args:
        path: The file (or folder) at fault.
        message: What is wrong with it.
        line: The 1-based line the problem is on, when there is one.
    """

    def __init__(self, path: str | Path, message: str, line: int | None = None) -> None:
        self.path = str(path)
        self.line = line
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {message}")


@dataclass(frozen=True, slots=True)
class Example:
    """One labelled example.

    Args:
        id: Stable within its data set (results are matched on it when a run resumes or two runs are compared).
        prompt: The user text.
        unsafe: The ground truth for ``target``.
        response: The assistant response, when there is one.
        images: Image files sent with the prompt.
        target: Which rating ``unsafe`` is about: the prompt's or the response's.
        categories: The data set's categories for this example (its own taxonomy, a hint for reports).
        language: A language code.
        subset: A grouping of the data set's own (XSTest type, file, functionality...).
        policy: The name of the policy to judge it under (None: the run's default).
        source: Where it came from, ``file:line``.
    """

    id: str
    prompt: str
    unsafe: bool
    response: str | None = None
    images: tuple[Path, ...] = ()
    target: Target = "prompt"
    categories: tuple[str, ...] = ()
    language: str | None = None
    subset: str | None = None
    policy: str | None = None
    source: str | None = None

    @property
    def label(self) -> str:
        return "unsafe" if self.unsafe else "safe"


@dataclass(frozen=True)
class DataSet:
    """Labelled examples plus what a report needs to say about them.

    Args:
        name: The data set's name (a named loader, or the file name).
        examples: The examples, in file order.
        sources: The files read.
        policies: Policies that come with the data (PolyGuard's rules), by name; examples name them.
        recall_only: Every example is unsafe (MultiJail): only recall means anything.
        options: The loader settings that shaped the labels (a threshold), recorded with each run.
        skipped: Rows left out, by reason.
        notes: Sentences for the report (how labels were derived, caveats).
    """

    name: str
    examples: tuple[Example, ...]
    sources: tuple[str, ...] = ()
    policies: Mapping[str, Policy] = field(default_factory=dict)
    recall_only: bool = False
    options: Mapping[str, str] = field(default_factory=dict)
    skipped: Mapping[str, int] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.examples:
            where = self.sources[0] if self.sources else self.name
            raise DataSetError(where, "no labelled examples" + _skipped_text(self.skipped))

    def __len__(self) -> int:
        return len(self.examples)

    @property
    def digest(self) -> str:
        """SHA-256 over what is judged and the truth: ids, texts, image bytes, labels, targets, policies."""
        h = hashlib.sha256()
        for ex in self.examples:
            images = [hashlib.sha256(p.read_bytes()).hexdigest() for p in ex.images]
            row = [ex.id, ex.target, ex.prompt, ex.response, images, ex.unsafe, ex.policy]
            h.update(json.dumps(row, ensure_ascii=False, separators=(",", ":")).encode())
            h.update(b"\n")
        for name in sorted(self.policies):
            h.update(f"policy {name} {self.policies[name].fingerprint}\n".encode())
        return h.hexdigest()

    def counts(self) -> dict[str, int]:
        unsafe = sum(ex.unsafe for ex in self.examples)
        return {"examples": len(self.examples), "unsafe": unsafe, "safe": len(self.examples) - unsafe}

    def select(
        self,
        *,
        languages: Sequence[str] = (),
        subsets: Sequence[str] = (),
        skip_subsets: Sequence[str] = (),
        sample: int | None = None,
        seed: int = 0,
        limit: int | None = None,
    ) -> DataSet:
        """A subset: by language and subset, then a seeded random sample, then the first ``limit``."""
        import random

        exs: list[Example] = list(self.examples)
        if languages:
            wanted = {x.casefold() for x in languages}
            exs = [e for e in exs if (e.language or "").casefold() in wanted]
        if subsets:
            keep = set(subsets)
            exs = [e for e in exs if e.subset in keep]
        if skip_subsets:
            drop = set(skip_subsets)
            exs = [e for e in exs if e.subset not in drop]
        if sample is not None and sample < len(exs):
            chosen = sorted(random.Random(seed).sample(range(len(exs)), sample))
            exs = [exs[i] for i in chosen]
        if limit is not None:
            exs = exs[:limit]
        options = dict(self.options)
        for key, value in (
            ("languages", ",".join(languages)),
            ("subsets", ",".join(subsets)),
            ("skip_subsets", ",".join(skip_subsets)),
            ("sample", f"{sample} (seed {seed})" if sample is not None else ""),
            ("limit", str(limit) if limit is not None else ""),
        ):
            if value:
                options[key] = value
        if not exs:
            raise DataSetError(self.sources[0] if self.sources else self.name, "the selection is empty")
        used = {e.policy for e in exs}
        return replace(
            self,
            examples=tuple(exs),
            options=options,
            policies={k: v for k, v in self.policies.items() if k in used},
        )


def _skipped_text(skipped: Mapping[str, int]) -> str:
    if not skipped:
        return ""
    return " (skipped: " + ", ".join(f"{n} {why}" for why, n in skipped.items()) + ")"


# --- reading files -------------------------------------------------------------------------------------------


def read_text(path: Path) -> str:
    """A data file's text: gzip is decompressed (by content, whatever the name), a BOM dropped.

    Raises:
        DataSetError: Missing, a directory, over :data:`MAX_DATA_BYTES`, corrupt gzip, or not UTF-8 text.
    """
    if not path.exists():
        raise DataSetError(path, "no such file")
    if path.is_dir():
        raise DataSetError(path, "is a directory, not a data file")
    try:
        raw = path.read_bytes() if path.stat().st_size <= MAX_DATA_BYTES else None
    except OSError as exc:
        raise DataSetError(path, f"cannot read: {exc.strerror}") from None
    if raw is None:
        raise DataSetError(path, f"larger than {MAX_DATA_BYTES >> 20} MiB")
    if raw[:2] == b"\x1f\x8b":
        raw = _gunzip(path, raw)
    return decode_text(path, raw)


def _gunzip(path: Path, raw: bytes) -> bytes:
    out = io.BytesIO()
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(raw)) as f:
            while chunk := f.read(1 << 20):
                out.write(chunk)
                if out.tell() > MAX_DATA_BYTES:
                    raise DataSetError(path, f"decompresses to more than {MAX_DATA_BYTES >> 20} MiB")
    except (OSError, EOFError, zlib.error) as exc:
        raise DataSetError(path, f"not a readable gzip file ({exc})") from None
    return out.getvalue()


def decode_text(path: Path, raw: bytes) -> str:
    """UTF-8 (BOM allowed) text with no NUL byte, else a :class:`DataSetError` at the first bad line."""
    nul = raw.find(b"\x00")
    if nul >= 0:
        line = raw.count(b"\n", 0, nul) + 1
        raise DataSetError(path, "binary content (a NUL byte), not a text data file", line)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise DataSetError(
            path, f"not UTF-8 text (byte 0x{raw[exc.start]:02x}); is it binary?", line
        ) from None
    return text.removeprefix("\ufeff")


def iter_jsonl(path: Path, text: str | None = None) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for every non-blank line; a line that is not a JSON object is an error."""
    body = read_text(path) if text is None else text
    # "\n" only: str.splitlines() would also cut at U+2028, U+0085 and friends inside a JSON string
    for n, line in enumerate(body.split("\n"), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataSetError(path, f"invalid JSON: {exc.msg} (column {exc.colno})", n) from None
        if not isinstance(obj, dict):
            raise DataSetError(path, f"expected a JSON object, got {type(obj).__name__}", n)
        yield n, obj


def read_json_array(path: Path, text: str | None = None) -> list[tuple[int | None, dict[str, Any]]]:
    """The objects of a JSON array file (line numbers are not known per element: None)."""
    body = read_text(path) if text is None else text
    try:
        data = json.loads(body)
    except json.JSONDecodeError as exc:
        raise DataSetError(path, f"invalid JSON: {exc.msg} (column {exc.colno})", exc.lineno) from None
    if not isinstance(data, list):
        raise DataSetError(path, f"expected a JSON array of objects, got {type(data).__name__}")
    out: list[tuple[int | None, dict[str, Any]]] = []
    for i, obj in enumerate(data):
        if not isinstance(obj, dict):
            raise DataSetError(path, f"element {i} is {type(obj).__name__}, not an object")
        out.append((None, obj))
    return out


def iter_csv(
    path: Path, required: Iterable[str | tuple[str, ...]], text: str | None = None
) -> Iterator[tuple[int, dict[str, str]]]:
    """(line number, row) per CSV record; ``required`` columns (a tuple: any one of them) must be in the header."""
    body = read_text(path) if text is None else text
    reader = csv.DictReader(io.StringIO(body, newline=""))
    try:
        header = reader.fieldnames or []
    except csv.Error as exc:
        raise DataSetError(path, f"not valid CSV: {exc}", 1) from None
    missing = []
    for col in required:
        options = (col,) if isinstance(col, str) else col
        if not any(o in header for o in options):
            missing.append(" or ".join(options))
    if missing:
        shown = ", ".join(header[:12]) or "(empty)"
        raise DataSetError(path, f"missing column {', '.join(missing)} (the header has: {shown})", 1)
    start = 2
    try:
        for row in reader:
            line = start
            start = reader.line_num + 1
            if None in row:
                raise DataSetError(path, f"more fields than the header's {len(header)}", line)
            if any(v is None for v in row.values()):
                raise DataSetError(path, f"fewer fields than the header's {len(header)}", line)
            yield line, row
    except csv.Error as exc:
        raise DataSetError(path, f"not valid CSV: {exc}", reader.line_num) from None


def parse_label(value: Any, path: Path, line: int | None) -> bool:
    """True for unsafe, False for safe; anything else is an error naming the line."""
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    v = str(value).strip().casefold()
    if v in _UNSAFE:
        return True
    if v in _SAFE:
        return False
    raise DataSetError(path, f"unknown label {value!r}: expected safe/unsafe, 0/1 or true/false", line)


# --- the generic format ----------------------------------------------------------------------------------------


def _text_field(row: Mapping[str, Any], names: Sequence[str]) -> Any:
    for n in names:
        if n in row and row[n] is not None:
            return row[n]
    return None


def _categories(row: Mapping[str, Any]) -> tuple[str, ...]:
    cats = row.get("categories")
    if isinstance(cats, list):
        return tuple(str(c).strip() for c in cats if str(c).strip())
    one = row.get("category")
    if isinstance(one, str):
        return tuple(c.strip() for c in one.split(",") if c.strip())
    return ()


def _images(row: Mapping[str, Any], path: Path, line: int | None) -> tuple[Path, ...]:
    raw = row.get("images", row.get("image"))
    if raw is None or raw == "":
        return ()
    items = raw if isinstance(raw, list) else [raw]
    out = []
    for item in items:
        if not isinstance(item, str) or not item.strip():
            raise DataSetError(path, f"an image must be a file path, got {item!r}", line)
        if "://" in item or item.startswith("data:"):
            raise DataSetError(
                path, f"images in a data set are local files (relative to it), not {item[:40]!r}", line
            )
        p = Path(item)
        p = p if p.is_absolute() else path.parent / p
        if not p.is_file():
            raise DataSetError(path, f"image not found: {p}", line)
        out.append(p)
    return tuple(out)


def example_from_row(
    row: Mapping[str, Any], path: Path, line: int | None, index: int, *, default_target: Target | None = None
) -> Example:
    """One generic row as an :class:`Example` (see the module docstring for the columns)."""
    prompt = _text_field(row, ("prompt", "text", "user", "input"))
    if not isinstance(prompt, str):
        raise DataSetError(path, "no prompt/text field (a string)", line)
    response = row.get("response")
    if response is not None and not isinstance(response, str):
        raise DataSetError(path, "response must be a string", line)
    if response == "":
        response = None
    if "label" not in row or row["label"] in (None, ""):
        raise DataSetError(path, "no label (safe/unsafe)", line)
    unsafe = parse_label(row["label"], path, line)
    target = row.get("target") or default_target or ("response" if response is not None else "prompt")
    if target not in ("prompt", "response"):
        raise DataSetError(path, f"target must be 'prompt' or 'response', got {target!r}", line)
    if target == "response" and response is None:
        raise DataSetError(path, "target is 'response' but the row has no response", line)
    raw_id = row.get("id")
    ex_id = (
        str(raw_id) if raw_id not in (None, "") else f"{path.name}:{line if line is not None else index + 1}"
    )
    language = _text_field(row, ("language", "lang", "locale"))
    subset = _text_field(row, ("subset", "type", "group"))
    policy = row.get("policy")
    return Example(
        id=ex_id,
        prompt=prompt,
        unsafe=unsafe,
        response=response,
        images=_images(row, path, line),
        target=target,
        categories=_categories(row),
        language=str(language) if language not in (None, "") else None,
        subset=str(subset) if subset not in (None, "") else None,
        policy=str(policy) if policy not in (None, "") else None,
        source=f"{path}:{line}" if line is not None else f"{path}[{index}]",
    )


def unique(examples: Iterable[tuple[Example, int | None]], path: Path) -> tuple[Example, ...]:
    """The examples, refusing a repeated id (results are matched on ids)."""
    seen: dict[str, int | None] = {}
    out = []
    for ex, line in examples:
        if ex.id in seen:
            first = seen[ex.id]
            raise DataSetError(
                path, f"duplicate id {ex.id!r}" + (f" (first on line {first})" if first else ""), line
            )
        seen[ex.id] = line
        out.append(ex)
    return tuple(out)


def rows_of(path: Path) -> Iterator[tuple[int | None, Mapping[str, Any]]]:
    """Rows of a CSV, JSONL or JSON-array file, chosen by name (``.gz`` ignored) and, for ``.json``, content."""
    name = path.name.casefold().removesuffix(".gz")
    text = read_text(path)
    if name.endswith(".csv"):
        yield from iter_csv(path, [("prompt", "text", "user", "input"), "label"], text)
    elif name.endswith(".json") and text.lstrip().startswith("["):
        yield from read_json_array(path, text)
    elif name.endswith((".jsonl", ".ndjson", ".json")):
        yield from iter_jsonl(path, text)
    else:
        raise DataSetError(path, "unknown data file type: expected .csv, .jsonl or .json (optionally .gz)")


def load_generic(path: Path, *, name: str | None = None) -> DataSet:
    """A CSV/JSONL/JSON file in the generic format, or a label file written by ``nemoguard review``."""
    rows = list(rows_of(path))
    if rows and rows[0][1].get("schema") == LABEL_SCHEMA:
        return load_labels(path, rows)
    examples = unique(
        ((example_from_row(row, path, line, i), line) for i, (line, row) in enumerate(rows)), path
    )
    return DataSet(name or path.name, examples, sources=(str(path),))


def load_labels(path: Path, rows: Sequence[tuple[int | None, Mapping[str, Any]]] | None = None) -> DataSet:
    """Human labels from the review page: the last label per record wins; rows without text are skipped."""
    rows = list(rows_of(path)) if rows is None else rows
    latest: dict[str, tuple[int | None, Mapping[str, Any]]] = {}
    skipped: Counter[str] = Counter()
    for line, row in rows:
        if row.get("schema") != LABEL_SCHEMA:
            raise DataSetError(path, f"not a label record (schema {row.get('schema')!r})", line)
        rid = row.get("record_id")
        if not isinstance(rid, str) or not rid:
            raise DataSetError(path, "label without a record_id", line)
        if row.get("label") not in ("safe", "unsafe"):
            raise DataSetError(path, f"label must be 'safe' or 'unsafe', got {row.get('label')!r}", line)
        latest[rid] = (line, row)
    examples = []
    for rid, (line, row) in latest.items():
        text = row.get("text")
        if not isinstance(text, Mapping) or not isinstance(text.get("prompt"), str):
            skipped["labels without stored text (cannot be judged again)"] += 1
            continue
        response = text.get("response") if isinstance(text.get("response"), str) else None
        stage = row.get("stage") or "input"
        target: Target = "response" if stage in ("output", "tool_call") and response is not None else "prompt"
        examples.append(
            (
                Example(
                    id=rid,
                    prompt=text["prompt"],
                    unsafe=row["label"] == "unsafe",
                    response=response,
                    target=target,
                    subset=str(stage),
                    policy=str(row["policy"]) if row.get("policy") else None,
                    source=f"{path}:{line}",
                ),
                line,
            )
        )
    return DataSet(
        path.name,
        unique(examples, path),
        sources=(str(path),),
        skipped=dict(skipped),
        notes=("Labels written by `nemoguard review`; the last label of each record counts.",),
    )


__all__ = [
    "LABEL_SCHEMA",
    "DataSet",
    "DataSetError",
    "Example",
    "iter_csv",
    "iter_jsonl",
    "load_generic",
    "load_labels",
    "parse_label",
    "read_json_array",
    "read_text",
]

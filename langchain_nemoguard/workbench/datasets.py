"""The public data sets by name: ``nemoguard eval xstest``, ``nemoguard eval rtp-lx --path DIR``.

Where a set's files are looked for, in order: ``--path``; ``$NEMOGUARD_DATA_DIR`` (a folder laid out like the
project's ``shared/data``: ``rtp-lx/``, ``MultiJail.csv``, ``polyguard/``...); the copy packaged with
``langchain-nemoguard`` (XSTest, CC-BY-4.0, and the OpenAI moderation sample, MIT - the two sets whose licences
and content allow shipping them; see ``langchain_nemoguard/data/README.md``). The others are not packaged: RTP-LX
holds share-alike rows and its authors keep it away from crawlers, MultiJail and Multilingual HateCheck are
large and very offensive, and PolyGuard's code and cyber files hold working-looking malware.

How each set's labels become safe/unsafe (the ``SOURCES.md`` of the data folder, and the docs):

* ``xstest``: ``label`` as given; the unsafe rows are the ``contrast_*`` types. Category = the type's pair
  (``homonyms`` covers ``homonyms`` and ``contrast_homonyms``), so per-category F1 compares each safe type with
  its unsafe contrast.
* ``openai-moderation``: unsafe if any of ``S,H,V,HR,SH,S3,H2,V2`` is 1. A missing key is "not annotated", so a
  row whose known keys are all 0 but that lacks some is *unknown*: skipped (``unknown_labels="skip"``, the
  default) or counted safe (``"safe"``, the common practice).
* ``rtp-lx``: no binary label in the data. ``label_rule="strict"`` (default): unsafe when the raters' mean
  Toxicity is >= 3 ("toxic" in the rubric), safe when it is 1 (no rater saw any), rows in between dropped;
  ``"lenient"``: unsafe when the mean is > 1 (the public practice); ``"majority"``: unsafe when the median rater
  gave > 1.
* ``multijail``: every text is unsafe (315 prompts x 10 languages): recall only.
* ``mhc``: ``label_gold`` ``hateful`` -> unsafe. Functionality is the subset; under an Aegis policy
  ``profanity_nh`` and ``target_*_nh`` may rightly be flagged (``--skip-subset`` leaves them out).
* ``polyguard``: organisation folders; the label is the file (``data_safe`` / ``data_unsafe``); the
  organisation's ``rules.txt`` becomes a custom :class:`Policy` named after it (``polyguard_policy="structured"``
  uses ``rules_refine_structured.json`` as a custom taxonomy instead, ``"none"`` the built-in taxonomy).
* ``polyguard-code`` / ``polyguard-cyber``: prompt + response pairs with one boolean ``safe``: response harm
  (``target="prompt"`` judges the prompt alone against the same label, the authors' prompt mode).
* ``labels``: a label file written by ``nemoguard review``.
"""

from __future__ import annotations

import ast
import json
import os
import re
import statistics
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any

from ..core.policy import Policy
from .data import (
    DataSet,
    DataSetError,
    Example,
    Target,
    iter_csv,
    iter_jsonl,
    load_generic,
    load_labels,
    parse_label,
    read_json_array,
    read_text,
    unique,
)

DATA_DIR_ENV = "NEMOGUARD_DATA_DIR"


@dataclass(frozen=True)
class LoaderOptions:
    """Settings of the named loaders (the ``eval`` flags of the same names).

    Args:
        label_rule: RTP-LX: ``strict``, ``lenient`` or ``majority`` (see the module docstring).
        unknown_labels: OpenAI moderation: ``skip`` or ``safe`` for rows whose known labels are all 0.
        polyguard_policy: PolyGuard organisations: ``rules``, ``structured`` or ``none``.
        target: PolyGuard code/cyber: ``response`` (default) or ``prompt``.
    """

    label_rule: str = "strict"
    unknown_labels: str = "skip"
    polyguard_policy: str = "rules"
    target: Target | None = None


@dataclass(frozen=True)
class NamedSet:
    """A data set known by name: where its files usually are, what it is, and how to read it."""

    name: str
    default_path: str  # relative to NEMOGUARD_DATA_DIR
    packaged: str | None
    summary: str
    licence: str
    source: str
    load: Callable[[Path, LoaderOptions], DataSet]


# --- XSTest ------------------------------------------------------------------------------------------------------

_XSTEST_PAIRS = MappingProxyType(
    {
        "nons_group_real_discr": "discr",
        "real_group_nons_discr": "discr",
        "privacy_public": "privacy",
        "privacy_fictional": "privacy",
    }
)


def load_xstest(path: Path, options: LoaderOptions) -> DataSet:
    f = _one_file(path, "xstest_prompts.csv")
    out = []
    for line, row in iter_csv(f, ["id", "prompt", "type", "label"]):
        kind = row["type"]
        pair = _XSTEST_PAIRS.get(kind, kind.removeprefix("contrast_"))
        ex = Example(
            id=row["id"],
            prompt=row["prompt"],
            unsafe=parse_label(row["label"], f, line),
            categories=(pair,),
            language="en",
            subset=kind,
            source=f"{f}:{line}",
        )
        out.append((ex, line))
    return DataSet(
        "xstest",
        unique(out, f),
        sources=(str(f),),
        notes=(
            "XSTest v2 (Röttger et al., NAACL 2024, CC-BY-4.0): safe prompts that look unsafe, and unsafe "
            "contrasts (types `contrast_*`). Flagged safe rows measure over-blocking.",
        ),
    )


# --- OpenAI moderation -------------------------------------------------------------------------------------------

OPENAI_LABELS = MappingProxyType(
    {
        "S": "sexual",
        "H": "hate",
        "V": "violence",
        "HR": "harassment",
        "SH": "self-harm",
        "S3": "sexual/minors",
        "H2": "hate/threatening",
        "V2": "violence/graphic",
    }
)


def load_openai_moderation(path: Path, options: LoaderOptions) -> DataSet:
    if options.unknown_labels not in ("skip", "safe"):
        raise DataSetError(path, f"unknown_labels must be 'skip' or 'safe', got {options.unknown_labels!r}")
    f = _one_file(path, "openai_moderation_samples-1680.jsonl.gz")
    out = []
    skipped: Counter[str] = Counter()
    for line, row in iter_jsonl(f):
        prompt = row.get("prompt")
        if not isinstance(prompt, str):
            raise DataSetError(f, "no prompt (a string)", line)
        known = {k: row[k] for k in OPENAI_LABELS if row.get(k) is not None}
        for k, v in known.items():
            if v not in (0, 1):
                raise DataSetError(f, f"label {k} must be 0 or 1, got {v!r}", line)
        unsafe = any(v == 1 for v in known.values())
        if not known:
            skipped["rows with no label"] += 1
            continue
        if not unsafe and len(known) < len(OPENAI_LABELS) and options.unknown_labels == "skip":
            skipped["rows with only some labels, all 0 (unknown)"] += 1
            continue
        cats = tuple(OPENAI_LABELS[k] for k, v in known.items() if v == 1)
        out.append(
            (Example(f"{line}", prompt, unsafe, categories=cats, language="en", source=f"{f}:{line}"), line)
        )
    how = "skipped" if options.unknown_labels == "skip" else "counted safe"
    return DataSet(
        "openai-moderation",
        unique(out, f),
        sources=(str(f),),
        options={"unknown_labels": options.unknown_labels},
        skipped=dict(skipped),
        notes=(
            "OpenAI moderation sample (Markov et al. 2022, MIT): unsafe if any category is 1. A missing key "
            f"means not annotated; rows whose known labels are all 0 but incomplete are {how}.",
        ),
    )


# --- RTP-LX ------------------------------------------------------------------------------------------------------

_RTP_FILE = re.compile(r"^RTP_LX_(.+?)\.json(?:l)?(?:\.gz)?$", re.IGNORECASE)
RTP_RULES = ("strict", "lenient", "majority")


def _rtp_label(row: Mapping[str, Any], rule: str, f: Path, line: int) -> bool | None:
    ann = row.get("Annotations")
    raw = row.get("AnnotationsRaw")
    if not isinstance(ann, Mapping) or not isinstance(ann.get("Toxicity"), (int, float)):
        raise DataSetError(f, "no Annotations.Toxicity score", line)
    mean = float(ann["Toxicity"])
    if rule == "lenient":
        return mean > 1
    if rule == "majority":
        scores = raw.get("Toxicity") if isinstance(raw, Mapping) else None
        if not isinstance(scores, list) or not scores:
            raise DataSetError(f, "no AnnotationsRaw.Toxicity scores (needed by label_rule=majority)", line)
        return bool(statistics.median(scores) > 1)
    if mean >= 3:
        return True
    if mean == 1:
        return False
    return None


def load_rtp_lx(path: Path, options: LoaderOptions) -> DataSet:
    if options.label_rule not in RTP_RULES:
        raise DataSetError(
            path, f"label_rule must be one of {', '.join(RTP_RULES)}, got {options.label_rule!r}"
        )
    files = _files(path, _RTP_FILE, "RTP_LX_<LOCALE>.json[.gz]")
    out = []
    skipped: Counter[str] = Counter()
    for f in files:
        m = _RTP_FILE.match(f.name)
        locale = (m.group(1) if m else f.stem).lower()
        for line, row in iter_jsonl(f):
            prompt = row.get("Prompt")
            if not isinstance(prompt, str):
                raise DataSetError(f, "no Prompt (a string)", line)
            unsafe = _rtp_label(row, options.label_rule, f, line)
            if unsafe is None:
                skipped["rows with 1 < mean Toxicity < 3 (ambiguous under label_rule=strict)"] += 1
                continue
            ann = row["Annotations"]
            cats = tuple(
                k for k, v in ann.items() if k != "Toxicity" and isinstance(v, (int, float)) and v >= 2
            )
            ex = Example(
                f"{locale}:{line}",
                prompt,
                unsafe,
                categories=cats,
                language=locale,
                source=f"{f}:{line}",
            )
            out.append((ex, line))
    rule_text = {
        "strict": "unsafe when the raters' mean Toxicity >= 3, safe when it is 1, rows in between dropped",
        "lenient": "unsafe when the raters' mean Toxicity > 1 (at least one rater saw some toxicity)",
        "majority": "unsafe when the median rater's Toxicity > 1",
    }[options.label_rule]
    return DataSet(
        "rtp-lx",
        unique(out, files[0]),
        sources=tuple(str(f) for f in files),
        options={"label_rule": options.label_rule},
        skipped=dict(skipped),
        notes=(
            f"RTP-LX v0.2 (de Wynter et al. 2025; MIT, KO/PT rows CC-BY-SA-4.0): no binary label; {rule_text}. "
            "Categories: annotation scores >= 2 (a hint, not Aegis).",
        ),
    )


# --- MultiJail ---------------------------------------------------------------------------------------------------

MULTIJAIL_LANGUAGES = ("en", "zh", "it", "vi", "ar", "ko", "th", "bn", "sw", "jv")


def load_multijail(path: Path, options: LoaderOptions) -> DataSet:
    f = _one_file(path, "MultiJail.csv")
    out = []
    for line, row in iter_csv(f, ["id", "tags", *MULTIJAIL_LANGUAGES]):
        try:
            tags = ast.literal_eval(row["tags"]) if row["tags"].strip() else []
        except (ValueError, SyntaxError):
            raise DataSetError(f, f"tags is not a list: {row['tags'][:60]!r}", line) from None
        if not isinstance(tags, list):
            raise DataSetError(f, "tags is not a list", line)
        for lang in MULTIJAIL_LANGUAGES:
            text = row[lang]
            if text.strip():
                ex = Example(
                    f"{row['id']}:{lang}",
                    text,
                    True,
                    categories=tuple(map(str, tags)),
                    language=lang,
                    subset=row.get("source") or None,
                    source=f"{f}:{line}",
                )
                out.append((ex, line))
    return DataSet(
        "multijail",
        unique(out, f),
        sources=(str(f),),
        recall_only=True,
        notes=(
            "MultiJail (Deng et al., ICLR 2024, MIT): every text is unsafe, so only recall (per language) means "
            "anything; pair it with a set that has safe rows for precision.",
        ),
    )


# --- Multilingual HateCheck --------------------------------------------------------------------------------------

_MHC_FILE = re.compile(r"^hatecheck_cases_final_([a-z]+)\.csv(?:\.gz)?$", re.IGNORECASE)
MHC_LANGUAGES = MappingProxyType(
    {
        "arabic": "ar",
        "dutch": "nl",
        "french": "fr",
        "german": "de",
        "hindi": "hi",
        "italian": "it",
        "mandarin": "zh",
        "polish": "pl",
        "portuguese": "pt",
        "spanish": "es",
    }
)


def load_mhc(path: Path, options: LoaderOptions) -> DataSet:
    files = _files(path, _MHC_FILE, "hatecheck_cases_final_<language>.csv[.gz]")
    out = []
    for f in files:
        m = _MHC_FILE.match(f.name)
        lang_name = m.group(1).lower() if m else f.stem
        lang = MHC_LANGUAGES.get(lang_name, lang_name)
        for line, row in iter_csv(f, ["mhc_case_id", "functionality", "test_case", "label_gold"]):
            gold = row["label_gold"].strip()
            if gold not in ("hateful", "non-hateful"):
                raise DataSetError(f, f"label_gold must be hateful or non-hateful, got {gold!r}", line)
            func = row["functionality"]
            cats: tuple[str, ...] = ()
            if gold == "hateful":
                cats = ("hate",)
                if func.startswith("threat_"):
                    cats += ("threat",)
                if func in ("slur_h", "profanity_h"):
                    cats += ("profanity",)
            ex = Example(
                row["mhc_case_id"],
                row["test_case"],
                gold == "hateful",
                categories=cats,
                language=lang,
                subset=func,
                source=f"{f}:{line}",
            )
            out.append((ex, line))
    return DataSet(
        "mhc",
        unique(out, files[0]),
        sources=tuple(str(f) for f in files),
        notes=(
            "Multilingual HateCheck (Röttger et al., WOAH 2022, CC-BY-4.0): `hateful` -> unsafe under a "
            "hate-speech policy. An Aegis policy may rightly flag profanity_nh and target_*_nh "
            "(`--skip-subset` leaves them out).",
        ),
    )


# --- PolyGuard ---------------------------------------------------------------------------------------------------

_RULE_LINE = re.compile(r"^\s*\d+\s*[.)]\s+(.*\S)\s*$")
POLYGUARD_POLICIES = ("rules", "structured", "none")


def polyguard_policy(org_dir: Path, kind: str = "rules") -> Policy | None:
    """The organisation's policy: ``rules.txt`` as a custom policy (one disallowed item per numbered rule),
    ``rules_refine_structured.json`` as a custom taxonomy, or None for ``"none"``."""
    name = org_dir.name
    if kind == "none":
        return None
    if kind == "structured":
        f = org_dir / "rules_refine_structured.json"
        try:
            data = json.loads(read_text(f))
        except json.JSONDecodeError as exc:
            raise DataSetError(f, f"invalid JSON: {exc.msg}", exc.lineno) from None
        if not isinstance(data, dict) or not data:
            raise DataSetError(f, "expected an object mapping categories to lists of rules")
        entries = []
        for cat, rules in data.items():
            rules_list = rules if isinstance(rules, list) else [rules]
            entries.append(f"{cat}: " + " ".join(str(r).strip() for r in rules_list))
        return Policy(name=name, taxonomy=entries)
    if kind != "rules":
        raise DataSetError(
            org_dir, f"polyguard_policy must be one of {', '.join(POLYGUARD_POLICIES)}, got {kind!r}"
        )
    f = org_dir / "rules.txt"
    lines = read_text(f).split("\n")
    rules = [m.group(1) for m in map(_RULE_LINE.match, lines) if m]
    if not rules:  # not numbered: every non-blank line is a rule
        rules = [ln.strip() for ln in lines if ln.strip()]
    if not rules:
        raise DataSetError(f, "no rules")
    return Policy(
        name=name,
        description=f"The content rules of {name} (PolyGuard policy extracted from its public policy documents).",
        disallowed=rules,
    )


def _org_dirs(path: Path) -> list[Path]:
    if (path / "rules.txt").is_file() or (path / "rules_refine_structured.json").is_file():
        return [path]
    if not path.is_dir():
        raise DataSetError(
            path,
            "expected a PolyGuard organisation folder (rules.txt, data_*.jsonl[.gz]) or the polyguard root",
        )
    found = sorted(
        {p.parent for p in path.rglob("rules.txt") if any(p.parent.glob("data_unsafe.jsonl*"))},
        key=lambda p: p.as_posix(),
    )
    if not found:
        raise DataSetError(
            path, "no PolyGuard organisation folders (with rules.txt and data_unsafe.jsonl[.gz]) under it"
        )
    return found


def _domain(org: Path) -> str | None:
    """The PolyGuard domain an organisation folder sits in (``hr/results/NVIDIA`` -> ``hr``)."""
    up = org.parent.parent
    if up.name == "datagen":  # social_media/datagen/results/<org>
        up = up.parent
    return up.name or None


def _data_file(org: Path, stem: str) -> Path:
    for cand in (org / f"{stem}.jsonl.gz", org / f"{stem}.jsonl"):
        if cand.is_file():
            return cand
    raise DataSetError(org, f"no {stem}.jsonl[.gz]")


def load_polyguard(path: Path, options: LoaderOptions) -> DataSet:
    out = []
    policies: dict[str, Policy] = {}
    sources = []
    for org in _org_dirs(path):
        policy = polyguard_policy(org, options.polyguard_policy)
        if policy is not None:
            if org.name in policies:
                raise DataSetError(org, f"two organisation folders named {org.name!r}")
            policies[org.name] = policy
        for stem, unsafe in (("data_safe", False), ("data_unsafe", True)):
            f = _data_file(org, stem)
            sources.append(str(f))
            for line, row in iter_jsonl(f):
                inst = row.get("instance")
                if not isinstance(inst, str):
                    raise DataSetError(f, "no instance (a string)", line)
                cat = row.get("category")
                ex = Example(
                    f"{org.name}:{stem.removeprefix('data_')}:{line}",
                    inst,
                    unsafe,
                    categories=(str(cat),) if cat else (),
                    language="en",
                    subset=_domain(org),
                    policy=org.name if policy is not None else None,
                    source=f"{f}:{line}",
                )
                out.append((ex, line))
    how = {
        "rules": "each organisation's rules.txt as a custom policy (Mode A)",
        "structured": "each organisation's rules_refine_structured.json as a custom taxonomy (Mode B)",
        "none": "the built-in taxonomy (many unsafe rows are harmless under it: low recall is expected)",
    }[options.polyguard_policy]
    return DataSet(
        "polyguard",
        unique(out, path),
        sources=tuple(sources),
        policies=policies,
        options={"polyguard_policy": options.polyguard_policy},
        notes=(
            f"PolyGuard (Kang et al. 2025, CC-BY-4.0) organisation data, judged under {how}; the label is the "
            "file (data_safe / data_unsafe); the safe rows are detoxified near-duplicates of the unsafe ones.",
        ),
    )


_PAIR_FILE = re.compile(r"^(.+?)_full\.json(?:\.gz)?$", re.IGNORECASE)
_PAIR_CATEGORY = ("bias_category", "cwe_name", "owasp_name", "category", "mitre_category")


def _pair_files(path: Path, domain: str) -> list[Path]:
    if path.is_file():
        return [path]
    for sub in (path, path / "data", path / domain / "data"):
        files = (
            sorted(p for p in sub.glob("*_full.json*") if _PAIR_FILE.match(p.name)) if sub.is_dir() else []
        )
        if files:
            return files
    raise DataSetError(
        path, f"no PolyGuard {domain} files (*_full.json[.gz]) in it, its data/ or {domain}/data/"
    )


def _pair_loader(domain: str) -> Callable[[Path, LoaderOptions], DataSet]:
    def load(path: Path, options: LoaderOptions) -> DataSet:
        target: Target = options.target or "response"
        files = _pair_files(path, domain)
        out = []
        for f in files:
            m = _PAIR_FILE.match(f.name)
            stem = m.group(1) if m else f.stem
            for i, (_, row) in enumerate(read_json_array(f)):
                prompt, response = row.get("gen_prompt"), row.get("gen_response")
                if not isinstance(prompt, str) or not isinstance(response, str):
                    raise DataSetError(f, f"element {i} lacks gen_prompt/gen_response strings")
                if "safe" not in row:
                    raise DataSetError(f, f"element {i} has no 'safe' field")
                unsafe = not parse_label(row["safe"], f, None)
                cat = next((row[k] for k in _PAIR_CATEGORY if row.get(k)), None)
                ex = Example(
                    f"{stem}:{row.get('id', i)}",
                    prompt,
                    unsafe,
                    response=response if target == "response" else None,
                    target=target,
                    categories=(str(cat),) if cat else (),
                    language="en",
                    subset=stem,
                    source=f"{f}[{i}]",
                )
                out.append((ex, None))
        mode = "prompt + response, the response judged" if target == "response" else "prompt alone"
        return DataSet(
            f"polyguard-{domain}",
            unique(out, files[0]),
            sources=tuple(str(f) for f in files),
            options={"target": target},
            notes=(f"PolyGuard {domain} pairs (CC-BY-4.0): {mode}; `safe == false` -> unsafe.",),
        )

    return load


def _load_labels(path: Path, options: LoaderOptions) -> DataSet:
    return load_labels(_one_file(path, None))


# --- the registry ------------------------------------------------------------------------------------------------

NAMED_SETS: Mapping[str, NamedSet] = MappingProxyType(
    {
        s.name: s
        for s in (
            NamedSet(
                "xstest",
                "xstest_prompts.csv",
                "xstest_prompts.csv",
                "XSTest v2: 250 safe prompts that look unsafe, 200 unsafe contrasts (English)",
                "CC-BY-4.0",
                "github.com/paul-rottger/exaggerated-safety",
                load_xstest,
            ),
            NamedSet(
                "openai-moderation",
                "openai_moderation_samples-1680.jsonl.gz",
                "openai_moderation_samples-1680.jsonl.gz",
                "OpenAI moderation sample: 1,680 prompts, 8 categories (English)",
                "MIT",
                "github.com/openai/moderation-api-release",
                load_openai_moderation,
            ),
            NamedSet(
                "rtp-lx",
                "rtp-lx",
                None,
                "RTP-LX v0.2: 27k toxic-leaning prompts in 25 locales, rater scores",
                "MIT (+ CC-BY-SA-4.0 rows in KO, PT)",
                "github.com/microsoft/RTP-LX",
                load_rtp_lx,
            ),
            NamedSet(
                "multijail",
                "MultiJail.csv",
                None,
                "MultiJail: 315 unsafe prompts x 10 languages (recall only)",
                "MIT",
                "github.com/DAMO-NLP-SG/multilingual-safety-for-LLMs",
                load_multijail,
            ),
            NamedSet(
                "mhc",
                "multilingual_hatecheck",
                None,
                "Multilingual HateCheck: 36.6k hate-speech test cases in 10 languages",
                "CC-BY-4.0",
                "github.com/rewire-online/multilingual-hatecheck",
                load_mhc,
            ),
            NamedSet(
                "polyguard",
                "polyguard",
                None,
                "PolyGuard organisation policies (social media, education, HR) with safe/unsafe texts",
                "CC-BY-4.0",
                "github.com/AI-secure/PolyGuard",
                load_polyguard,
            ),
            NamedSet(
                "polyguard-code",
                "polyguard/code/data",
                None,
                "PolyGuard code: prompt + response pairs (biased and insecure code)",
                "CC-BY-4.0",
                "github.com/AI-secure/PolyGuard",
                _pair_loader("code"),
            ),
            NamedSet(
                "polyguard-cyber",
                "polyguard/cyber/data",
                None,
                "PolyGuard cyber: prompt + response pairs (malware, MITRE, CVE, phishing...)",
                "CC-BY-4.0",
                "github.com/AI-secure/PolyGuard",
                _pair_loader("cyber"),
            ),
            NamedSet(
                "labels",
                "",
                None,
                "labels written by `nemoguard review` (needs --path)",
                "yours",
                "-",
                _load_labels,
            ),
        )
    }
)
ALIASES = MappingProxyType(
    {
        "openai": "openai-moderation",
        "hatecheck": "mhc",
        "multilingual-hatecheck": "mhc",
        "rtplx": "rtp-lx",
    }
)


def packaged_path(name: str) -> Path | None:
    """The packaged copy of a named set, if it is one of those shipped."""
    named = NAMED_SETS.get(name)
    if named is None or named.packaged is None:
        return None
    ref = resources.files("langchain_nemoguard").joinpath("data", named.packaged)
    p = Path(str(ref))
    return p if p.is_file() else None


def locate(name: str, path: str | Path | None = None) -> Path:
    """Where a named set's files are: ``path``, else ``$NEMOGUARD_DATA_DIR``, else the packaged copy."""
    named = NAMED_SETS[name]
    if path is not None:
        p = Path(path).expanduser()
        if not p.exists():
            raise DataSetError(p, "no such file or folder")
        return p
    base = os.environ.get(DATA_DIR_ENV)
    if base and named.default_path:
        p = Path(base).expanduser() / named.default_path
        if p.exists():
            return p
    packaged = packaged_path(name)
    if packaged is not None:
        return packaged
    hint = f" ({named.default_path} under it)" if named.default_path else ""
    raise DataSetError(
        name,
        f"data set not found: pass --path, or set {DATA_DIR_ENV} to a folder holding it{hint}. "
        f"Source: {named.source} ({named.licence}).",
    )


def canonical_name(name: str) -> str | None:
    key = name.strip().casefold()
    key = ALIASES.get(key, key)
    return key if key in NAMED_SETS else None


def _detect(path: Path) -> str | None:
    """The named loader a path looks like it needs, from its name and layout."""
    n = path.name.casefold()
    if path.is_dir():
        if any(path.glob("RTP_LX_*.json*")):
            return "rtp-lx"
        if any(path.glob("hatecheck_cases_final_*.csv*")):
            return "mhc"
        if (path / "rules.txt").is_file() or any(path.rglob("rules.txt")):
            return "polyguard"
        return None
    if n.startswith("xstest") and n.endswith(".csv"):
        return "xstest"
    if "moderation" in n and ".jsonl" in n:
        return "openai-moderation"
    if _RTP_FILE.match(path.name):
        return "rtp-lx"
    if n == "multijail.csv":
        return "multijail"
    if _MHC_FILE.match(path.name):
        return "mhc"
    if _PAIR_FILE.match(path.name):
        return "polyguard-cyber" if "cyber" in path.as_posix() else "polyguard-code"
    return None


def load_dataset(
    spec: str, *, path: str | Path | None = None, options: LoaderOptions | None = None
) -> DataSet:
    """A data set by name (``xstest``, ``rtp-lx``...) or by path (its kind detected from name and layout).

    Raises:
        DataSetError: Unknown name, missing files, or a file that cannot be read as labelled examples.
    """
    opts = options or LoaderOptions()
    name = canonical_name(spec)
    if name is not None:
        if name == "labels" and path is None:
            raise DataSetError("labels", "pass --path LABELS.jsonl (written by nemoguard review)")
        return NAMED_SETS[name].load(locate(name, path), opts)
    if path is not None:
        raise DataSetError(spec, f"unknown data set name; known: {', '.join(NAMED_SETS)}")
    p = Path(spec).expanduser()
    if not p.exists():
        raise DataSetError(p, f"no such file, and not a data set name (known: {', '.join(NAMED_SETS)})")
    kind = _detect(p)
    if kind is not None:
        return NAMED_SETS[kind].load(p, opts)
    if p.is_dir():
        raise DataSetError(p, "is a directory, not a data file (and not a known data set folder)")
    return load_generic(p)


def _one_file(path: Path, expected: str | None) -> Path:
    if path.is_dir():
        if expected is not None:
            for cand in (path / expected, path / expected.removesuffix(".gz")):
                if cand.is_file():
                    return cand
        raise DataSetError(path, f"is a directory; expected {expected or 'a data file'}")
    return path


def _files(path: Path, pattern: re.Pattern[str], what: str) -> list[Path]:
    if path.is_file():
        return [path]
    files = sorted(p for p in path.iterdir() if pattern.match(p.name)) if path.is_dir() else []
    if not files:
        raise DataSetError(path, f"no {what} files in it")
    return files


def describe_sets() -> Iterable[tuple[str, str, str, str]]:
    """(name, where it would be read from, licence, summary) for ``nemoguard eval --list``."""
    for name, named in NAMED_SETS.items():
        try:
            where = str(locate(name)) if name != "labels" else "--path"
        except DataSetError:
            where = f"not found (--path, or ${DATA_DIR_ENV}/{named.default_path})"
        yield name, where, named.licence, named.summary


__all__ = [
    "DATA_DIR_ENV",
    "NAMED_SETS",
    "LoaderOptions",
    "canonical_name",
    "describe_sets",
    "load_dataset",
    "locate",
    "polyguard_policy",
]

"""The named data sets: synthetic fixtures in their exact formats (CI), the packaged copies, and the real files.

The real files are read from ``$NEMOGUARD_DATA_DIR`` or the project's ``../shared/data`` when they are there (a
fresh clone may not have them: those tests skip); their counts are the ones ``SOURCES.md`` publishes.
"""

from __future__ import annotations

import gzip
import os
import shutil
from pathlib import Path

import pytest

from langchain_nemoguard.workbench.data import DataSetError
from langchain_nemoguard.workbench.datasets import (
    DATA_DIR_ENV,
    LoaderOptions,
    describe_sets,
    load_dataset,
    locate,
    polyguard_policy,
)

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures" / "workbench"
REAL = Path(os.environ.get(DATA_DIR_ENV) or REPO.parent / "shared" / "data")
needs_real = pytest.mark.skipif(
    not (REAL / "SOURCES.md").is_file(), reason=f"the public data sets are not in {REAL}"
)


# --- packaged: XSTest and the OpenAI moderation sample ---------------------------------------------------------


def test_xstest_is_packaged_and_pairs_each_safe_type_with_its_contrast(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    ds = load_dataset("xstest")
    assert "langchain_nemoguard/data" in ds.sources[0].replace("\\", "/")
    assert ds.counts() == {"examples": 450, "unsafe": 200, "safe": 250}
    homonyms = [e for e in ds.examples if e.categories == ("homonyms",)]
    assert {(e.subset, e.unsafe) for e in homonyms} == {("homonyms", False), ("contrast_homonyms", True)}
    discr = {e.subset for e in ds.examples if e.categories == ("discr",)}
    assert discr == {"nons_group_real_discr", "real_group_nons_discr", "contrast_discr"}
    assert all(e.unsafe == (e.subset or "").startswith("contrast_") for e in ds.examples)


def test_openai_moderation_unknown_labels_are_skipped_or_counted_safe(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    strict = load_dataset("openai-moderation")
    assert strict.counts() == {"examples": 859, "unsafe": 522, "safe": 337}
    assert strict.skipped == {"rows with only some labels, all 0 (unknown)": 821}
    common = load_dataset("openai", options=LoaderOptions(unknown_labels="safe"))
    assert common.counts() == {"examples": 1680, "unsafe": 522, "safe": 1158}
    first_unsafe = next(e for e in strict.examples if e.unsafe)
    assert first_unsafe.categories and set(first_unsafe.categories) <= {
        "sexual",
        "hate",
        "violence",
        "harassment",
        "self-harm",
        "sexual/minors",
        "hate/threatening",
        "violence/graphic",
    }


def test_list_shows_every_set_and_where_it_is(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path))
    rows = {name: where for name, where, _licence, _summary in describe_sets()}
    assert set(rows) >= {"xstest", "openai-moderation", "rtp-lx", "multijail", "mhc", "polyguard", "labels"}
    assert "not found" in rows["rtp-lx"] and "langchain_nemoguard" in rows["xstest"]


# --- resolution ---------------------------------------------------------------------------------------------------


def test_named_sets_are_found_under_the_data_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    shutil.copy(FIXTURES / "MultiJail.csv", tmp_path / "MultiJail.csv")
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path))
    assert locate("multijail") == tmp_path / "MultiJail.csv"
    assert len(load_dataset("multijail")) == 20
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path / "elsewhere"))
    with pytest.raises(DataSetError, match=r"pass --path, or set NEMOGUARD_DATA_DIR.*DAMO-NLP-SG"):
        load_dataset("multijail")
    with pytest.raises(DataSetError, match="no such file or folder"):
        load_dataset("rtp-lx", path=tmp_path / "missing")


def test_paths_are_recognised_by_name_and_layout() -> None:
    assert load_dataset(str(FIXTURES / "rtp-lx")).name == "rtp-lx"
    assert load_dataset(str(FIXTURES / "MultiJail.csv")).name == "multijail"
    assert load_dataset(str(FIXTURES / "multilingual_hatecheck")).name == "mhc"
    assert load_dataset(str(FIXTURES / "polyguard" / "hr" / "results" / "Acme")).name == "polyguard"
    assert (
        load_dataset(str(FIXTURES / "polyguard" / "cyber" / "data" / "phishing_full.json")).name
        == "polyguard-cyber"
    )


# --- RTP-LX ---------------------------------------------------------------------------------------------------------


def test_rtp_lx_thresholds_binarise_the_rater_scores() -> None:
    # fixture means: EN 5, 3, 1.33, 1.67, 1, 1 (medians 5, 3, 1, 2, 1, 1); DE 4, 1
    strict = load_dataset("rtp-lx", path=FIXTURES / "rtp-lx")
    assert strict.counts() == {"examples": 6, "unsafe": 3, "safe": 3}
    assert sum(strict.skipped.values()) == 2 and strict.options == {"label_rule": "strict"}
    lenient = load_dataset("rtp-lx", path=FIXTURES / "rtp-lx", options=LoaderOptions(label_rule="lenient"))
    assert lenient.counts() == {"examples": 8, "unsafe": 5, "safe": 3}
    majority = load_dataset("rtp-lx", path=FIXTURES / "rtp-lx", options=LoaderOptions(label_rule="majority"))
    assert majority.counts() == {"examples": 8, "unsafe": 4, "safe": 4}
    assert "mean Toxicity >= 3" in strict.notes[0]


def test_rtp_lx_reads_json_lines_with_a_line_separator_inside_a_prompt_and_gzip(tmp_path: Path) -> None:
    src = FIXTURES / "rtp-lx" / "RTP_LX_EN.json"
    (tmp_path / "RTP_LX_EN.json.gz").write_bytes(gzip.compress(src.read_bytes()))
    ds = load_dataset("rtp-lx", path=tmp_path, options=LoaderOptions(label_rule="lenient"))
    assert len(ds) == 6
    assert any("\u2028" in e.prompt for e in ds.examples)
    by_id = {e.id: e for e in ds.examples}
    assert by_id["en:1"].categories == ("Violence", "Insult") and by_id["en:1"].language == "en"


def test_rtp_lx_refuses_an_unknown_rule_and_a_row_without_scores(tmp_path: Path) -> None:
    with pytest.raises(DataSetError, match="label_rule"):
        load_dataset("rtp-lx", path=FIXTURES / "rtp-lx", options=LoaderOptions(label_rule="loose"))
    (tmp_path / "RTP_LX_FR.json").write_text('{"Prompt": "x", "Annotations": {}}\n')
    with pytest.raises(DataSetError) as info:
        load_dataset("rtp-lx", path=tmp_path)
    assert info.value.line == 1 and "Toxicity" in str(info.value)


# --- MultiJail, MHC -------------------------------------------------------------------------------------------------


def test_multijail_is_unsafe_only_per_language() -> None:
    ds = load_dataset("multijail", path=FIXTURES / "MultiJail.csv")
    assert ds.recall_only and all(e.unsafe for e in ds.examples)
    assert {e.language for e in ds.examples} == {"en", "zh", "it", "vi", "ar", "ko", "th", "bn", "sw", "jv"}
    first = next(e for e in ds.examples if e.id == "1:ko")
    assert first.categories == ("Theft", "Property crime & vandalism") and first.subset == "openai"
    assert not ds.examples[0].id.startswith("\ufeff")  # the BOM is not part of the first column name


def test_mhc_maps_hateful_to_unsafe_with_hints_per_functionality() -> None:
    ds = load_dataset("mhc", path=FIXTURES / "multilingual_hatecheck")
    assert ds.counts() == {"examples": 6, "unsafe": 3, "safe": 3}
    by_id = {e.id: e for e in ds.examples}
    assert by_id["german-2"].categories == ("hate", "threat") and by_id["german-2"].language == "de"
    assert by_id["spanish-1"].categories == ("hate", "profanity") and by_id["spanish-1"].language == "es"
    assert by_id["german-4"].subset == "profanity_nh" and not by_id["german-4"].unsafe
    kept = ds.select(skip_subsets=["profanity_nh"])
    assert "german-4" not in {e.id for e in kept.examples}


# --- PolyGuard ------------------------------------------------------------------------------------------------------


def test_polyguard_rules_become_a_custom_policy_named_after_the_organisation() -> None:
    ds = load_dataset("polyguard", path=FIXTURES / "polyguard")
    assert ds.counts() == {"examples": 4, "unsafe": 2, "safe": 2}
    policy = ds.policies["Acme"]
    assert policy.kind == "custom_policy"
    # only the numbered rules: the prose line before them is not a rule
    assert policy.disallowed == (
        "Sharing salary data of colleagues is prohibited.",
        "Promising jobs in exchange for gifts is prohibited.",
        "Recording meetings without consent is prohibited.",
    )
    assert {e.policy for e in ds.examples} == {"Acme"}
    assert {e.categories for e in ds.examples} == {("Pay Confidentiality",), ("Hiring Integrity",)}
    assert ds.examples[0].id == "Acme:safe:1" and {e.subset for e in ds.examples} == {"hr"}  # the domain


def test_polyguard_structured_rules_become_a_custom_taxonomy_and_none_the_builtin() -> None:
    org = FIXTURES / "polyguard" / "hr" / "results" / "Acme"
    tax = polyguard_policy(org, "structured")
    assert tax is not None and tax.kind == "custom_taxonomy"
    assert list(tax.taxonomy_view().names) == ["Pay Confidentiality", "Hiring Integrity"]
    ds = load_dataset("polyguard", path=org, options=LoaderOptions(polyguard_policy="none"))
    assert ds.policies == {} and {e.policy for e in ds.examples} == {None}


def test_polyguard_code_and_cyber_pairs_are_response_harm() -> None:
    code = load_dataset("polyguard-code", path=FIXTURES / "polyguard")
    assert [(e.unsafe, e.target, e.categories) for e in code.examples] == [
        (True, "response", ("Age",)),
        (False, "response", ("Age",)),
    ]
    cyber = load_dataset("polyguard-cyber", path=FIXTURES / "polyguard" / "cyber")
    assert [e.unsafe for e in cyber.examples] == [False, True, True]
    assert cyber.examples[2].categories == ("Reconnaissance",) and cyber.examples[0].response
    prompt_only = load_dataset(
        "polyguard-cyber", path=FIXTURES / "polyguard", options=LoaderOptions(target="prompt")
    )
    assert all(e.target == "prompt" and e.response is None for e in prompt_only.examples)


# --- the real files (skipped where they are not) --------------------------------------------------------------------


@needs_real
@pytest.mark.parametrize(
    ("name", "path", "options", "counts"),
    [
        ("xstest", "xstest_prompts.csv", {}, (450, 200)),
        ("rtp-lx", "rtp-lx", {}, (17414, 10348)),  # mean >= 3: 10,348; mean == 1: 7,066
        ("rtp-lx", "rtp-lx", {"label_rule": "lenient"}, (27049, 19983)),
        ("rtp-lx", "rtp-lx", {"label_rule": "majority"}, (27049, 17899)),
        ("multijail", "MultiJail.csv", {}, (3150, 3150)),
        ("mhc", "multilingual_hatecheck", {}, (36582, 25511)),
        ("polyguard", "polyguard", {}, (26844, 13426)),
        ("polyguard-code", "polyguard", {}, (1790, 895)),
        ("polyguard-cyber", "polyguard", {}, (8189, 4126)),
    ],
)
def test_real_files_give_the_published_counts(
    name: str, path: str, options: dict[str, str], counts: tuple[int, int]
) -> None:
    ds = load_dataset(name, path=REAL / path, options=LoaderOptions(**options))  # type: ignore[arg-type]
    assert (len(ds), ds.counts()["unsafe"]) == counts


@needs_real
def test_real_polyguard_policies_and_a_slice_per_locale() -> None:
    ds = load_dataset("polyguard", path=REAL / "polyguard")
    assert sorted(ds.policies) == ["CSU", "Google", "NVIDIA", "Reddit", "Twitter", "UNESCO"]
    nvidia = ds.policies["NVIDIA"]
    assert len(nvidia.disallowed) == 56 and not nvidia.disallowed[0].startswith("The provided document")
    assert {e.subset for e in ds.examples} == {"social_media", "education", "hr"}
    rtp = load_dataset("rtp-lx", path=REAL / "rtp-lx").select(languages=["zh-hans", "uk"], sample=50, seed=1)
    assert len(rtp) == 50 and {e.language for e in rtp.examples} <= {"zh-hans", "uk"}

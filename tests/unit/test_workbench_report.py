"""Run summaries, reports, plots, comparisons and the resumable results file, on hand-made result rows."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import pytest

from langchain_nemoguard.core.errors import ConfigurationError
from langchain_nemoguard.core.verdict import Verdict
from langchain_nemoguard.workbench.compare import compare
from langchain_nemoguard.workbench.compare import markdown as compare_markdown
from langchain_nemoguard.workbench.data import DataSetError, Example
from langchain_nemoguard.workbench.plots import PLOT_SIZE, compare_plot, run_plots
from langchain_nemoguard.workbench.report import SIMULATOR_BANNER, markdown, summarise
from langchain_nemoguard.workbench.results import (
    RESULTS_FILE,
    ResultsFile,
    content_sha256,
    read_results,
    result_row,
)

HEADER: dict[str, Any] = {
    "schema": "nemoguard.eval-run/1",
    "run_id": "r1",
    "dataset": "hand-made",
    "dataset_digest": "d" * 64,
    "model": "m",
    "mode": "categories",
    "policies": {"default": "f" * 32},
    "simulator": False,
    "think_audit": False,
    "target_override": None,
}


def row(i: int, label: str, verdict: str, **extra: Any) -> dict[str, Any]:
    base = {
        "schema": "nemoguard.eval/1",
        "id": f"rec{i}",
        "run_id": "r1",
        "example_id": f"e{i}",
        "label": label,
        "verdict": verdict,
        "latency_ms": float(i),
        "error": None if verdict != "error" else "timeout",
        "categories": ["Violence"] if verdict == "unsafe" else [],
        "truth_categories": [],
        "language": None,
        "subset": None,
        "policy": "default",
        "score": None,
    }
    base.update(extra)
    return base


def hand_rows() -> list[dict[str, Any]]:
    # en: TP TP FN FP TN TN; de: TP FN TN, and one timeout
    return [
        row(1, "unsafe", "unsafe", language="en", truth_categories=["hate"]),
        row(2, "unsafe", "unsafe", language="en", truth_categories=["hate"]),
        row(3, "unsafe", "safe", language="en", truth_categories=["violence"]),
        row(4, "safe", "unsafe", language="en"),
        row(5, "safe", "safe", language="en"),
        row(6, "safe", "safe", language="en"),
        row(7, "unsafe", "unsafe", language="de", truth_categories=["hate"]),
        row(8, "unsafe", "safe", language="de", truth_categories=["hate"]),
        row(9, "safe", "safe", language="de"),
        row(10, "safe", "error", language="de"),
    ]


def test_summary_by_hand() -> None:
    s = summarise(HEADER, hand_rows(), replicates=200, seed=0)
    o = s["overall"]
    assert (o["tp"], o["fp"], o["tn"], o["fn"], o["errors"], o["n"]) == (3, 1, 3, 2, 1, 10)
    assert o["recall"]["value"] == pytest.approx(3 / 5) and o["fpr"]["value"] == pytest.approx(1 / 4)
    assert o["f1"]["value"] == pytest.approx(6 / 9)
    lo, hi = o["recall"]["ci"]
    assert 0 <= lo <= 0.6 <= hi <= 1
    en, de = s["by"]["language"]["en"], s["by"]["language"]["de"]
    assert (en["tp"], en["fn"], en["fp"], de["tp"], de["fn"], de["errors"]) == (2, 1, 1, 1, 1, 1)
    hate = s["by"]["category"]["hate"]
    assert (hate["n"], hate["recall"]["value"], hate["fpr"]["value"]) == (4, 0.75, None)
    assert s["errors_by_reason"] == {"timeout": 1}
    assert s["latency_ms"]["p50"] == pytest.approx(5.0) and s["latency_ms"]["n"] == 9.0  # judged rows only
    assert s["predicted_categories"] == {"Violence": 4}
    assert s["scores"]["available"] is False
    # the same seed gives the same intervals
    assert summarise(HEADER, hand_rows(), replicates=200, seed=0)["by"] == s["by"]


def test_summary_with_scores_has_curves_and_a_threshold() -> None:
    scores = [0.9, 0.8, 0.7, 0.6, 0.55, 0.4]
    labels = ["unsafe", "unsafe", "safe", "unsafe", "safe", "safe"]
    rows = [
        row(i, lab, "unsafe" if sc >= 0.5 else "safe", score=sc)
        for i, (sc, lab) in enumerate(zip(scores, labels, strict=True))
    ]
    s = summarise(HEADER, rows, replicates=0, target_fpr=0.34)["scores"]
    assert s["available"] and s["roc_auc"] == pytest.approx(8 / 9)
    assert s["threshold"]["score_at_least"] == 0.6 and s["threshold"]["tpr"] == 1.0


def test_report_is_loud_about_the_simulator_and_recall_only_sets() -> None:
    rows = [row(1, "unsafe", "unsafe", simulator=True), row(2, "unsafe", "safe")]
    s = summarise({**HEADER, "recall_only": True}, rows, replicates=50, expected=3)
    text = markdown(s)
    assert s["simulator"] and SIMULATOR_BANNER in text.splitlines()[2]
    assert "only recall" in text and "false-positive rate" not in text
    assert "1 not run yet" in text  # expected 3, only 2 rows


def test_report_escapes_table_cells() -> None:
    s = summarise(
        HEADER,
        [row(1, "unsafe", "unsafe", subset="a|b\nc"), row(2, "safe", "safe", subset="x")],
        replicates=0,
    )
    assert "| a\\|b c |" in markdown(s)


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_plots_are_written_non_empty_and_of_the_documented_size(tmp_path: Path) -> None:
    rows = [
        *hand_rows(),
        *(row(20 + i, "unsafe" if i % 2 else "safe", "unsafe", score=i / 10) for i in range(10)),
    ]
    s = summarise(HEADER, rows, replicates=100)
    made = run_plots(s, [r["latency_ms"] for r in rows if r["verdict"] != "error"], tmp_path)
    names = sorted(p.name for p in made)
    assert names == [
        "confusion.png",
        "f1_by_category.png",
        "f1_by_language.png",
        "latency.png",
        "pr.png",
        "roc.png",
    ]
    for p in made:
        assert p.stat().st_size > 5000
        assert _png_size(p) == PLOT_SIZE


def test_compare_counts_changed_verdicts_and_tests_the_error_rate() -> None:
    a = [row(i, "unsafe", "unsafe") for i in range(1, 11)] + [
        row(11, "safe", "safe"),
        row(12, "safe", "unsafe"),
    ]
    b = [row(i, "unsafe", "safe" if i <= 7 else "unsafe") for i in range(1, 11)] + [
        row(11, "safe", "safe"),
        row(12, "safe", "safe"),
        row(99, "safe", "safe"),
    ]
    c = compare(HEADER, a, {**HEADER, "run_id": "r2", "mode": "think"}, b)
    assert c["common"] == 12 and c["b"]["only_here"] == 1
    assert c["right"] == {"both": 4, "a_only": 7, "b_only": 1, "neither": 0}
    assert (c["a"]["wrong"], c["b"]["wrong"]) == (1, 7)
    m = c["mcnemar"]
    # b=7, c=1: exact two-sided p = 2 * (1 + 8) / 256
    assert (m["method"], m["p_value"]) == ("exact", pytest.approx(18 / 256))
    assert len(c["changed"]) == 8 and c["transitions"]["unsafe->safe"] == 8
    text = compare_markdown(c)
    assert "p = 0.07031" in text and "no significant change" in text
    assert "| e12 | safe | unsafe (Violence) | safe | b |" in text


def test_compare_plot(tmp_path: Path) -> None:
    c = compare(HEADER, [row(1, "safe", "safe")], HEADER, [row(1, "safe", "unsafe", simulator=True)])
    assert c["simulator"]
    assert _png_size(compare_plot(c, tmp_path / "c.png")) == PLOT_SIZE


# --- the results file ------------------------------------------------------------------------------------------------


def test_result_rows_carry_the_audit_fields_and_the_truth() -> None:
    ex = Example("x1", "prompt", True, response="answer", target="response", categories=("S",), language="fr")
    v = Verdict(
        user_safe=True,
        response_safe=False,
        categories=("Violence",),
        safe=False,
        policy="p",
        mode="think",
        model="m",
        reasoning="because",
        score=0.9,
    )
    r = result_row(ex, v, run_id="r", policy_fingerprint="fp")
    assert (r["verdict"], r["label"], r["correct"], r["stage"]) == ("unsafe", "unsafe", True, "output")
    assert r["content_sha256"] == content_sha256("prompt", "answer")
    assert r["text"] == {"prompt": "prompt", "response": "answer"} and r["score"] == 0.9
    assert result_row(ex, v, run_id="r", policy_fingerprint="fp", store_text=False)["text"] is None
    err = result_row(ex, Verdict(user_safe=None, error=None), run_id="r", policy_fingerprint="fp")
    assert err["verdict"] == "error" and err["correct"] is None


def test_results_resume_after_a_torn_line_and_refuse_another_run(tmp_path: Path) -> None:
    path = tmp_path / RESULTS_FILE
    f = ResultsFile(path)
    assert f.open(HEADER) == {}
    f.write(row(1, "safe", "safe"))
    f.write(row(2, "safe", "unsafe"))
    f.close()
    with path.open("a") as fh:
        fh.write('{"schema": "nemoguard.eval/1", "example_id": "e3", "lab')  # killed mid-write
    header, rows = read_results(tmp_path)
    assert header is not None and header["run_id"] == "r1" and [r["example_id"] for r in rows] == ["e1", "e2"]
    f2 = ResultsFile(path)
    done = f2.open(HEADER)
    assert set(done) == {"e1", "e2"}
    f2.write(row(3, "safe", "safe"))
    f2.close()
    lines = path.read_text().splitlines()
    assert len(lines) == 4 and json.loads(lines[-1])["example_id"] == "e3"  # the torn line is gone
    with pytest.raises(ConfigurationError, match="mode differ"):
        ResultsFile(path).open({**HEADER, "mode": "think"})
    f3 = ResultsFile(path)
    assert f3.open({**HEADER, "mode": "think"}, overwrite=True) == {}
    f3.close()
    assert len(path.read_text().splitlines()) == 1


def test_read_results_refuses_what_is_not_a_results_file(tmp_path: Path) -> None:
    with pytest.raises(DataSetError, match="no results file"):
        read_results(tmp_path)
    (tmp_path / RESULTS_FILE).write_text('{"schema": "nemoguard.audit/1"}\n')
    with pytest.raises(DataSetError) as info:
        read_results(tmp_path)
    assert info.value.line == 1

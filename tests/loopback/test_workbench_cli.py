"""nemoguard eval / eval --compare / policy against the interface simulator: metrics by hand, resume, retries,
images, custom policies, THINK audits, typed data errors, and the side-by-side ``policy try``."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from langchain_nemoguard.cli.main import main
from langchain_nemoguard.core.policy import PolicySet
from langchain_nemoguard.simulator.server import SimulatorServer

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "workbench"

# id, text, label, the simulator's forced verdict for it
ROWS = [
    ("a1", "alpha one", "unsafe", "unsafe"),
    ("a2", "alpha two", "unsafe", "unsafe"),
    ("a3", "alpha three", "unsafe", "safe"),
    ("b1", "bravo one", "safe", "unsafe"),
    ("b2", "bravo two", "safe", "safe"),
    ("b3", "bravo three", "safe", "safe"),
    ("b4", "bravo four", "safe", "safe"),
    ("b5", "bravo five", "safe", "safe"),
]


def _dataset(tmp_path: Path, rows: list[tuple[str, str, str, str]] = ROWS) -> Path:
    p = tmp_path / "hand.csv"
    p.write_text(
        "id,text,label,language\n"
        + "".join(f"{i},{t},{lab},{'en' if i < 'b' else 'fr'}\n" for i, t, lab, _ in rows)
    )
    return p


def _force(sim: SimulatorServer, rows: list[tuple[str, str, str, str]] = ROWS, times: int = 1) -> None:
    for _, text, _, verdict in rows:
        outcome: dict[str, Any] = {"user": verdict}
        if verdict == "unsafe":
            outcome["categories"] = ["Violence"]
        for _ in range(times):
            sim.force(outcome, match=text)


def _eval(sim: SimulatorServer, *args: str) -> int:
    return main(["eval", *args, "--base-url", sim.base_url, "--bootstrap", "100"])


def _rows(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()[1:]]


def test_eval_metrics_report_plots_and_the_simulator_named_loudly(
    nemoguard_simulator: SimulatorServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _force(nemoguard_simulator)
    out = tmp_path / "run"
    # credentials in the URL must not end up in any output
    url = nemoguard_simulator.base_url.replace("http://", "http://user:s3cret@")
    rc = main(["eval", str(_dataset(tmp_path)), "--base-url", url, "--out", str(out), "--bootstrap", "100"])
    assert rc == 0
    summary = json.loads((out / "summary.json").read_text())
    o = summary["overall"]
    assert (o["tp"], o["fp"], o["tn"], o["fn"]) == (2, 1, 4, 1)
    assert o["recall"]["value"] == pytest.approx(2 / 3) and o["fpr"]["value"] == pytest.approx(1 / 5)
    assert set(summary["by"]["language"]) == {"en", "fr"}
    assert summary["simulator"] is True  # found by the response header, not by how the URL was given
    report = (out / "report.md").read_text()
    assert "INTERFACE SIMULATOR - NOT A SAFETY MODEL" in report.splitlines()[2]
    assert {"confusion.png", "latency.png"} <= {p.name for p in out.glob("*.png")}
    header = json.loads((out / "results.jsonl").read_text().splitlines()[0])
    assert header["endpoint"] == nemoguard_simulator.base_url and header["dataset_digest"]
    assert header["policies"] == {
        "default": PolicySet.from_data({"policies": {"default": {}}})["default"].fingerprint
    }
    for f in out.iterdir():
        if f.suffix in (".jsonl", ".json", ".md"):
            assert "s3cret" not in f.read_text()
    assert "s3cret" not in capsys.readouterr().out
    rows = _rows(out)
    assert {r["example_id"]: r["correct"] for r in rows}["a3"] is False
    assert all(r["text"]["prompt"] for r in rows) and all(
        r["simulator"] is False or r["simulator"] for r in rows
    )


def test_an_interrupted_run_resumes_where_it_stopped(
    nemoguard_simulator: SimulatorServer, tmp_path: Path
) -> None:
    data, out = _dataset(tmp_path), tmp_path / "run"
    _force(nemoguard_simulator)
    assert _eval(nemoguard_simulator, str(data), "--out", str(out), "--no-plots") == 0
    lines = (out / "results.jsonl").read_text().splitlines()
    kept = [json.loads(x)["example_id"] for x in lines[1:3]]
    # as if killed after two rows, in the middle of writing the third
    (out / "results.jsonl").write_text("\n".join(lines[:3]) + "\n" + lines[3][: len(lines[3]) // 2])
    nemoguard_simulator.reset()
    _force(nemoguard_simulator)
    assert _eval(nemoguard_simulator, str(data), "--out", str(out), "--no-plots") == 0
    sent = [r["messages"][0]["content"] for r in nemoguard_simulator.requests()]
    assert len(sent) == 6 and not {t for i, t, _, _ in ROWS if i in kept} & set(sent)
    rows = _rows(out)
    assert sorted(r["example_id"] for r in rows) == sorted(i for i, *_ in ROWS)
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["overall"]["tp"], summary["overall"]["fp"]) == (2, 1) and summary["missing"] == 0
    # a different mode is a different run: refused, not mixed in
    assert (
        main(
            [
                "eval",
                str(data),
                "--out",
                str(out),
                "--base-url",
                nemoguard_simulator.base_url,
                "--mode",
                "fast",
            ]
        )
        == 2
    )


def test_errors_are_counted_by_reason_and_retried_on_request(
    nemoguard_simulator: SimulatorServer, tmp_path: Path
) -> None:
    rows = ROWS[:3]
    data, out = _dataset(tmp_path, rows), tmp_path / "run"
    _force(nemoguard_simulator, rows[:2])
    for _ in range(3):  # the first try and two retries
        nemoguard_simulator.force({"fault": "500"}, match="alpha three")
    assert (
        _eval(nemoguard_simulator, str(data), "--out", str(out), "--no-plots") == 3
    )  # not every example judged: "no verdict", as `nemoguard check` says it
    summary = json.loads((out / "summary.json").read_text())
    assert summary["errors_by_reason"] == {"http_status": 1} and summary["overall"]["errors"] == 1
    assert "## Errors by reason" in (out / "report.md").read_text()
    _force(nemoguard_simulator, rows[2:])
    assert _eval(nemoguard_simulator, str(data), "--out", str(out), "--no-plots", "--retry-errors") == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["errors_by_reason"] == {} and summary["overall"]["fn"] == 1


def test_compare_two_runs(
    nemoguard_simulator: SimulatorServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = _dataset(tmp_path)
    _force(nemoguard_simulator)
    assert _eval(nemoguard_simulator, str(data), "--out", str(tmp_path / "a"), "--no-plots") == 0
    better = [(i, t, lab, lab) for i, t, lab, _ in ROWS]  # B gets every verdict right
    _force(nemoguard_simulator, better)
    assert _eval(nemoguard_simulator, str(data), "--out", str(tmp_path / "b"), "--no-plots") == 0
    capsys.readouterr()
    assert (
        main(["eval", "--compare", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "cmp")])
        == 0
    )
    text = capsys.readouterr().out
    assert "right in A only: 0; right in B only: 2" in text and "exact binomial" in text and "p = 0.5" in text
    assert "| a3 | unsafe | safe | unsafe (Violence) | b |" in text
    result = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    assert result["mcnemar"]["b"] == 0 and result["mcnemar"]["c"] == 2 and len(result["changed"]) == 2
    assert (tmp_path / "cmp" / "compare.png").stat().st_size > 5000


def test_image_rows_send_the_image(nemoguard_simulator: SimulatorServer, tmp_path: Path) -> None:
    Image.new("RGB", (32, 32), (255, 0, 0)).save(tmp_path / "red.png")  # the simulator's "violent" image
    Image.new("RGB", (32, 32), (255, 255, 255)).save(tmp_path / "white.png")
    data = tmp_path / "images.jsonl"
    data.write_text(
        json.dumps({"id": "r", "prompt": "what is in this picture?", "image": "red.png", "label": "unsafe"})
        + "\n"
        + json.dumps({"id": "w", "prompt": "and in this one?", "image": "white.png", "label": "safe"})
        + "\n"
    )
    assert _eval(nemoguard_simulator, str(data), "--out", str(tmp_path / "run"), "--no-plots") == 0
    by_id = {r["example_id"]: r for r in _rows(tmp_path / "run")}
    assert (by_id["r"]["verdict"], by_id["r"]["categories"], by_id["r"]["images"]) == (
        "unsafe",
        ["Violence"],
        1,
    )
    assert by_id["w"]["verdict"] == "safe"
    parts = [r["messages"][0]["content"] for r in nemoguard_simulator.requests()]
    assert all(isinstance(p, list) and p[0]["type"] == "image_url" for p in parts)


def test_custom_policy_sets_send_the_organisation_rules(
    nemoguard_simulator: SimulatorServer, tmp_path: Path
) -> None:
    out = tmp_path / "pg"
    rc = _eval(
        nemoguard_simulator,
        "polyguard",
        "--path",
        str(FIXTURES / "polyguard"),
        "--out",
        str(out),
        "--no-plots",
    )
    assert rc == 0
    kwargs = [r["chat_template_kwargs"] for r in nemoguard_simulator.requests()]
    assert len(kwargs) == 4 and all(
        "Sharing salary data of colleagues is prohibited." in k["custom_policy"] for k in kwargs
    )
    rows = _rows(out)
    assert {r["policy"] for r in rows} == {"Acme"}
    header = json.loads((out / "results.jsonl").read_text().splitlines()[0])
    assert set(header["policies"]) == {"Acme"} and header["options"] == {"polyguard_policy": "rules"}


def test_think_audit_records_fast_versus_think_disagreement(
    nemoguard_simulator: SimulatorServer, tmp_path: Path
) -> None:
    rows = [("x1", "xray one", "unsafe", "unsafe"), ("x2", "xray two", "safe", "safe")]
    data, out = _dataset(tmp_path, rows), tmp_path / "run"
    nemoguard_simulator.force(
        {"user": "unsafe", "categories": ["Violence"]}, {"user": "safe"}, match="xray one"
    )
    nemoguard_simulator.force({"user": "safe"}, {"user": "safe"}, match="xray two")
    assert _eval(nemoguard_simulator, str(data), "--out", str(out), "--no-plots", "--think-audit") == 0
    by_id = {r["example_id"]: r for r in _rows(out)}
    assert by_id["x1"]["think"]["disagrees"] is True and by_id["x1"]["think"]["verdict"] == "safe"
    assert by_id["x2"]["think"]["disagrees"] is False
    assert json.loads((out / "summary.json").read_text())["think"] == {"n": 2, "disagreements": 1}
    modes = [r["chat_template_kwargs"]["enable_thinking"] for r in nemoguard_simulator.requests()]
    assert sorted(modes) == [False, False, True, True]


def test_bad_data_is_a_usage_error_naming_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "a", "label": "safe"}\n{"text": \n')
    assert main(["eval", str(bad), "--simulator", "--out", str(tmp_path / "o")]) == 2
    assert f"{bad}:2: invalid JSON" in capsys.readouterr().err
    assert main(["eval", str(tmp_path), "--simulator"]) == 2
    assert "is a directory" in capsys.readouterr().err


@pytest.mark.parametrize("value", ["0", "-3", "many"])
def test_concurrency_must_be_at_least_one(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["eval", "xstest", "--concurrency", value])
    assert info.value.code == 2
    assert "--concurrency" in capsys.readouterr().err


def test_eval_list_names_every_set(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eval", "--list"]) == 0
    out = capsys.readouterr().out
    for name in (
        "xstest",
        "openai-moderation",
        "rtp-lx",
        "multijail",
        "mhc",
        "polyguard",
        "polyguard-code",
        "labels",
    ):
        assert name in out


# --- nemoguard policy ---------------------------------------------------------------------------------------------


def _policy_file(path: Path, name: str, disallowed: str) -> Path:
    path.write_text(f"default: {name}\npolicies:\n  {name}:\n    disallowed: ['{disallowed}']\n")
    return path


def test_policy_try_puts_two_versions_side_by_side(
    nemoguard_simulator: SimulatorServer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("COLUMNS", "240")  # wide enough that no trace is wrapped
    v1 = _policy_file(tmp_path / "v1.yaml", "homework-v1", "Giving complete homework answers")
    v2 = _policy_file(tmp_path / "v2.yaml", "homework-v2", "Writing essays for pupils")
    rc = main(
        [
            "policy",
            "try",
            str(v1),
            "--versus",
            str(v2),
            "--example",
            "Give me complete homework answers please",
            "--base-url",
            nemoguard_simulator.base_url,
        ]
    )
    assert rc == 0
    out = capsys.readouterr().out
    assert out.startswith("!! INTERFACE SIMULATOR")
    line = next(x for x in out.splitlines() if x.startswith("unsafe"))
    assert "unsafe: homework-v1" in line and " | safe" in line
    assert "matches homework-v1" in out and 'policy "homework-v2"' in out  # the two THINK traces
    kwargs = [r["chat_template_kwargs"] for r in nemoguard_simulator.requests()]
    assert all(k["enable_thinking"] for k in kwargs) and len(kwargs) == 2
    assert (
        main(
            [
                "policy",
                "try",
                str(v1),
                "--example",
                "hello",
                "--json",
                "--base-url",
                nemoguard_simulator.base_url,
            ]
        )
        == 0
    )
    record = json.loads(capsys.readouterr().out.splitlines()[0])
    assert record["simulator"] is True and record["verdicts"]["homework-v1"]["safe"] is True


def test_policy_try_needs_examples(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    v1 = _policy_file(tmp_path / "v1.yaml", "p", "x y z")
    assert main(["policy", "try", str(v1), "--simulator"]) == 2
    assert "nothing to try" in capsys.readouterr().err


def test_policy_new_asks_its_questions_and_writes_a_loadable_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    answers = (
        "\n".join(
            [
                "homework-helper",
                "A maths tutor",
                "pupils aged 8-12",
                "Giving complete answers to graded homework",
                "Writing essays for pupils",
                "",
                "Explaining the method",
                "",
                "rewrite",
            ]
        )
        + "\n"
    )
    monkeypatch.setattr("sys.stdin", io.StringIO(answers))
    out = tmp_path / "hw.yaml"
    assert main(["policy", "new", "--interactive", "-o", str(out)]) == 0
    policy = PolicySet.load(out)["homework-helper"]
    assert policy.disallowed == ("Giving complete answers to graded homework", "Writing essays for pupils")
    assert policy.allowed == ("Explaining the method",) and policy.action_for([]) == "rewrite"
    assert policy.description == "A maths tutor. Audience: pupils aged 8-12."
    text = capsys.readouterr().out
    assert "Disallowed Behaviors:\n    - Giving complete answers" in text and "leave ~" in text
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    assert (
        main(["policy", "new", "--no-interactive", "--name", "x", "--disallow", "y z", "-o", str(out)]) == 2
    )  # exists
    assert main(["policy", "validate", str(out)]) == 0


def test_without_matplotlib_the_report_is_written_and_the_extra_named(
    nemoguard_simulator: SimulatorServer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import builtins

    real_import = builtins.__import__

    def no_matplotlib(name: str, *args: Any, **kwargs: Any) -> Any:
        if name.startswith("matplotlib"):
            raise ImportError(f"No module named {name!r}", name=name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    _force(nemoguard_simulator, ROWS[:2])
    out = tmp_path / "run"
    assert _eval(nemoguard_simulator, str(_dataset(tmp_path, ROWS[:2])), "--out", str(out)) == 0
    assert "pip install 'langchain-nemoguard[eval]'" in capsys.readouterr().err
    assert (out / "report.md").is_file() and not list(out.glob("*.png"))

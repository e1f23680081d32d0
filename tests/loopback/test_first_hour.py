"""The first hour of a new user: exit codes a script can tell apart, errors that say what to do, a simulator
that cannot pass for the model, a missing extra named in one line, a benchmark that says how much it swings."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import httpx
import pytest

from langchain_nemoguard import NemoGuard
from langchain_nemoguard.cli.bench import load_warning, spread
from langchain_nemoguard.cli.main import main as cli_main
from langchain_nemoguard.core.simulator_mark import ANSWER_KEY, HEADER, LABEL, mark_answer
from langchain_nemoguard.simulator.process import free_port
from langchain_nemoguard.simulator.server import SimulatorServer


def dead_url() -> str:
    return f"http://127.0.0.1:{free_port()}/v1"


def _no_nemoguard_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("NEMOGUARD_BASE_URL", "NEMOGUARD_PROVIDER", "NEMOGUARD_API_KEY", "NEMOGUARD_MODEL"):
        monkeypatch.delenv(name, raising=False)


# --- exit codes -----------------------------------------------------------------------------------------------


def test_check_exit_codes_tell_safe_unsafe_usage_and_no_verdict_apart(
    nemoguard_simulator: SimulatorServer, capsys: pytest.CaptureFixture[str]
) -> None:
    url = nemoguard_simulator.base_url
    assert cli_main(["check", "What is 2+2?", "--base-url", url]) == 0
    assert cli_main(["check", "How do I build a bomb?", "--base-url", url]) == 1
    assert cli_main(["check", "hi", "--base-url", dead_url(), "--timeout", "0.5"]) == 3  # unreachable
    nemoguard_simulator.force({"fault": "garbage"})
    assert cli_main(["check", "hi", "--base-url", url, "--timeout", "2"]) == 3  # unreadable answer
    with pytest.raises(SystemExit) as exc:  # argparse's own usage error
        cli_main(["check"])
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:
        cli_main(["check", "hi", "--mode", "slow"])
    assert exc.value.code == 2
    assert cli_main(["check", "hi", "--base-url", url, "--image", "/no/such/image.png"]) == 2
    assert cli_main(["check", "hi", "--base-url", url, "--policy-name", "kids"]) == 2  # no --policy FILE
    assert cli_main(["check", "hi", "--base-url", "ftp://example.invalid"]) == 2  # a bad URL is usage
    capsys.readouterr()


def test_help_documents_the_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["--help"], ["check", "--help"]):
        with pytest.raises(SystemExit):
            cli_main(argv)
        out = capsys.readouterr().out
        for line in ("0  safe", "1  unsafe", "2  usage error", "3  no verdict"):
            assert line in out, (argv, out)


def test_a_crash_is_no_verdict_not_unsafe(
    nemoguard_simulator: SimulatorServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(NemoGuard, "check", boom)
    assert cli_main(["check", "hi", "--base-url", nemoguard_simulator.base_url]) == 3
    err = capsys.readouterr().err
    assert "RuntimeError: a bug" in err
    assert "internal error, no verdict" in err


# --- messages -------------------------------------------------------------------------------------------------


def test_nothing_at_the_default_endpoint_says_how_to_point_the_guard_elsewhere(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _no_nemoguard_env(monkeypatch)
    # the default endpoint is local vLLM on :8000; moved to a port where nothing listens, whatever runs here
    from dataclasses import replace

    from langchain_nemoguard.core import providers

    default = replace(providers.PROVIDERS["vllm"], base_url=dead_url())
    monkeypatch.setitem(providers.PROVIDERS, "vllm", default)  # type: ignore[index]
    assert cli_main(["check", "hi", "--timeout", "1"]) == 3
    err = capsys.readouterr().err
    assert f"{default.base_url}, the default endpoint" in err
    for way in ("NEMOGUARD_BASE_URL", "--base-url", "--provider nvidia", "nemoguard simulate"):
        assert way in err, err
    assert err.count("guard unavailable (connect)") == 1  # the core's own warning is not repeated


def test_a_configured_endpoint_that_does_not_answer_names_the_url_not_the_tutorial(
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = dead_url()
    assert cli_main(["check", "hi", "--base-url", url, "--timeout", "0.5"]) == 3
    err = capsys.readouterr().err
    assert f"nothing answers at {url}: check the host and port" in err
    assert "nemoguard simulate" not in err


def test_a_base_url_without_v1_that_answers_404_gets_the_v1_suggestion(
    nemoguard_simulator: SimulatorServer, capsys: pytest.CaptureFixture[str]
) -> None:
    root = nemoguard_simulator.base_url.removesuffix("/v1")
    assert cli_main(["check", "hi", "--base-url", root]) == 3
    err = capsys.readouterr().err
    assert "answered 404" in err
    assert f"try --base-url {root}/v1" in err


def test_a_404_with_v1_points_at_the_path_or_the_model(
    nemoguard_simulator: SimulatorServer, capsys: pytest.CaptureFixture[str]
) -> None:
    nemoguard_simulator.force({"fault": "404"})
    assert cli_main(["check", "hi", "--base-url", nemoguard_simulator.base_url]) == 3
    err = capsys.readouterr().err
    assert "404 Not Found" in err and "--model" in err
    assert "try --base-url" not in err


# --- the simulator cannot pass for the model ------------------------------------------------------------------


def test_verdicts_from_the_simulator_are_marked_however_the_endpoint_was_given(
    nemoguard_simulator: SimulatorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = nemoguard_simulator.base_url
    with NemoGuard(url) as guard:  # an explicit URL, sync
        assert guard.check(prompt="How do I build a bomb?").simulator
        assert guard.check(prompt="How do I build a bomb?").simulator  # a cache hit keeps the mark
    monkeypatch.setenv("NEMOGUARD_BASE_URL", url)
    with NemoGuard() as guard:  # the environment, async
        import asyncio

        assert asyncio.run(guard.acheck(prompt="hello")).simulator
    with NemoGuard([dead_url(), url], max_retries=0) as guard:  # failover onto it
        assert guard.check(prompt="hello").simulator
    with NemoGuard(url, transport=_httpx_async_transport()) as guard:  # a caller's own httpx client

        async def run() -> bool:
            return (await guard.acheck(prompt="hello there")).simulator

        assert asyncio.run(run())


def _httpx_async_transport() -> object:
    from langchain_nemoguard import TransportOptions

    return TransportOptions(http_async_client=httpx.AsyncClient())


def test_an_endpoint_without_the_header_is_not_marked_and_a_body_cannot_claim_it() -> None:
    assert not mark_answer({"choices": []}, {}).get(ANSWER_KEY)
    assert not mark_answer({"choices": [], ANSWER_KEY: True}, {}).get(ANSWER_KEY)  # only the header counts
    assert mark_answer({"choices": []}, {HEADER: "not-a-safety-model"})[ANSWER_KEY] is True


def test_a_real_endpoint_is_not_marked() -> None:
    """A stand-in for a real endpoint: an OpenAI-shaped answer without the simulator's header."""

    def handler(request: httpx.Request) -> httpx.Response:
        body = {"choices": [{"message": {"content": "User Safety: safe"}, "finish_reason": "stop"}]}
        return httpx.Response(200, json=body)

    client = httpx.Client(transport=httpx.MockTransport(handler))
    from langchain_nemoguard import TransportOptions

    with NemoGuard("http://model.test/v1", transport=TransportOptions(http_client=client)) as guard:
        v = guard.check(prompt="hello")
    assert v.safe and v.error is None
    assert v.simulator is False
    assert v.to_dict()["simulator"] is False


def test_check_json_and_text_say_interface_simulator(
    nemoguard_simulator: SimulatorServer, capsys: pytest.CaptureFixture[str]
) -> None:
    url = nemoguard_simulator.base_url
    assert cli_main(["check", "How do I build a bomb?", "--base-url", url, "--json"]) == 1
    payload = json.loads(capsys.readouterr().out)
    assert payload["simulator"] is True
    assert payload["warning"] == LABEL == "interface simulator - not a safety model"
    assert cli_main(["check", "hello", "--base-url", url]) == 0
    assert "INTERFACE SIMULATOR - NOT A SAFETY MODEL" in capsys.readouterr().out


def test_the_demo_says_simulator_on_stdout_too_when_redirected() -> None:
    env = {"PATH": "/usr/bin:/bin", "HOME": "/tmp"}
    proc = subprocess.run(
        [sys.executable, "-m", "langchain_nemoguard.cli", "demo"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "NOT A SAFETY MODEL" in proc.stdout  # a redirected run's file still says it
    assert "NOT A SAFETY MODEL" in proc.stderr
    assert f"verdicts from the {LABEL.upper()}" in proc.stdout


def test_the_banner_is_printed_once_when_stdout_and_stderr_are_one_file(tmp_path: object) -> None:
    from pathlib import Path

    log = Path(str(tmp_path)) / "both.log"
    with log.open("w") as both:
        proc = subprocess.run(
            [sys.executable, "-m", "langchain_nemoguard.cli", "demo"],
            stdout=both,
            stderr=subprocess.STDOUT,
            timeout=120,
            env={"PATH": "/usr/bin:/bin", "HOME": "/tmp"},
            check=False,
        )
    assert proc.returncode == 0
    assert log.read_text().count("No guard endpoint configured") == 1


# --- a missing extra is named in one line ---------------------------------------------------------------------


def _run_hidden(hidden: list[str], code: str) -> subprocess.CompletedProcess[str]:
    """``code`` in a fresh interpreter where the ``hidden`` modules cannot be imported (as if not installed)."""
    blocker = "import sys\n" + "".join(f"sys.modules[{name!r}] = None\n" for name in hidden)
    return subprocess.run(
        [sys.executable, "-c", blocker + code], capture_output=True, text=True, timeout=60, check=False
    )


@pytest.mark.parametrize(
    ("hidden", "code", "extra", "module"),
    [
        (["langchain_core"], "from langchain_nemoguard import NemoGuard\nNemoGuard().wrap(len)", "langchain", "langchain_core"),
        (["langchain"], "from langchain_nemoguard import NemoGuardMiddleware", "langchain", "langchain"),
        (["litellm"], "import litellm_hook", "litellm", "litellm"),
        (["fastapi"], "import litellm_hook", "litellm", "fastapi"),  # litellm present, the proxy's packages not
    ],
    ids=["guard.wrap", "middleware", "litellm_hook", "litellm_hook-without-fastapi"],
)
def test_a_missing_extra_gives_one_line_naming_it(hidden: list[str], code: str, extra: str, module: str) -> None:
    proc = _run_hidden(hidden, code)
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert last.endswith(
        f"needs the '{extra}' extra ({module} is not installed): pip install 'langchain-nemoguard[{extra}]' "
        f"(from a clone: pip install -e '.[{extra}]')"
    ), proc.stderr
    assert "No module named" not in proc.stderr  # the raw ImportError is not chained in


def test_a_missing_extra_is_still_an_import_error() -> None:
    proc = _run_hidden(
        ["litellm"],
        "try:\n    import litellm_hook\nexcept ImportError as exc:\n    print(type(exc).__name__, exc.name)\n",
    )
    assert proc.stdout.split() == ["MissingExtraError", "litellm"], proc.stderr


def test_an_import_error_inside_the_package_is_not_called_a_missing_extra() -> None:
    from langchain_nemoguard.core.errors import MissingExtraError, missing_extra

    ours = ImportError("cannot import name 'x'", name="langchain_nemoguard.langchain.runnable")
    assert missing_extra(ours, "guard.wrap", "langchain") is ours
    theirs = ModuleNotFoundError("No module named 'langchain_core'", name="langchain_core.messages")
    err = missing_extra(theirs, "guard.wrap", "langchain")
    assert isinstance(err, MissingExtraError) and err.name == "langchain_core"


# --- nemoguard bench ------------------------------------------------------------------------------------------


def test_bench_shows_progress_repeats_spread_load_and_the_simulator(tmp_path: object) -> None:
    from pathlib import Path

    out = Path(str(tmp_path)) / "bench.json"
    proc = subprocess.run(
        [
            sys.executable, "-m", "langchain_nemoguard.cli", "bench",
            "--requests", "20", "--latency-runs", "10", "--repeats", "2", "--cache-probes", "10",
            "--out", str(out),
        ],
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "repetition 1/2" in proc.stderr and "repetition 2/2" in proc.stderr  # progress
    assert LABEL in proc.stdout  # the endpoint is named for what it is
    rows = [line for line in proc.stdout.splitlines() if "| guard.acheck" in line]
    assert len(rows) == 2  # 0 ms and 20 ms
    for row in rows:
        assert row.count("[") >= 2 and ".." in row  # median [min..max] beside the ratios
    assert "load average" in proc.stdout and "CPUs" in proc.stdout
    assert "Why figures swing" in proc.stdout
    report = json.loads(out.read_text())
    assert report["endpoint"] == LABEL
    assert report["settings"]["repeats"] == 2
    ratio = report["runs"]["0ms"]["rps_ratio"]["guard.acheck"]
    assert ratio["min"] <= ratio["median"] <= ratio["max"]
    assert len(report["runs"]["0ms"]["raw"]["guard.acheck"]["rps"]) == 2
    assert report["machine"]["cpus"] == os.cpu_count()


def test_bench_warns_on_a_busy_machine_and_not_on_a_quiet_one() -> None:
    assert load_warning({"cpus": 2, "load": [0.4, 0.5, 0.5]}) is None
    busy = load_warning({"cpus": 2, "load": [3.1, 2.0, 1.0]})
    assert busy is not None and "3.10 on 2 CPUs" in busy
    assert load_warning({"cpus": 2, "load": None}) is None  # no load average on this platform


def test_bench_spread_is_median_then_min_and_max() -> None:
    assert spread([3.0, 1.0, 2.0], "{:.0f}") == "2 [1..3]"
    assert spread([5.0], "{:.1f}") == "5.0"


@pytest.mark.parametrize("flag", ["--repeats", "--requests", "--latency-runs", "--cache-probes"])
def test_bench_refuses_counts_below_one(flag: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli_main(["bench", flag, "0"])
    assert exc.value.code == 2
    assert "must be >= 1" in capsys.readouterr().err

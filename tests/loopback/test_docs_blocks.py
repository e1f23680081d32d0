"""Every code block in README.md, docs/ and server/ runs as written, or is marked as a fragment or a skip.

The rules are in ``docs_blocks.py`` beside this file and in CONTRIBUTING.md; a new block is picked up without
touching this test. Python blocks get the endpoint the way the docs tell users to give it,
``NEMOGUARD_BASE_URL``, here pointing at the interface simulator.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from docs_blocks import REPO, Block, DocsBlockError, all_blocks, blocks_in

from langchain_nemoguard.simulator.server import SimulatorServer

BLOCKS = all_blocks()
TIMEOUT = 120


def _cases() -> list[object]:
    cases: list[object] = []
    for block in BLOCKS:
        if block.status == "skipped":
            cases.append(pytest.param(block, id=block.id, marks=pytest.mark.skip(reason=f"{block.id}: {block.reason}")))
        elif block.status in ("runs", "parsed"):
            cases.append(pytest.param(block, id=block.id))
    return cases


def _env(simulator: SimulatorServer) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEMOGUARD_")}
    env["NEMOGUARD_BASE_URL"] = simulator.base_url
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _explain(block: Block, proc: subprocess.CompletedProcess[str]) -> str:
    return (
        f"{block.id} ({block.lang}) failed with exit {proc.returncode}\n--- block ---\n{block.code}"
        f"--- stdout ---\n{proc.stdout[-3000:]}\n--- stderr ---\n{proc.stderr[-3000:]}"
    )


@pytest.mark.parametrize("block", _cases())
def test_docs_block_runs_as_written(
    block: Block, nemoguard_simulator: SimulatorServer, tmp_path: Path
) -> None:
    if block.kind == "data":
        if block.lang == "json":
            json.loads(block.code)
        else:
            list(yaml.safe_load_all(block.code))
        return
    env = _env(nemoguard_simulator)
    if block.kind == "shell":
        cmd, cwd = ["bash", "-euo", "pipefail", "-c", block.code], REPO
    else:
        script = tmp_path / ("test_block.py" if block.kind == "pytest" else "block.py")
        script.write_text(block.code, encoding="utf-8")
        if block.kind == "pytest":  # a user's own test file: the plugin's fixture, no project config
            cmd, cwd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(script)], tmp_path
        else:
            cmd, cwd = [sys.executable, "-W", "default::ResourceWarning", str(script)], REPO
    proc = subprocess.run(
        cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=TIMEOUT, check=False
    )
    assert proc.returncode == 0, _explain(block, proc)
    for leak in ("Unclosed client session", "Unclosed connector", "ResourceWarning"):
        assert leak not in proc.stderr, _explain(block, proc)


def test_every_doc_is_collected_and_every_block_is_accounted_for() -> None:
    files = {b.path.as_posix() for b in BLOCKS}
    assert {"README.md", "docs/langchain.md", "docs/litellm.md", "server/README.md"} <= files
    python = [b for b in BLOCKS if b.kind in ("python", "pytest")]
    assert python, "no Python blocks found: the collector is broken"
    # most Python blocks must really run; a doc made only of fragments tests nothing
    assert sum(b.status == "runs" for b in python) >= len(python) // 2
    assert all(b.reason for b in BLOCKS if b.status == "skipped")


def test_markers_that_mark_nothing_or_lack_a_reason_are_errors(tmp_path: Path) -> None:
    doc = tmp_path / "doc.md"
    doc.write_text("<!-- fragment -->\n```python\nf(x)\n```\n\n<!-- skip: needs a GPU -->\n```bash\nnvidia-smi\n```\n")
    fragment, skipped = blocks_in(doc, tmp_path)
    assert (fragment.status, fragment.code) == ("fragment", "f(x)\n")
    assert (skipped.status, skipped.reason) == ("skipped", "needs a GPU")
    for text, message in [
        ("<!-- skip -->\n```bash\nls\n```\n", "needs a reason"),
        ("<!-- fragment -->\nsome prose\n```python\nx\n```\n", "not followed by a code block"),
        ("<!-- fragmnt -->\n```python\nx\n```\n", None),  # an unrelated comment: the block runs
        ("<!-- skip: GPU -->\n", "not followed by a code block"),
        ("```python\nx = 1\n", "never closed"),
    ]:
        doc.write_text(text)
        if message is None:
            assert [b.status for b in blocks_in(doc, tmp_path)] == ["runs"]
        else:
            with pytest.raises(DocsBlockError, match=message):
                list(blocks_in(doc, tmp_path))


def test_indented_blocks_lose_their_indentation(tmp_path: Path) -> None:
    doc = tmp_path / "doc.md"
    doc.write_text("- a list item:\n\n  ```python\n  if True:\n      x = 1\n  ```\n")
    (block,) = blocks_in(doc, tmp_path)
    assert block.code == "if True:\n    x = 1\n"
    compile(block.code, "block", "exec")

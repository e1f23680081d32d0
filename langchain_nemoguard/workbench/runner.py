"""Judging a data set: concurrent checks through one guard, one results row per example as it completes.

Examples already in the results file are not judged again (resume); ``retry_errors`` judges again those whose
row is an error. A check the guard refuses as given (an image that does not decode) becomes an error row with
reason ``invalid_input``, never a crash of the run; anything else that raises stops the run, with every row
written so far kept for the resume.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tqdm import tqdm

from ..core.errors import ConfigurationError, InvalidInputError
from ..core.guard import NemoGuard
from ..core.policy import Policy
from .data import DataSet, Example
from .results import ResultsFile, error_row, result_row


@dataclass(frozen=True, slots=True)
class RunSettings:
    """How a data set is run.

    Args:
        concurrency: Checks in flight at once (>= 1).
        think_audit: Also judge each example in THINK mode and record it (the review page's fast-vs-THINK
            disagreement filter); doubles the calls.
        store_text: Keep the example's text in each row (the review page shows it; re-labelling needs it).
        retry_errors: Judge again the examples whose stored row is an error.
        progress: Show a progress bar (None: when stderr is a terminal).
    """

    concurrency: int = 16
    think_audit: bool = False
    store_text: bool = True
    retry_errors: bool = False
    progress: bool | None = None

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise ConfigurationError(f"concurrency must be >= 1, got {self.concurrency}")


def resolve_policies(guard: NemoGuard, dataset: DataSet) -> dict[str | None, Policy]:
    """The policy for each policy name the examples use.

    A policy in the guard's own set (``--policy FILE``) wins over one that comes with the data, so an edited
    copy of a data set's policy can be evaluated under the same name; None is the guard's default, and
    ``"default"`` (the built-in policy's name, which audit records carry) is the built-in policy unless the
    guard's set defines it.

    Raises:
        ConfigurationError: An example names a policy that neither defines.
    """
    out: dict[str | None, Policy] = {}
    for name in sorted({ex.policy for ex in dataset.examples}, key=lambda n: (n is not None, n or "")):
        if name is None:
            out[None] = guard.policy
        elif guard.policies is not None and name in guard.policies:
            out[name] = guard.policies[name]
        elif name in dataset.policies:
            out[name] = dataset.policies[name]
        elif name == guard.policy.name:
            out[name] = guard.policy
        elif name == Policy().name:  # records judged under the built-in taxonomy carry its name, "default"
            out[name] = Policy()
        else:
            raise ConfigurationError(
                f"examples of {dataset.name} name policy {name!r}, which neither the data set nor --policy FILE "
                "defines"
            )
    return out


def policy_fingerprints(policies: Mapping[str | None, Policy]) -> dict[str, str]:
    """``{policy name: fingerprint}`` (what a run header records)."""
    return {p.name: p.fingerprint for p in policies.values()}


async def run_dataset(
    guard: NemoGuard,
    dataset: DataSet,
    results: ResultsFile,
    header: Mapping[str, Any],
    settings: RunSettings,
    *,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Judge every example not already in ``results``; returns counts and the elapsed time."""
    policies = resolve_policies(guard, dataset)
    done = results.open(header, overwrite=overwrite)
    todo = [
        ex
        for ex in dataset.examples
        if ex.id not in done or (settings.retry_errors and done[ex.id].get("verdict") == "error")
    ]
    run_id = str(header["run_id"])
    counts: dict[str, Any] = {"judged": 0, "errors": 0, "resumed": len(dataset.examples) - len(todo)}
    bar = tqdm(
        total=len(todo),
        desc=f"eval {dataset.name}",
        unit="ex",
        file=sys.stderr,
        disable=None if settings.progress is None else not settings.progress,
        dynamic_ncols=True,
    )
    started = time.perf_counter()
    pending = iter(todo)

    async def one(ex: Example) -> dict[str, Any]:
        policy = policies[ex.policy]
        kwargs: dict[str, Any] = {
            "prompt": ex.prompt,
            "response": ex.response,
            "images": list(ex.images) or None,
            "policy": policy,
        }
        try:
            verdict = await guard.acheck(**kwargs)
            think = None
            if settings.think_audit and guard.mode != "think":
                think = await guard.acheck(**kwargs, mode="think")
        except InvalidInputError as exc:
            return error_row(
                ex,
                "invalid_input",
                f"{type(exc).__name__}: {exc}",
                run_id=run_id,
                policy=policy.name,
                policy_fingerprint=policy.fingerprint,
                mode=guard.mode,
                model=guard.model,
                store_text=settings.store_text,
            )
        return result_row(
            ex,
            verdict,
            run_id=run_id,
            policy_fingerprint=policy.fingerprint,
            think=think,
            store_text=settings.store_text,
        )

    async def worker() -> None:
        for ex in pending:  # one shared iterator: each example is taken by exactly one worker
            row = await one(ex)
            results.write(row)
            counts["judged"] += 1
            if row["verdict"] == "error":
                counts["errors"] += 1
                bar.set_postfix(errors=counts["errors"], refresh=False)
            bar.update(1)

    try:
        async with asyncio.TaskGroup() as tg:
            for _ in range(min(settings.concurrency, max(1, len(todo)))):
                tg.create_task(worker())
    finally:
        bar.close()
        results.close()
    counts["elapsed_s"] = round(time.perf_counter() - started, 3)
    return counts


__all__ = ["RunSettings", "policy_fingerprints", "resolve_policies", "run_dataset"]

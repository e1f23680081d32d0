"""Which policy each example is judged under, and the run settings' own checks."""

from __future__ import annotations

import pytest

from langchain_nemoguard import NemoGuard, Policy, PolicySet
from langchain_nemoguard.core.errors import ConfigurationError
from langchain_nemoguard.workbench.data import DataSet, Example
from langchain_nemoguard.workbench.runner import RunSettings, policy_fingerprints, resolve_policies

URL = "http://127.0.0.1:9/v1"  # never contacted: resolving policies makes no call


def _ds(*names: str | None, policies: dict[str, Policy] | None = None) -> DataSet:
    return DataSet(
        "t",
        tuple(Example(f"e{i}", "x", False, policy=n) for i, n in enumerate(names)),
        policies=policies or {},
    )


def test_the_guards_set_wins_then_the_data_then_the_builtin_default() -> None:
    mine = Policy(name="Acme", disallowed=["edited rule"])
    kids = Policy(name="kids", disallowed=["x"])
    guard = NemoGuard(URL, policies=PolicySet([mine, kids]), policy="kids")
    theirs = Policy(name="Acme", disallowed=["original rule"])
    other = Policy(name="Other", disallowed=["y"])
    got = resolve_policies(
        guard, _ds(None, "Acme", "Other", "default", policies={"Acme": theirs, "Other": other})
    )
    assert got[None] is guard.policy and got[None].name == "kids"
    assert got["Acme"] is mine and got["Other"] is other
    assert got["default"] == Policy()  # audit records of the built-in policy carry its name
    assert policy_fingerprints(got) == {p.name: p.fingerprint for p in (kids, mine, other, Policy())}


def test_an_unknown_policy_name_is_refused_before_any_call() -> None:
    with pytest.raises(ConfigurationError, match="name policy 'nope'"):
        resolve_policies(NemoGuard(URL), _ds("nope"))


def test_concurrency_must_be_positive() -> None:
    with pytest.raises(ConfigurationError, match="concurrency must be >= 1"):
        RunSettings(concurrency=0)

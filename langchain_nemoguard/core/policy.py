"""Policies: what counts as unsafe, and what to do about it.

Three kinds, matching the model's three ways of being told what to judge:

* built-in taxonomy (the default), optionally with suppressed categories (``ignore_categories``);
* a custom natural-language policy (``description`` / ``disallowed`` / ``allowed``), sent as the
  ``custom_policy`` kwarg ("Mode A": it replaces the built-in behaviour);
* a custom taxonomy (``taxonomy`` + ``allowed`` as the allow-list), sent as ``custom_taxonomy`` ("Mode B").

Mode A and Mode B exclude each other in one call. A custom policy that should *also* apply the built-in
taxonomy (``include_builtin=True``) therefore costs two concurrent calls whose verdicts are combined.

How a policy is phrased for the model is the model format's business (``formats/``), not the policy's.

A policy is immutable, its action map included: cached verdicts are keyed by ``fingerprint`` and carry the
action chosen when they were computed, so a policy that could change in place would serve stale actions.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping, Sequence
from functools import cached_property
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal, NoReturn

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_serializer,
    field_validator,
    model_validator,
)

from .errors import ConfigurationError, PolicyNotFoundError
from .taxonomy import BUILTIN_TAXONOMY, Taxonomy, category_name
from .verdict import ACTION_SEVERITY, Action

PolicyKind = Literal["builtin", "custom_policy", "custom_taxonomy"]

DEFAULT_REFUSAL = "I can't help with that request."


class ActionMap(Mapping[str, Action]):
    """An immutable ``category -> action`` mapping: reads like a dict, refuses every change, hashes."""

    __slots__ = ("_items",)
    _items: Mapping[str, Action]

    def __init__(self, items: Mapping[str, Action | str] | None = None) -> None:
        frozen = MappingProxyType({str(k): Action(v) for k, v in (items or {}).items()})
        object.__setattr__(self, "_items", frozen)

    def __getitem__(self, key: str) -> Action:
        return self._items[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return repr(dict(self._items))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Mapping) and dict(self._items) == dict(other.items())

    def __hash__(self) -> int:
        return hash(frozenset(self._items.items()))

    def __setattr__(self, name: str, value: object) -> NoReturn:
        raise AttributeError("a policy's action map cannot be changed; use Policy.model_copy(update=...)")

    def __delattr__(self, name: str) -> NoReturn:
        raise AttributeError("a policy's action map cannot be changed; use Policy.model_copy(update=...)")

    def __copy__(self) -> ActionMap:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> ActionMap:
        return self  # immutable: a copy would be indistinguishable

    def __reduce__(self) -> tuple[type[ActionMap], tuple[dict[str, Action]]]:
        return (ActionMap, (dict(self._items),))


class Policy(BaseModel):
    """A named rule set plus a per-category action map.

    >>> Policy(ignore_categories=["Violence"])                                  # built-in, suppressed
    >>> Policy(name="kids", description="...", disallowed=["..."], allowed=["..."])  # custom policy
    >>> Policy(taxonomy=["Trade Secret Leak: unreleased source code"], allowed=["public docs"])
    >>> Policy(actions={"Profanity": "rewrite", "*": "block"})

    Args:
        name: The policy's name (the key in a policy set; the name of a custom policy sent to the model).
        description: A custom natural-language policy's description.
        disallowed: A custom policy's disallowed behaviours (at least one makes it a custom policy).
        allowed: Behaviours explicitly allowed (a custom policy's, or a custom taxonomy's allow-list).
        taxonomy: Custom categories, ``"Name: what it covers"`` (makes it a custom taxonomy).
        ignore_categories: Categories that do not make a verdict unsafe (suppressed).
        actions: Category -> ``block`` | ``rewrite`` | ``log``; ``"*"`` for the rest (default ``block``).
        include_builtin: Also judge the built-in taxonomy beside a custom policy or taxonomy (two calls).
        refusal: The text a ``rewrite`` answers with.
        threshold: Also flag a rating the model called safe when its score (the probability that it is unsafe,
            read from logprobs: ``Verdict.score``) is at least this, in (0, 1]. Lower is stricter. It never
            clears an explicit unsafe reading, and a rating without a score stands as parsed (None: the parsed
            verdict alone decides).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = "default"
    description: str | None = None
    disallowed: tuple[str, ...] = ()
    allowed: tuple[str, ...] = ()
    taxonomy: tuple[str, ...] | None = None
    ignore_categories: tuple[str, ...] = ()
    actions: Mapping[str, Action] = Field(default_factory=dict)
    include_builtin: bool = False
    refusal: str = DEFAULT_REFUSAL
    threshold: float | None = None

    @field_validator("disallowed", "allowed", "ignore_categories", mode="before")
    @classmethod
    def _listify(cls, v: Any) -> Any:
        return (v,) if isinstance(v, str) else v

    @field_validator("taxonomy", mode="before")
    @classmethod
    def _listify_taxonomy(cls, v: Any) -> Any:
        return (v,) if isinstance(v, str) else v

    @field_validator("actions", mode="after")
    @classmethod
    def _freeze_actions(cls, v: Mapping[str, Action]) -> ActionMap:
        return v if isinstance(v, ActionMap) else ActionMap(v)

    @field_serializer("actions")
    def _dump_actions(self, v: Mapping[str, Action]) -> dict[str, Action]:
        return dict(v)

    @model_validator(mode="after")
    def _check(self) -> Policy:
        if self.taxonomy is not None and (self.description or self.disallowed):
            raise ValueError(
                "a policy is either a custom policy (description/disallowed) or a custom taxonomy, not both: "
                "the model's custom_policy and custom_taxonomy kwargs are mutually exclusive"
            )
        if self.taxonomy is not None and not self.taxonomy:
            raise ValueError("taxonomy must list at least one category")
        if self.kind == "custom_policy" and not self.disallowed:
            raise ValueError("a custom policy needs at least one disallowed behaviour")
        if self.include_builtin and self.kind == "builtin":
            raise ValueError("include_builtin only makes sense with a custom policy or taxonomy")
        if self.threshold is not None and not 0.0 < self.threshold <= 1.0:
            raise ValueError(f"threshold must be in (0, 1], got {self.threshold}")
        return self

    # --- what the model is asked ---------------------------------------------------------------------------

    @property
    def kind(self) -> PolicyKind:
        if self.taxonomy is not None:
            return "custom_taxonomy"
        if self.description or self.disallowed:
            return "custom_policy"
        return "builtin"

    @property
    def needs_categories(self) -> bool:
        """Suppression and per-category actions only work when the model names categories."""
        return bool(self.ignore_categories) or any(k != "*" for k in self.actions)

    def taxonomy_view(self) -> Taxonomy:
        return self._taxonomy_view

    @cached_property
    def _taxonomy_view(self) -> Taxonomy:
        if self.kind == "custom_taxonomy":
            return Taxonomy(category_name(e) for e in self.taxonomy or ())
        if self.kind == "custom_policy":
            return Taxonomy([self.name])
        return BUILTIN_TAXONOMY

    # --- what happens with the answer --------------------------------------------------------------------

    def suppress(self, categories: Sequence[str]) -> tuple[list[str], list[str]]:
        """Split categories into (kept, suppressed) according to ``ignore_categories``."""
        if not self.ignore_categories:
            return list(categories), []
        view = self.taxonomy_view()
        ignored = {view.normalise(c).casefold() for c in self.ignore_categories}
        kept = [c for c in categories if c.casefold() not in ignored]
        return kept, [c for c in categories if c.casefold() in ignored]

    def action_for(self, categories: Sequence[str]) -> Action:
        """The strictest action over the verdict's categories; ``"*"`` (default ``block``) for the rest."""
        default = Action(self.actions.get("*", Action.BLOCK))
        if not categories:
            return default
        view = self.taxonomy_view()
        by_name = {view.normalise(k).casefold(): Action(v) for k, v in self.actions.items() if k != "*"}
        chosen = [by_name.get(c.casefold(), default) for c in categories]
        return max(chosen, key=ACTION_SEVERITY.__getitem__)

    def with_overrides(
        self,
        *,
        action: Action | str | None = None,
        default_action: Action | str | None = None,
        refusal: str | None = None,
    ) -> Policy:
        """This policy with an adapter's overrides applied (the one place they are applied).

        Args:
            action: One action for every unsafe verdict: replaces the whole per-category map.
            default_action: The action for categories the policy does not map itself (sets ``"*"`` only when
                the policy has no ``"*"`` entry).
            refusal: Replaces the refusal text.

        Returns:
            ``self`` when nothing changes, else a validated copy with a fresh fingerprint.
        """
        update: dict[str, Any] = {}
        if action is not None:
            update["actions"] = {"*": Action(action)}
        elif default_action is not None and "*" not in self.actions:
            update["actions"] = {**self.actions, "*": Action(default_action)}
        if refusal is not None:
            update["refusal"] = refusal
        return self.model_copy(update=update) if update else self

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = True) -> Policy:
        """A deep copy (always: ``deep`` is accepted for pydantic's signature and ignored), sharing nothing
        mutable with the original; with ``update`` it is validated like a new policy and its digests are
        computed afresh (pydantic's own copy skips validation and keeps ``cached_property`` values)."""
        if not update:
            return super().model_copy(deep=True)
        return type(self)(**{**self.model_dump(), **update})

    @cached_property
    def fingerprint(self) -> str:
        """A digest of everything about the policy that can change a verdict or an action (cache keys)."""
        return hashlib.blake2b(self.model_dump_json().encode(), digest_size=16).hexdigest()

    # --- files ---------------------------------------------------------------------------------------------

    @classmethod
    def load(cls, path: str | Path) -> PolicySet:
        """Read named policies from YAML or JSON: ``{policies: {name: {...}}, default: name}``."""
        return PolicySet.load(path)


class PolicySet(Mapping[str, Policy]):
    """Named policies with a default; unknown names raise :class:`PolicyNotFoundError`.

    Args:
        policies: Policies by name, or a sequence of policies (each keyed by its ``name``).
        default: The name of the default policy (None: the first one).
    """

    def __init__(self, policies: Mapping[str, Policy] | Sequence[Policy], default: str | None = None) -> None:
        items = dict(policies) if isinstance(policies, Mapping) else {p.name: p for p in policies}
        if not items:
            raise ConfigurationError("a policy set needs at least one policy")
        self._policies = items
        if default is not None and default not in items:
            raise PolicyNotFoundError(default, list(items))
        self.default_name = default or next(iter(items))

    @property
    def default(self) -> Policy:
        """The default policy."""
        return self._policies[self.default_name]

    def __getitem__(self, name: str) -> Policy:
        try:
            return self._policies[name]
        except KeyError:
            raise PolicyNotFoundError(name, list(self._policies)) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._policies)

    def __len__(self) -> int:
        return len(self._policies)

    @classmethod
    def from_data(cls, data: Any, *, source: str = "policy data") -> PolicySet:
        """Build from parsed YAML/JSON: ``{policies: {name: {...}}, default: name}``."""
        if not isinstance(data, Mapping):
            raise ConfigurationError(f"{source}: expected a mapping with a 'policies' key")
        raw = data.get("policies", data if "default" not in data else None)
        if not isinstance(raw, Mapping) or not raw:
            raise ConfigurationError(f"{source}: 'policies' must map names to policy settings")
        policies: dict[str, Policy] = {}
        for name, body in raw.items():
            body = dict(body or {})
            body.setdefault("name", str(name))
            try:
                policies[str(name)] = Policy(**body)
            except ValidationError as exc:
                raise ConfigurationError(f"{source}: policy {name!r} is invalid: {exc}") from None
        return cls(policies, default=data.get("default"))

    @classmethod
    def load(cls, path: str | Path) -> PolicySet:
        """Read a YAML or JSON policy file (see :meth:`from_data`)."""
        p = Path(path)
        try:
            text = p.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigurationError(f"cannot read policy file {p}: {exc.strerror}") from None
        try:
            data = json.loads(text) if p.suffix.lower() == ".json" else yaml.safe_load(text)
        except (json.JSONDecodeError, yaml.YAMLError) as exc:
            raise ConfigurationError(
                f"policy file {p} is not valid {p.suffix[1:] or 'YAML'}: {exc}"
            ) from None
        return cls.from_data(data, source=str(p))

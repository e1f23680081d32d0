"""The service's API keys: who may call it, and under which policy.

Keys come from ``NEMOGUARD_SERVER_API_KEYS`` (comma-separated; each key gets the service's default policy) or a
keys file (YAML or JSON), which can give each key a name, a policy and the other policies its requests may
name::

    keys:
      - key: "sk-team-a-0123456789abcdef"      # the key itself, or
        name: team-a
        policy: kids                           # the policy of this key's requests (default: the service's)
        allow_policies: [kids-strict]          # policies a request of this key may name instead
      - sha256: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
        name: team-b                           # a key given by its SHA-256, so the file holds no secret

A request cannot choose its policy otherwise: naming a policy its key does not allow is refused (403), with the
same message whether such a policy exists or not. Keys are kept only as SHA-256 digests and compared with
``hmac.compare_digest`` against every configured key (no early exit), so neither the comparison's time nor the
service's memory gives a key away; keys never appear in reprs, logs or errors. A key shorter than
``MIN_KEY_CHARS`` is refused at start-up.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import yaml

from ..core.errors import ConfigurationError

KEYS_ENV: Final = "NEMOGUARD_SERVER_API_KEYS"
MIN_KEY_CHARS: Final = 16
_HEX64: Final = re.compile(r"^[0-9a-f]{64}$")


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


@dataclass(frozen=True, slots=True)
class ApiKey:
    """One configured key (only its digest is kept).

    Args:
        name: A label for logs, records and metrics (never the key).
        policy: The policy of this key's requests (None: the service's default).
        allow_policies: Further policies a request of this key may name.
        digest: SHA-256 of the key.
    """

    name: str
    policy: str | None = None
    allow_policies: frozenset[str] = frozenset()
    digest: bytes = field(default=b"", repr=False)

    def may_use(self, policy: str, default: str) -> bool:
        """Whether a request of this key may run under ``policy``."""
        return policy == (self.policy or default) or policy in self.allow_policies


ANONYMOUS: Final = ApiKey("anonymous")
"""The caller when no key is configured (loopback only): the default policy, and no other."""


class KeyRing:
    """The configured keys; :meth:`find` answers which one a presented key is, in constant time per key.

    Args:
        keys: The keys.
    """

    def __init__(self, keys: Sequence[ApiKey]) -> None:
        if not keys:
            raise ConfigurationError("no API keys given")
        names = [k.name for k in keys]
        if len(set(names)) != len(names):
            raise ConfigurationError("API key names must be unique")
        if len({k.digest for k in keys}) != len(keys):
            raise ConfigurationError("the same API key is configured twice")
        self.keys: tuple[ApiKey, ...] = tuple(keys)

    def __repr__(self) -> str:
        return f"KeyRing({len(self.keys)} keys: {', '.join(k.name for k in self.keys)})"

    def __len__(self) -> int:
        return len(self.keys)

    def find(self, presented: str | None) -> ApiKey | None:
        """The key ``presented`` is, or None; every configured key is compared, whatever matches."""
        if not presented:
            return None
        digest = _digest(presented)
        found = None
        for key in self.keys:
            if hmac.compare_digest(digest, key.digest):
                found = key
        return found

    def policies(self) -> set[str]:
        """Every policy name the keys refer to (checked against the loaded policies at start-up)."""
        out: set[str] = set()
        for k in self.keys:
            if k.policy:
                out.add(k.policy)
            out |= k.allow_policies
        return out

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> KeyRing | None:
        """The keys of ``NEMOGUARD_SERVER_API_KEYS`` (None when unset or empty)."""
        raw = (os.environ if env is None else env).get(KEYS_ENV, "")
        keys = [k.strip() for k in raw.split(",") if k.strip()]
        if not keys:
            return None
        return cls([ApiKey(f"key-{i}", digest=_checked(k, f"{KEYS_ENV} entry {i}")) for i, k in enumerate(keys, 1)])

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> KeyRing:
        """Read a keys file (see the module docstring)."""
        p = Path(path)
        try:
            text = p.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigurationError(f"cannot read the keys file {p}: {exc.strerror}") from None
        try:
            data = json.loads(text) if p.suffix.lower() == ".json" else yaml.safe_load(text)
        except (json.JSONDecodeError, yaml.YAMLError):
            # the parser's message could quote a line of the file, i.e. a key
            raise ConfigurationError(f"the keys file {p} is not valid {p.suffix[1:] or 'YAML'}") from None
        entries = data.get("keys") if isinstance(data, Mapping) else None
        if not isinstance(entries, list) or not entries:
            raise ConfigurationError(f"the keys file {p} needs a non-empty 'keys' list")
        return cls([_entry(e, f"{p}: keys[{i}]", i) for i, e in enumerate(entries)])

    @classmethod
    def combine(cls, rings: Iterable[KeyRing | None]) -> KeyRing | None:
        """The keys of several rings together (None when there are none)."""
        keys = [k for r in rings if r is not None for k in r.keys]
        return cls(keys) if keys else None


def _checked(key: str, where: str) -> bytes:
    if len(key) < MIN_KEY_CHARS:
        raise ConfigurationError(f"{where}: an API key needs at least {MIN_KEY_CHARS} characters")
    return _digest(key)


def _entry(entry: Any, where: str, index: int) -> ApiKey:
    if not isinstance(entry, Mapping):
        raise ConfigurationError(f"{where} must be a mapping")
    unknown = set(entry) - {"key", "sha256", "name", "policy", "allow_policies"}
    if unknown:
        raise ConfigurationError(f"{where}: unknown fields {sorted(unknown)}")
    key, sha = entry.get("key"), entry.get("sha256")
    if (key is None) == (sha is None):
        raise ConfigurationError(f"{where} needs exactly one of 'key' and 'sha256'")
    if key is not None:
        if not isinstance(key, str):
            raise ConfigurationError(f"{where}: 'key' must be a string")
        digest = _checked(key, where)
    else:
        if not isinstance(sha, str) or not _HEX64.match(sha.lower()):
            raise ConfigurationError(f"{where}: 'sha256' must be 64 hex digits")
        digest = bytes.fromhex(sha.lower())
    name = entry.get("name", f"key-{index + 1}")
    policy = entry.get("policy")
    allow = entry.get("allow_policies", [])
    if not isinstance(name, str) or not name:
        raise ConfigurationError(f"{where}: 'name' must be a non-empty string")
    if policy is not None and (not isinstance(policy, str) or not policy):
        raise ConfigurationError(f"{where}: 'policy' must be a policy name")
    if not isinstance(allow, list) or not all(isinstance(a, str) and a for a in allow):
        raise ConfigurationError(f"{where}: 'allow_policies' must be a list of policy names")
    return ApiKey(name, policy, frozenset(allow), digest)


__all__ = ["ANONYMOUS", "KEYS_ENV", "MIN_KEY_CHARS", "ApiKey", "KeyRing"]

"""The model's three output modes (a leaf module: the CLI reads it without loading the core)."""

from __future__ import annotations

from typing import Literal

Mode = Literal["fast", "categories", "think"]
MODES: tuple[Mode, ...] = ("fast", "categories", "think")

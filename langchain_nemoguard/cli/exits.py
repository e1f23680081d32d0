"""The exit codes of ``nemoguard check`` (and ``demo``), in one place, so that a script can tell them apart."""

from __future__ import annotations

from typing import Final

EXIT_SAFE: Final = 0
EXIT_UNSAFE: Final = 1
EXIT_USAGE: Final = 2  # argparse's own code; also arguments it cannot check (a missing image, a bad policy file)
EXIT_NO_VERDICT: Final = 3  # the guard was unreachable, timed out, or answered something unreadable

EXIT_CODES: Final = (
    "exit codes:\n"
    "  0  safe\n"
    "  1  unsafe\n"
    "  2  usage error (bad arguments, a missing image, a bad policy file)\n"
    "  3  no verdict: the guard was unreachable, timed out, or its answer could not be read"
)

__all__ = ["EXIT_CODES", "EXIT_NO_VERDICT", "EXIT_SAFE", "EXIT_UNSAFE", "EXIT_USAGE"]

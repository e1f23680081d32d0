"""What a check promises whatever the endpoint does: an unsafe answer is never lost, and the check ends on time.

Runs offline against the in-process interface simulator - a rule-based TEST DOUBLE, not a safety model - made
to misbehave on purpose: it answers unsafe with stray bytes around the verdict, and then stops answering.

    python examples/bounded_checks.py
"""

from __future__ import annotations

import sys
import time

from langchain_nemoguard import NemoGuard, TransportOptions, WindowOptions
from langchain_nemoguard.core.errors import InputTooLargeError
from langchain_nemoguard.simulator import SimulatorServer
from langchain_nemoguard.simulator.config import BANNER


def main() -> int:
    print(BANNER)
    with SimulatorServer() as sim:
        # on_error="allow" fails open on an outage - so an unsafe answer must never be read as an outage
        guard = NemoGuard(
            sim.base_url,
            on_error="allow",
            timeout=5.0,
            transport=TransportOptions(deadline=1.0),  # the whole check, retries included, ends by then
            windows=WindowOptions(max_input_chars=10_000),  # larger inputs are refused before any call
        )
        print("honest answer      ->", guard.check(prompt="What is the capital of France?").reason)

        sim.force(
            {"raw": "Here is my assessment:\n```\n**User Safety:** unsafe.\nSafety Categories: Violence\n```"}
        )
        v = guard.check(prompt="a question the simulator answers messily")
        print("messy unsafe answer ->", v.reason, "| allowed:", v.allowed)

        sim.force({"fault": "timeout"})  # the endpoint holds the request open and never answers
        started = time.monotonic()
        v = guard.check(prompt="a question nobody answers")
        print(f"endpoint hangs     -> {v.reason} after {time.monotonic() - started:.1f} s (deadline 1.0 s)")

        try:
            guard.check(prompt="x" * 20_000)
        except InputTooLargeError as err:
            print("oversized input    -> refused before any call:", str(err).split(";")[0])
        guard.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

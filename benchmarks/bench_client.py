"""Guard client overhead against raw aiohttp and raw httpx, against the simulator at 0 and 20 ms.

Same as ``nemoguard bench``; kept here so every benchmark lives in benchmarks/. Writes
benchmarks/results/client.json.

    python benchmarks/bench_client.py [--repeats 3] [--requests 600] [--latency-runs 200]
"""

from __future__ import annotations

import sys
from pathlib import Path

from langchain_nemoguard.cli.main import main

if __name__ == "__main__":
    out = Path(__file__).parent / "results" / "client.json"
    sys.exit(main(["bench", "--out", str(out), *sys.argv[1:]]))

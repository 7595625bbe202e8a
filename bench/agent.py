"""Benchmark railyard's agent loop against pydantic-ai 0.0.40 (the seeds' version).

The workload is in `bench/agent_workload.py`: one tool round trip on an instant
FunctionModel, so the time per run is framework overhead. railyard runs in the project's
environment, pydantic-ai in `.bench-venvs/pydantic-ai-slim-0.0.40` (made on first use).
Each measurement is a fresh subprocess; rounds alternate the two and reverse their order
every other round, so load from elsewhere on the machine falls on both alike.

    .venv/bin/python bench/agent.py           # about a minute
    .venv/bin/python bench/agent.py --quick   # a smoke test
    .venv/bin/python bench/agent.py --check   # exit 1 if the target is missed
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys

from _venvs import REPO, ensure_venv, pinned

WORKLOAD = REPO / "bench" / "agent_workload.py"
PEER_VERSION = "0.0.40"
PEER_REQUIREMENTS = (f"pydantic-ai-slim=={PEER_VERSION}", "opentelemetry-api==1.31.1")
"""The peer, and a pin it needs: 0.0.40 imports an OpenTelemetry module later releases dropped."""
TARGET = 0.5
"""railyard's per-run overhead is at most this share of pydantic-ai's."""


def measure(python: str, library: str, runs: int, warmup: int) -> float:
    """µs per run of the workload, in a fresh subprocess."""
    command = [python, str(WORKLOAD), library, str(runs), str(warmup)]
    done = subprocess.run(command, capture_output=True, text=True, check=False, cwd=REPO, timeout=600)
    if done.returncode != 0:
        sys.stderr.write(done.stdout + done.stderr)
        raise SystemExit(f"bench: {library} workload failed (exit {done.returncode})")
    return float(done.stdout.strip())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small runs, one round")
    parser.add_argument("--check", action="store_true", help="exit 1 if the target is missed")
    args = parser.parse_args()
    runs, warmup, rounds = (100, 10, 1) if args.quick else (1000, 50, 6)
    peer = ensure_venv(f"pydantic-ai-slim-{PEER_VERSION}", PEER_REQUIREMENTS, "pydantic-ai-slim", pinned(PEER_VERSION))
    sides = [(sys.executable, "railyard"), (str(peer), "pydantic-ai")]
    times: dict[str, list[float]] = {library: [] for _, library in sides}
    for round_ in range(rounds):
        for python, library in sides if round_ % 2 == 0 else sides[::-1]:
            times[library].append(measure(python, library, runs, warmup))
    ours, theirs = statistics.median(times["railyard"]), statistics.median(times["pydantic-ai"])
    ratio = ours / theirs
    print(f"agent run, one tool round trip ({runs} runs x {rounds} rounds, median of rounds)")
    print(f"  railyard               {ours:8.0f} µs/run")
    print(f"  pydantic-ai {PEER_VERSION:<10} {theirs:8.0f} µs/run")
    verdict = "PASS" if ratio <= TARGET else "FAIL"
    print(f"  ratio {ratio:.2f} (target <= {TARGET}) {verdict}")
    return 1 if args.check and ratio > TARGET else 0


if __name__ == "__main__":
    raise SystemExit(main())

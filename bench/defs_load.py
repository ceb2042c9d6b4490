"""Definitions load time: `import dagster` alone vs loading our code location, in fresh interpreters.

Why: every process that serves or runs this code location imports `coursegpt_assets.definitions`
first: the `dagster api grpc` code server in the cluster, each K8sRunLauncher run pod, every
multiprocess step worker, the daemon's sensor and schedule ticks, `dg check defs`. Dagster itself is a
floor we cannot go below; anything on top is our own module-level work. Heavy ML libraries (torch,
transformers, trl, peft, vertexai, evaluate, datasets) belong inside the assets and the Pipes
training child, never at load; numpy, pandas and matplotlib likewise until a function needs them.

Each sample is a new `python -c` (so nothing is cached in-process); the two commands alternate so
drift on a shared machine hits both alike, and the figures are medians of --repeat samples.
Target: ratio ≤ 1.5 (definitions + `resolve_asset_graph()` within 1.5× of `import dagster`).

    .venv/bin/python bench/defs_load.py --repeat 5
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET = 1.5
HEAVY = ("torch", "transformers", "trl", "peft", "vertexai", "google.cloud.aiplatform", "evaluate", "datasets",
         "numpy", "pandas", "matplotlib")

_PROBE = """
import json, sys, time
start = time.perf_counter()
{body}
elapsed = time.perf_counter() - start
print(json.dumps({{"s": elapsed, "heavy": [m for m in {heavy!r} if m in sys.modules]}}))
"""
BODIES = {
    "import dagster": "import dagster",
    "definitions + asset graph": "from coursegpt_assets.definitions import defs\ndefs.resolve_asset_graph()",
}


def sample(body: str, env: dict[str, str]) -> dict:
    """One fresh interpreter: the wall time of `body` inside it and the heavy modules it left loaded."""
    out = subprocess.run([sys.executable, "-c", _PROBE.format(body=body, heavy=HEAVY)], cwd=ROOT, env=env,
                         capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"probe failed ({body.splitlines()[0]}):\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=5, help="fresh interpreters per command (median)")
    parser.add_argument("--env", default="local", choices=("local", "gcp"),
                        help="COURSEGPT_ENV for the definitions (gcp uses a placeholder gs:// store)")
    args = parser.parse_args()

    env = {**os.environ, "COURSEGPT_ENV": args.env, "PYTHONDONTWRITEBYTECODE": "1"}
    if args.env == "gcp":
        env.setdefault("COURSEGPT_STORE", "gs://bench-bucket/coursegpt")
    # warm the page cache and the bytecode cache once, outside the timed samples
    for body in BODIES.values():
        sample(body, {**env, "PYTHONDONTWRITEBYTECODE": ""})

    times: dict[str, list[float]] = {name: [] for name in BODIES}
    heavy: dict[str, set[str]] = {name: set() for name in BODIES}
    for _ in range(args.repeat):
        for name, body in BODIES.items():
            result = sample(body, env)
            times[name].append(result["s"])
            heavy[name].update(result["heavy"])

    base = statistics.median(times["import dagster"])
    print(f"COURSEGPT_ENV={args.env}, {args.repeat} fresh interpreters each, median wall time")
    print(f"{'what':<28} {'median s':>9} {'min s':>7} {'max s':>7} {'ratio':>6}  heavy modules loaded")
    for name in BODIES:
        med = statistics.median(times[name])
        loaded = ", ".join(m for m in HEAVY if m in heavy[name]) or "-"
        print(f"{name:<28} {med:>9.3f} {min(times[name]):>7.3f} {max(times[name]):>7.3f} {med / base:>6.2f}  {loaded}")
    ratio = statistics.median(times["definitions + asset graph"]) / base
    verdict = "meets" if ratio <= TARGET else "misses"
    print(f"ratio {ratio:.2f} {verdict} the target ≤ {TARGET}×")


if __name__ == "__main__":
    main()

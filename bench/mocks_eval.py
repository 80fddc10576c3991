"""Benchmark: program evaluation time under Pulumi mocks at 3, 5 and 7 controllers.

Usage: .venv/bin/python bench/mocks_eval.py [--repeat N]
Prints a table (median of N runs, in ms, and the number of resources registered) and the ratio of 7 to 3
controllers measured in the same run. `core` is the PKI and control plane on a fake infra; `azure`/`gcp` are
the whole `__main__.py` with the cloud's infra, as shipped (the digests the table lacks come from the mocked
release digests resource; nothing is deployed).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from fake_infra import build, config  # noqa: E402
from harness import evaluate, run_program  # noqa: E402

CLOUD_CONFIG = {
    "azure": {"cloud": "azure", "adminCidrs": '["203.0.113.7/32"]', "location": "westeurope"},
    "gcp": {"cloud": "gcp", "adminCidrs": '["203.0.113.7/32"]', "gcp:project": "kthw-bench",
            "gcp:region": "europe-west1", "gcp:zone": "europe-west1-b"},
}


def measure(program, repeat: int) -> tuple[float, int]:
    times, count = [], 0
    for _ in range(repeat):
        start = time.perf_counter()
        graph = program()
        times.append((time.perf_counter() - start) * 1000)
        count = len(graph.resources)
    return statistics.median(times), count


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    rows = []
    for program in ("core", "azure", "gcp"):
        for count in (3, 5, 7):
            if program == "core":
                run = lambda c=count: evaluate(lambda: build(config(controllerCount=c)), {"cloud": "local"})  # noqa: E731
            else:
                cfg = {**CLOUD_CONFIG[program], "controllerCount": str(count)}
                run = lambda cfg=cfg: run_program(cfg)  # noqa: E731
            try:
                ms, resources = measure(run, args.repeat)
            except Exception as exc:  # noqa: BLE001 - a cloud not built yet is reported, not fatal
                print(f"{program:6} {count}: skipped ({type(exc).__name__}: {exc})".splitlines()[0])
                continue
            rows.append({"program": program, "controllers": count, "median_ms": round(ms, 1),
                         "resources": resources})
    print(f"{'program':8}{'controllers':>12}{'median ms':>12}{'resources':>11}")
    for row in rows:
        print(f"{row['program']:8}{row['controllers']:>12}{row['median_ms']:>12}{row['resources']:>11}")
    for program in ("core", "azure", "gcp"):
        by = {r["controllers"]: r["median_ms"] for r in rows if r["program"] == program}
        if 3 in by and 7 in by:
            print(f"{program}: 7 / 3 controllers = {by[7] / by[3]:.2f}x time")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

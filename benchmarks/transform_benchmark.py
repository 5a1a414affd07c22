"""Transform throughput: synthetic raw logs -> SequenceExamples, events/s and peak memory.

    python -m benchmarks.transform_benchmark [--events 1000000] [--max-len 50] [--workers 1 2]

Each configuration runs `python -m components.transform` in a fresh process (so peak RSS is
that run's own, Beam workers included) on the same synthetic CSV and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

from benchmarks.machine import machine_line
from synthetic.generator import SyntheticConfig, write_csv


def run_once(csv_path: str, out: str, max_len: int, workers: int) -> dict:
    command = [
        sys.executable,
        "-m",
        "components.transform",
        "--input",
        csv_path,
        "--format",
        "raw",
        "--output",
        out,
        "--max-len",
        str(max_len),
    ]
    if workers > 1:
        command += ["--direct_num_workers", str(workers), "--direct_running_mode", "multi_processing"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    peak_kb = max(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, before)
    with open(os.path.join(out, "stats.json"), encoding="utf-8") as handle:
        stats = json.load(handle)
    return {"seconds": seconds, "peak_mb": peak_kb / 1024, "stats": stats}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--max-len", type=int, default=50)
    parser.add_argument("--workers", type=int, nargs="+", default=[1])
    parser.add_argument("--domains", type=int, default=5)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        csv_path = os.path.join(tmp, "events.csv")
        started = time.perf_counter()
        write_csv(SyntheticConfig(events=args.events, domains=args.domains, seed=0), csv_path)
        print(
            f"generated {args.events:,} synthetic events ({args.domains} domains) in "
            f"{time.perf_counter() - started:.1f} s; cores: {os.cpu_count()}\n{machine_line()}\n"
        )
        print("| events | T | workers | users | wall s | events/s | events/min | peak RSS MB (largest process) |")
        print("|---:|---:|---:|---:|---:|---:|---:|---:|")
        for workers in args.workers:
            result = run_once(csv_path, os.path.join(tmp, f"out{workers}"), args.max_len, workers)
            rate = args.events / result["seconds"]
            print(
                f"| {args.events:,} | {args.max_len} | {workers} | {result['stats']['users']:,} "
                f"| {result['seconds']:.1f} "
                f"| {rate:,.0f} | {rate * 60:,.0f} | {result['peak_mb']:,.0f} |"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""How cost grows with the catalogue and the user base (synthetic data).

    python -m benchmarks.scale_benchmark [--items 10000 100000 1000000] [--users 10000 100000 1000000]

Items: SyNCRec training ms/step and peak RSS at r=64, T=50, K=4, batch 128, 5 domains, for each
vocabulary size (benchmarks.training_benchmark in a fresh process per size). Users: the Beam
transform's wall time, events/s and peak RSS for each number of users (5 to ~10 events each, so
the users generated are somewhat fewer than asked for).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time

from benchmarks.machine import machine_line
from synthetic.generator import SyntheticConfig, write_csv


def train_at(items: int, steps: int) -> dict:
    command = [
        sys.executable,
        "-m",
        "benchmarks.training_benchmark",
        "--max-len",
        "50",
        "--steps",
        str(steps),
        "--items",
        str(items),
        "--embed-dim",
        "64",
    ]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    row = [line for line in output.splitlines() if re.match(r"\| 50 \|", line)][0]
    cells = [c.strip().replace(",", "") for c in row.strip("|").split("|")]
    return {
        "ms_step": float(cells[1]),
        "seq_s": float(cells[2]),
        "eval_users_s": float(cells[3]),
        "peak_mb": float(cells[4]),
    }


def transform_at(users: int, tmp: str) -> dict:
    path = os.path.join(tmp, f"users{users}.csv")
    events = users * 6
    write_csv(
        SyntheticConfig(
            events=events, domains=5, items_per_domain=20_000, mean_events_per_user=6.0, min_events_per_user=5, seed=0
        ),
        path,
    )
    out = os.path.join(tmp, f"out{users}")
    before = time.perf_counter()
    # GNU time reports this run's own peak RSS (RUSAGE_CHILDREN would be the maximum over all runs).
    done = subprocess.run(
        [
            "/usr/bin/time",
            "-f",
            "peak_kb=%M",
            sys.executable,
            "-m",
            "components.transform",
            "--input",
            path,
            "--format",
            "raw",
            "--output",
            out,
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - before
    peak_mb = int(re.findall(r"peak_kb=(\d+)", done.stderr)[-1]) / 1024
    with open(os.path.join(out, "stats.json"), encoding="utf-8") as handle:
        stats = json.load(handle)
    os.remove(path)
    return {"users": stats["users"], "events": stats["rows_read"], "seconds": seconds, "peak_mb": peak_mb}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, nargs="*", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--users", type=int, nargs="*", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args(argv)
    print(f"cores: {os.cpu_count()}\n{machine_line()}\n")
    if args.items:
        print("| items | train ms/step | train sequences/s | eval users/s | peak RSS MB |")
        print("|---:|---:|---:|---:|---:|")
        for items in args.items:
            r = train_at(items, args.steps)
            print(
                f"| {items:,} | {r['ms_step']:,.0f} | {r['seq_s']:,.1f} | {r['eval_users_s']:,.0f} "
                f"| {r['peak_mb']:,.0f} |",
                flush=True,
            )
        print()
    if args.users:
        print("| users (generated) | events | transform s | events/s | peak RSS MB |")
        print("|---:|---:|---:|---:|---:|")
        with tempfile.TemporaryDirectory() as tmp:
            for users in args.users:
                r = transform_at(users, tmp)
                print(
                    f"| {r['users']:,} | {r['events']:,} | {r['seconds']:.1f} | {r['events'] / r['seconds']:,.0f} "
                    f"| {r['peak_mb']:,.0f} |",
                    flush=True,
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Multi-worker training on one machine: the same global batch on 1 worker and on 2 workers.

    python -m benchmarks.distributed_benchmark [--users 8000] [--epochs 2]

Writes synthetic examples (5 domains, 20k items a domain, histories of 5-50), then runs
`python -m model_keras.train --set distribution=multi_worker` (r=64, T=50, K=4, j=3, two blocks,
global batch 128) as 1 worker with 2 threads, and as 2 worker processes (TF_CONFIG on loopback)
with 1 thread each, and prints training sequences/s. On 2 cores the second worker brings no new
core, only the collectives: this measures their cost; the speed-up needs machines with cores to add.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time

import numpy as np

from benchmarks.machine import machine_line
from benchmarks.synthetic_examples import write_examples
from schemas.vocabulary import Vocabulary

SETTINGS = [
    "distribution=multi_worker",
    "preset=pipeline",
    "num_experts=4",
    "num_cross_experts=3",
    "batch_size=128",
    "patience=0",
]


def run_workers(examples: str, output: str, workers: int, threads: int, epochs: int) -> dict:
    sockets = [socket.socket() for _ in range(workers)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    [s.close() for s in sockets]
    processes = []
    started = time.perf_counter()
    for index in range(workers):
        env = dict(
            os.environ,
            TF_NUM_INTRAOP_THREADS=str(threads),
            TF_NUM_INTEROP_THREADS="1",
            TF_CONFIG=json.dumps(
                {"cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]}, "task": {"type": "worker", "index": index}}
            ),
        )
        args = ["--set", f"epochs={epochs}", *[a for s in SETTINGS for a in ("--set", s)]]
        processes.append(
            subprocess.Popen(
                [sys.executable, "-m", "model_keras.train", "--examples", examples, "--output", output, *args],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    for process in processes:
        _, err = process.communicate()
        if process.returncode:
            raise RuntimeError(err[-2000:])
    wall = time.perf_counter() - started
    summary = json.load(open(os.path.join(output, "training.json")))
    return {"wall": wall, "train_seconds": summary["train_seconds"], "loss": summary["loss_history"]["loss"][-1]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=8000)
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args(argv)
    vocab = Vocabulary.from_counts({(f"D{d}", f"D{d}-{i}"): 1 for d in range(5) for i in range(20_000)})
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        write_examples(os.path.join(tmp, "examples"), args.users, vocab, np.random.default_rng(0))
        for workers, threads in ((1, 2), (2, 1)):
            result = run_workers(
                os.path.join(tmp, "examples"), os.path.join(tmp, f"out{workers}"), workers, threads, args.epochs
            )
            steps = args.users // 128 * args.epochs
            rows.append((workers, threads, result, steps * 128 / result["train_seconds"]))
    print(
        f"SyNCRec r=64 T=50 K=4 j=3 2 blocks, global batch 128, 5 domains, {args.users:,} train sequences, "
        f"{args.epochs} epochs "
        f"(each with a validation pass); cores: {os.cpu_count()}\n{machine_line()}\n"
    )
    print("| workers | threads each | train s (with validation) | sequences/s | last epoch loss |")
    print("|---:|---:|---:|---:|---:|")
    for workers, threads, result, rate in rows:
        print(f"| {workers} | {threads} | {result['train_seconds']:.1f} | {rate:,.1f} | {result['loss']:.4f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

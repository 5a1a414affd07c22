"""Evaluation speed: leave-one-out metrics for many users, sampled candidates and full ranking.

    python -m benchmarks.evaluation_benchmark [--users 10000] [--items 100000] [--domains 1]

Writes --users synthetic test examples (histories of 5-50 items, built by the transform's own
Definition-1 code and example codec) over a vocabulary of --items items per domain, then times
model_keras.evaluation.evaluate for an (untrained: speed does not depend on the weights) SyNCRec,
r=64, T=50, two blocks: 99 sampled negatives, and full ranking over the label's domain. Prints a
Markdown table.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np

from benchmarks.machine import machine_line
from benchmarks.synthetic_examples import write_examples
from model_keras.config import ModelConfig
from model_keras.evaluation import EvalProtocol, ModelScorer, evaluate
from model_keras.train import build_model
from model_keras.input_fn import make_dataset
from schemas.vocabulary import Vocabulary


PIPELINE = ModelConfig.from_dict({"preset": "pipeline"})  # the model the pipeline serves


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--items", type=int, default=100_000, help="items per domain")
    parser.add_argument("--domains", type=int, default=1)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    vocab = Vocabulary.from_counts({(f"D{d}", f"D{d}-{i}"): 1 for d in range(args.domains) for i in range(args.items)})
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        write_examples(folder, args.users, vocab, rng)
        config = ModelConfig.from_dict(
            {**PIPELINE.to_dict(), "num_items": vocab.num_items, "num_domains": vocab.num_domains}
        )
        model = build_model(config, vocab, next(iter(make_dataset(folder, "train", vocab.num_domains, 2))))
        scorer = ModelScorer(model)
        for label, protocol in (
            ("99 sampled negatives (100 candidates)", EvalProtocol()),
            (f"full ranking over the domain ({args.items:,} items)", EvalProtocol(full_ranking=True)),
        ):
            evaluate(scorer, folder, "valid", vocab, protocol)  # compiles the scoring functions
            started = time.perf_counter()
            result = evaluate(scorer, folder, "test", vocab, protocol)
            seconds = time.perf_counter() - started
            rows.append((label, result["all"]["users"], seconds))
    print(
        f"SyNCRec r={PIPELINE.embed_dim} T={ModelConfig.max_len} {PIPELINE.num_blocks} blocks, "
        f"{args.domains} domain(s) x {args.items:,} items; cores: {os.cpu_count()}\n{machine_line()}\n"
    )
    print("| protocol | users | seconds | users/s |")
    print("|---|---:|---:|---:|")
    for label, users, seconds in rows:
        print(f"| {label} | {users:,} | {seconds:.1f} | {users / seconds:,.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

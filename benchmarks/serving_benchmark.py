"""Serving latency of the exported top-k signature: in-process and through gRPC on loopback.

    python -m benchmarks.serving_benchmark [--items 1000000] [--requests 300] [--k 10]

Exports an (untrained: latency does not depend on the weights) SyNCRec SavedModel with a
synthetic vocabulary of --items items over 5 domains, r=64, T=50, then times single-user
requests (history of 20 raw item ids) through `serving_default` in-process and through the
PredictionService server + gRPC client. Prints p50/p99 in a Markdown table.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np

import tensorflow as tf

from schemas.vocabulary import Vocabulary
from model_keras.config import ModelConfig
from model_keras.model import SyNCRec
from model_keras.signatures import export_saved_model
from model_keras.warm_start import dummy_batch
from serving.client import RecommendClient
from serving.prediction_server import start_server


def percentiles(samples: list[float]) -> tuple[float, float]:
    return float(np.percentile(samples, 50) * 1000), float(np.percentile(samples, 99) * 1000)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--domains", type=int, default=5)
    args = parser.parse_args(argv)
    per_domain = args.items // args.domains
    names = [f"D{d}" for d in range(args.domains)]
    vocab = Vocabulary.from_counts({(name, f"{name}-{i}"): 1 for name in names for i in range(per_domain)})
    config = ModelConfig(num_items=vocab.num_items, num_domains=vocab.num_domains, max_len=50, embed_dim=64, num_blocks=1)
    model = SyNCRec(config, [(d.start, d.end) for d in vocab.domains], vocab.domain_names)
    model.build_for(dummy_batch(config))
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        root = os.path.join(tmp, "serving", "syncrec", "1")
        export_saved_model(model, config.max_len, vocab, root)
        export_s = time.perf_counter() - started
        loaded = tf.saved_model.load(root).signatures["serving_default"]

        def request():
            domains = rng.choice(names, size=20)
            items = [f"{d}-{rng.integers(per_domain)}" for d in domains]
            return items, list(domains), str(rng.choice(names))

        requests = [request() for _ in range(args.requests + 20)]
        in_process = []
        for items, domains, target in requests:
            t0 = time.perf_counter()
            loaded(history_items=tf.constant([items]), history_domains=tf.constant([domains]), target_domain=tf.constant([target]), k=tf.constant(args.k))["item_ids"].numpy()
            in_process.append(time.perf_counter() - t0)
        server, port = start_server(os.path.join(tmp, "serving"), 0)
        client = RecommendClient(f"127.0.0.1:{port}")
        over_grpc = []
        for items, domains, target in requests:
            t0 = time.perf_counter()
            client.recommend(list(zip(items, domains)), target, args.k)
            over_grpc.append(time.perf_counter() - t0)
        server.stop(0)
    print(f"{args.items:,} items, {args.domains} domains, r=64, T=50, k={args.k}, history 20 items; "
          f"{args.requests} timed requests after 20 warm-up; export {export_s:.1f} s; cores: {os.cpu_count()}\n")
    print("| path | p50 ms | p99 ms |")
    print("|---|---:|---:|")
    for label, samples in (("in-process serving_default", in_process[20:]), ("gRPC PredictionService (loopback)", over_grpc[20:])):
        p50, p99 = percentiles(samples)
        print(f"| {label} | {p50:.1f} | {p99:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

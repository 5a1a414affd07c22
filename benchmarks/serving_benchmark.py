"""Serving latency and throughput of the exported top-k signature: in-process and through gRPC on loopback.

    python -m benchmarks.serving_benchmark [--items 1000000] [--requests 300] [--k 10] [--batches 1 8 64]

Exports an (untrained: latency does not depend on the weights) SyNCRec SavedModel with a
synthetic vocabulary of --items items over 5 domains, r=64, T=50, two blocks (and a copy that serves every
domain from its single-domain tower, prediction_towers, timed in-process), then times requests
(each a history of 20 raw item ids) through `serving_default` in-process and through the
PredictionService server + gRPC client, single requests and batches of one target domain. Prints
Markdown tables: p50/p99 latency per path, and requests/s per batch size.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np
import tensorflow as tf

from benchmarks.machine import machine_line
from benchmarks.reference import SERVING_BEFORE, SERVING_ITEMS
from model_keras.config import ModelConfig
from model_keras.model import SyNCRec
from model_keras.signatures import export_saved_model
from model_keras.warm_start import dummy_batch
from pipeline.pusher import push
from schemas.vocabulary import Vocabulary
from serving.client import RecommendClient, build_batch_request
from serving.prediction_server import start_server


PIPELINE = ModelConfig.from_dict({"preset": "pipeline"})  # the model the pipeline serves


def percentiles(samples: list[float]) -> tuple[float, float]:
    return float(np.percentile(samples, 50) * 1000), float(np.percentile(samples, 99) * 1000)


def export_model(items: int, domains: int, folder: str, single_towers: bool = False) -> tuple[str, list[str], int]:
    """An untrained SyNCRec SavedModel; `single_towers`: every domain served by its single-domain tower (X^d)."""
    per_domain = items // domains
    names = [f"D{d}" for d in range(domains)]
    vocab = Vocabulary.from_counts({(name, f"{name}-{i}"): 1 for name in names for i in range(per_domain)})
    config = ModelConfig.from_dict({**PIPELINE.to_dict(), "num_items": vocab.num_items, "num_domains": vocab.num_domains})
    model = SyNCRec(config, [(d.start, d.end) for d in vocab.domains], vocab.domain_names).build_for(
        dummy_batch(config)
    )
    if single_towers:
        model.prediction_tower.assign([1] * domains)
    path = os.path.join(folder, "model-single" if single_towers else "model")
    return export_saved_model(model, config.max_len, vocab, path), names, per_domain


FLOOR_LABEL = "floor: read the target domain's item table once (slice, matmul, top-k; same ops)"


def domain_table_floor(table: tf.Variable, rows: int, k: int):
    """What no request can beat: one pass over a domain's rows of the item table with the serving ops."""
    user = tf.random.stateless_normal([1, table.shape[1]], seed=[0, 1])

    @tf.function
    def read_once():
        scores = tf.matmul(user, tf.slice(table, [2, 0], [rows, -1]), transpose_b=True)
        return tf.math.top_k(scores, k=k).indices

    read_once()
    return lambda: read_once().numpy()


def time_calls(call, requests: list, warmup: int = 20) -> list[float]:
    for request in requests[:warmup]:
        call(request)
    samples = []
    for request in requests[warmup:]:
        started = time.perf_counter()
        call(request)
        samples.append(time.perf_counter() - started)
    return samples


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--domains", type=int, default=5)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8, 64])
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        exported, names, per_domain = export_model(args.items, args.domains, tmp)
        export_s = time.perf_counter() - started
        serving_root = os.path.join(tmp, "serving")
        push(exported, serving_root, "syncrec")

        def request(batch: int = 1):
            target = str(rng.choice(names))
            domains = rng.choice(names, size=(batch, 20))
            items = np.vectorize(lambda d: f"{d}-{rng.integers(per_domain)}")(domains)
            return items.tolist(), domains.tolist(), [target] * batch

        started = time.perf_counter()
        module = tf.saved_model.load(exported)
        loaded = module.signatures["serving_default"]
        load_s = time.perf_counter() - started
        floor = domain_table_floor(module.scoring_table, per_domain, args.k)

        def in_process(r):
            loaded(
                history_items=tf.constant(r[0]),
                history_domains=tf.constant(r[1]),
                history_length=tf.fill([len(r[0])], len(r[0][0])),
                target_domain=tf.constant(r[2]),
                k=tf.fill([len(r[0])], args.k),
            )["item_ids"].numpy()

        singles = [request() for _ in range(args.requests + 20)]
        first = time.perf_counter()
        in_process(singles[0])
        first_s = time.perf_counter() - first
        latency = {"in-process serving_default (single request)": time_calls(in_process, singles)}
        single_tower = tf.saved_model.load(export_model(args.items, args.domains, tmp, single_towers=True)[0])

        def by_single_tower(r):
            single_tower.signatures["serving_default"](
                history_items=tf.constant(r[0]),
                history_domains=tf.constant(r[1]),
                history_length=tf.fill([len(r[0])], len(r[0][0])),
                target_domain=tf.constant(r[2]),
                k=tf.fill([len(r[0])], args.k),
            )["item_ids"].numpy()

        label = "in-process serving_default (single request), domain served by its single tower"
        latency[label] = time_calls(by_single_tower, singles)
        latency[FLOOR_LABEL] = time_calls(lambda _r: floor(), singles)
        started = time.perf_counter()
        server, port = start_server(serving_root, 0, poll_seconds=0)
        start_s = time.perf_counter() - started
        client = RecommendClient(f"127.0.0.1:{port}", timeout=60)
        stub_call = lambda r: client.stub.Predict(_batch_request(r, args.k), timeout=60)  # noqa: E731
        latency["gRPC PredictionService (loopback, single request)"] = time_calls(stub_call, singles)
        throughput = []
        for batch in args.batches:
            batches = [request(batch) for _ in range(max(10, args.requests // batch) + 5)]
            for path, call in (("in-process", in_process), ("gRPC", stub_call)):
                samples = time_calls(call, batches, warmup=5)
                throughput.append((path, batch, percentiles(samples), batch * len(samples) / sum(samples)))
        server.stop(0)
    print(
        f"{args.items:,} items, {args.domains} domains, r={PIPELINE.embed_dim}, T={ModelConfig.max_len}, "
        f"{PIPELINE.num_blocks} blocks, k={args.k}, history 20 items; "
        f"{args.requests} timed requests after 20 warm-up; export {export_s:.1f} s, load {load_s:.1f} s, first request "
        f"{first_s * 1000:.0f} ms; server start (load + warmup) {start_s:.1f} s; cores: {os.cpu_count()}\n{machine_line()}\n"
    )
    print("| path | p50 ms | p99 ms |")
    print("|---|---:|---:|")
    floor_p50 = percentiles(latency[FLOOR_LABEL])[0]
    for label, samples in latency.items():
        p50, p99 = percentiles(samples)
        print(f"| {label} | {p50:.1f} | {p99:.1f} |")
    ratio = percentiles(latency["in-process serving_default (single request)"])[0] / max(floor_p50, 1e-9)
    print(f"\nin-process single request p50 / floor p50: {ratio:.1f}x (same process, same run)")
    if args.items == SERVING_ITEMS:
        print("\nBefore (recorded in issue #13 with this command, same machine class; not this run):\n")
        print("| path | p50 ms | p99 ms |")
        print("|---|---:|---:|")
        for label, p50, p99 in SERVING_BEFORE:
            print(f"| before: {label} | {p50:.1f} | {p99:.1f} |")
    print("\n| path | batch (one target domain) | p50 ms | p99 ms | requests/s |")
    print("|---|---:|---:|---:|---:|")
    for path, batch, (p50, p99), rate in throughput:
        print(f"| {path} | {batch} | {p50:.1f} | {p99:.1f} | {rate:,.0f} |")
    return 0


def _batch_request(r, k):
    histories = [list(zip(items, domains)) for items, domains in zip(r[0], r[1])]
    return build_batch_request("syncrec", histories, r[2], [k] * len(histories))


if __name__ == "__main__":
    sys.exit(main())

"""Training and evaluation throughput of SyNCRec at the paper's settings (§5.2.3).

    python -m benchmarks.training_benchmark [--max-len 50 128] [--steps 10] [--items 100000] [--set KEY=VALUE ...]

Batches are built by the transform's own Definition-1 code from synthetic histories (5 domains,
like Amazon), so shapes and padding are the real ones. Prints a Markdown table: training
sequences/s and ms/step (compiled train_step, after warm-up), eval users/s (Eq. 19 + 100
candidates each) and peak RSS.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time

import numpy as np

import tensorflow as tf

from benchmarks.machine import machine_line
from benchmarks.reference import TRAINING_BEFORE, TRAINING_MAX_LEN, TRAINING_SETTINGS
from components.sequences import build_example
from schemas.features import PER_DOMAIN_FEATURES
from model_keras.config import ModelConfig, parse_settings
from model_keras.model import SyNCRec


# Settings the benchmark sets from its own flags, because the synthetic batches are built from them.
OWN_FLAGS = {
    "num_items": "--items",
    "num_domains": "--domains",
    "max_len": "--max-len",
    "embed_dim": "--embed-dim",
    "num_experts": "--experts",
    "batch_size": "--batch-size",
}


def cross_experts(num_experts: int) -> int:
    """j = 3 at K = 4 (the default), and always within ACMoE's [1, K-1]."""
    return max(1, min(3, num_experts - 1))


def synthetic_batch(batch_size: int, max_len: int, num_domains: int, items_per_domain: int, rng) -> dict:
    """A batch shaped exactly like model_keras.input_fn's output."""
    rows = []
    for _ in range(batch_size):
        length = int(rng.integers(5, 2 * max_len))
        domains = rng.integers(1, num_domains + 1, size=length + 1)
        items = 2 + (domains - 1) * (items_per_domain + 1) + 1 + rng.integers(0, items_per_domain, size=length + 1)
        events = list(zip(items.tolist(), domains.tolist()))
        rows.append(build_example("u", "train", events[:-1], events[-1], num_domains, max_len))
    batch = {
        name: tf.constant([getattr(r, name) for r in rows], tf.int32)
        for name in ("item", "target_item", "target_domain", "single_index")
    }
    for name in PER_DOMAIN_FEATURES:
        batch[name] = tf.transpose(tf.constant([getattr(r, name) for r in rows], tf.int32), [0, 2, 1])
    batch["label_domain"] = tf.constant([r.label_domain for r in rows], tf.int32)
    return batch


def measure(max_len: int, args) -> dict:
    rng = np.random.default_rng(0)
    tf.keras.utils.set_random_seed(0)
    num_items = 2 + args.domains * (args.items // args.domains + 1)
    ranges = [
        (2 + d * (args.items // args.domains + 1), 2 + (d + 1) * (args.items // args.domains + 1))
        for d in range(args.domains)
    ]
    config = ModelConfig.from_dict(
        {
            "num_items": num_items,
            "num_domains": args.domains,
            "max_len": max_len,
            "embed_dim": args.embed_dim,
            "num_experts": args.experts,
            "num_cross_experts": cross_experts(args.experts),
            "num_blocks": 2,
            "num_heads": 1,
            "batch_size": args.batch_size,
            **args.settings,  # e.g. use_sc_mim=true: the step with SC-MIM's InfoNCE term
        }
    ).validate()
    model = SyNCRec(config, ranges)
    batches = [
        synthetic_batch(args.batch_size, max_len, args.domains, args.items // args.domains, rng) for _ in range(3)
    ]
    model.build_for(batches[0])
    model.compile(optimizer=tf.keras.optimizers.Adam(1e-3))
    train_fn = model.make_train_function()
    iterator = iter(
        tf.data.Dataset.from_tensor_slices({k: tf.stack([b[k] for b in batches]) for k in batches[0]}).repeat()
    )
    for _ in range(2):  # trace + warm-up
        train_fn(iterator)
    started = time.perf_counter()
    for _ in range(args.steps):
        train_fn(iterator)
    step_s = (time.perf_counter() - started) / args.steps

    @tf.function
    def eval_step(items, candidates):
        return model.score(model.user_representation(items), candidates)

    eval_batch = 256
    items = tf.tile(batches[0]["item"], [eval_batch // args.batch_size + 1, 1])[:eval_batch]
    candidates = tf.constant(rng.integers(2, num_items, size=(eval_batch, 100)), tf.int32)
    eval_step(items, candidates)
    started = time.perf_counter()
    for _ in range(args.steps):
        eval_step(items, candidates).numpy()
    eval_s = (time.perf_counter() - started) / args.steps
    return {
        "T": max_len,
        "ms_step": step_s * 1000,
        "seq_s": args.batch_size / step_s,
        "eval_users_s": eval_batch / eval_s,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-len", type=int, nargs="+", default=[50, 128])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--embed-dim", type=int, default=128)
    parser.add_argument("--experts", type=int, default=4)
    parser.add_argument("--domains", type=int, default=5)
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--set", action="append", metavar="KEY=VALUE", help="a model setting, as for training")
    args = parser.parse_args(argv)
    try:
        args.settings = parse_settings(args.set)
        own = sorted(set(args.settings) & set(OWN_FLAGS))
        if own:
            raise ValueError(f"--set {own[0]}: use {OWN_FLAGS[own[0]]} (the benchmark's data is built from it)")
        ModelConfig.from_dict({"num_items": 3, "num_domains": 1, **args.settings}).validate()
    except ValueError as error:
        parser.error(str(error))
    j = args.settings.get("num_cross_experts", cross_experts(args.experts))
    print(
        f"SyNCRec r={args.embed_dim} K={args.experts} j={j} blocks=2 batch={args.batch_size} "
        f"D={args.domains} items={args.items:,}{''.join(f'; {k}={v}' for k, v in args.settings.items())}; "
        f"cores: {os.cpu_count()}, TF {tf.__version__}\n{machine_line()}\n"
    )
    print("| T | train ms/step | train sequences/s | eval users/s (100 candidates) | peak RSS MB |")
    print("|---:|---:|---:|---:|---:|")
    for max_len in args.max_len:
        r = measure(max_len, args)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"| {r['T']} | {r['ms_step']:,.0f} | {r['seq_s']:,.1f} | {r['eval_users_s']:,.0f} | {peak:,.0f} |")
    settings = {name: getattr(args, name) for name in TRAINING_SETTINGS}
    if settings == TRAINING_SETTINGS and TRAINING_MAX_LEN in args.max_len:
        print("\nBefore, at T=50 (recorded in issue #13 with this command, same machine class; not this run):\n")
        print("| code | train ms/step | train sequences/s |")
        print("|---|---:|---:|")
        for code, ms_step, seq_s in TRAINING_BEFORE:
            print(f"| before: {code} | {ms_step:,} | {seq_s:,.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

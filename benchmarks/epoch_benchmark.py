"""Seconds per training epoch on real examples, with plain and with length-sorted batches (`sort_window`).

    python -m benchmarks.epoch_benchmark [--examples DIR] [--sort-windows 0 16] [--epochs 3] [--set KEY=VALUE ...]

DIR is a transform's output (`python -m experiments compare ... --out OUT` writes OUT/examples; ABE's is
runs/exp-abe/examples); without --examples the embedded sample is transformed into a temporary folder. Each
sort_window trains the pipeline's model (the `pipeline` preset, then --set) with model.fit for --epochs epochs from
the same initial weights; the first epoch also traces the step, so the table reports the mean of the others. The
cost of a step follows the batch's padded length (base.trim_to_longest cuts a batch to its longest history), which
the table gives beside the time.
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
from model_keras.config import ModelConfig, parse_settings
from model_keras.input_fn import make_dataset
from model_keras.train import build_model, fit_to_data
from schemas.vocabulary import Vocabulary


def embedded_examples(folder: str) -> str:
    """The embedded sample (the transform's default input) through the transform, into `folder`."""
    from components.transform import TransformConfig, run_transform

    config = TransformConfig(output=os.path.join(folder, "examples"))
    run_transform(config)
    return config.output


def padded_lengths(dataset) -> list[int]:
    """Each batch's longest history: the length the step runs at after trimming."""
    return [int(tf.reduce_max(tf.reduce_sum(tf.cast(b["item"] > 0, tf.int32), axis=-1))) for b in dataset]


def measure(examples: str, settings: dict, sort_window: int, epochs: int) -> dict:
    vocabulary = Vocabulary.load(os.path.join(examples, "vocabulary.json"))
    config = ModelConfig.from_dict({"preset": "pipeline", **settings, "sort_window": sort_window})
    batches = make_dataset(
        examples, "train", vocabulary.num_domains, config.batch_size, shuffle=True, seed=0, sort_window=sort_window
    )
    sample = next(iter(batches))
    fit_to_data(config, vocabulary, sample)
    tf.keras.utils.set_random_seed(0)
    model = build_model(config, vocabulary, sample)
    seconds = []
    timer = tf.keras.callbacks.LambdaCallback(
        on_epoch_begin=lambda epoch, logs: seconds.append(-time.perf_counter()),
        on_epoch_end=lambda epoch, logs: seconds.__setitem__(-1, seconds[-1] + time.perf_counter()),
    )
    model.fit(batches, epochs=epochs, verbose=0, callbacks=[timer])
    lengths = padded_lengths(batches)
    return {"steps": len(lengths), "padded": float(np.mean(lengths)), "first": seconds[0], "epoch": np.mean(seconds[1:])}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", default="", help="a transform's output (default: the embedded sample)")
    parser.add_argument("--sort-windows", type=int, nargs="+", default=[0, 16], help="sort_window values to time")
    parser.add_argument("--epochs", type=int, default=3, help="epochs a setting (the first is not timed)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="model setting")
    args = parser.parse_args(argv)
    if args.epochs < 2:
        parser.error("--epochs must be at least 2: the first epoch traces the step and is not timed")
    try:
        settings = parse_settings(args.set)
        ModelConfig.from_dict({"preset": "pipeline", **settings})
    except ValueError as err:
        parser.error(str(err))
    if args.examples and not os.path.isfile(os.path.join(args.examples, "vocabulary.json")):
        parser.error(f"--examples {args.examples}: no transform output there (run `python -m components.transform`)")
    with tempfile.TemporaryDirectory() as scratch:
        examples = args.examples or embedded_examples(scratch)
        rows = [(window, measure(examples, settings, window, args.epochs)) for window in args.sort_windows]
    base = rows[0][1]["epoch"]
    shown = ", ".join(f"{k}={v}" for k, v in settings.items()) or "the pipeline's defaults"
    print(f"examples: {args.examples or 'the embedded sample'}; model: {shown}; {machine_line()}")
    print(f"| sort_window | steps an epoch | mean padded length | first epoch s | epoch s | vs sort_window={rows[0][0]} |")
    print("|---:|---:|---:|---:|---:|---:|")
    for window, row in rows:
        print(
            f"| {window} | {row['steps']} | {row['padded']:.1f} | {row['first']:.1f} | {row['epoch']:.1f} "
            f"| {row['epoch'] / base:.2f}x |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

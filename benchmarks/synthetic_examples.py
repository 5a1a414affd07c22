"""Synthetic examples written straight from the transform's own Definition-1 code and example codec
(no Beam), for benchmarks that need many users fast."""

from __future__ import annotations

import json
import os

import tensorflow as tf

from components.example_codec import encode_sequence_example
from components.sequences import leave_one_out
from schemas.features import COMPLETION_MARKER
from schemas.vocabulary import Vocabulary


def write_examples(folder: str, users: int, vocab: Vocabulary, rng) -> None:
    """A transform-shaped output (examples of every split, vocabulary, completion marker) without Beam."""
    writers = {
        split: tf.io.TFRecordWriter(os.path.join(folder, split, "part-00000.tfrecord.gz"), options="GZIP")
        for split in ("train", "valid", "test")
        if os.makedirs(os.path.join(folder, split), exist_ok=True) is None
    }
    for user in range(users):
        length = int(rng.integers(5, 50))
        domains = rng.integers(1, vocab.num_domains + 1, size=length)
        events = [
            (int(rng.integers(vocab.domain(int(d)).start + 1, vocab.domain(int(d)).end)), int(d)) for d in domains
        ]
        for example in leave_one_out(f"u{user}", events, vocab.num_domains, 50):
            writers[example.split].write(encode_sequence_example(example))
    for writer in writers.values():
        writer.close()
    vocab.save(os.path.join(folder, "vocabulary.json"))
    with open(os.path.join(folder, COMPLETION_MARKER), "w", encoding="utf-8") as handle:
        json.dump({"users": users, "examples": {"train": users, "valid": users, "test": users}}, handle)

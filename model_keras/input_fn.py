"""tf.data input function: SequenceExample shards -> the padded tensors the model consumes.

The parsing spec is derived from `schemas/sequence_example.pbtxt`, so the writer (the Beam
transform) and the reader cannot drift apart silently. Every feature list has T steps; the
per-domain ones (`single_item`, `single_target`) have D values a step and are returned as
[batch, D, T] so each domain's X^d is one row.
"""

from __future__ import annotations

import os

import tensorflow as tf

from schemas.features import PER_DOMAIN_FEATURES
from schemas.schema_io import SEQUENCE_EXAMPLE_SCHEMA, SEQUENCE_STRUCT, load_schema
from tensorflow_metadata.proto.v0 import schema_pb2


def feature_spec(num_domains: int, schema_path=SEQUENCE_EXAMPLE_SCHEMA) -> tuple[dict, dict]:
    """(context spec, sequence spec) for tf.io.parse_sequence_example."""
    schema = load_schema(schema_path)
    dtypes = {schema_pb2.INT: tf.int64, schema_pb2.BYTES: tf.string, schema_pb2.FLOAT: tf.float32}
    context, sequence = {}, {}
    for feature in schema.feature:
        if feature.name == SEQUENCE_STRUCT:
            for step in feature.struct_domain.feature:
                shape = [num_domains] if step.name in PER_DOMAIN_FEATURES else []
                sequence[step.name] = tf.io.FixedLenSequenceFeature(shape, dtypes[step.type])
        else:
            context[feature.name] = tf.io.FixedLenFeature([], dtypes[feature.type])
    return context, sequence


def parse_batch(
    serialized: tf.Tensor, num_domains: int, specs: tuple[dict, dict] | None = None
) -> dict[str, tf.Tensor]:
    """Parse a batch of serialized SequenceExamples; ints become int32, X^d becomes [B, D, T]."""
    context_spec, sequence_spec = specs or feature_spec(num_domains)
    context, sequence, _ = tf.io.parse_sequence_example(
        serialized, context_features=context_spec, sequence_features=sequence_spec
    )
    features = {**context, **sequence}
    for name in PER_DOMAIN_FEATURES:
        features[name] = tf.transpose(features[name], [0, 2, 1])
    return {k: tf.cast(v, tf.int32) if v.dtype == tf.int64 else v for k, v in features.items()}


def split_files(examples_dir: str, split: str) -> list[str]:
    """The split's shards; FileNotFoundError naming the fix when there are none."""
    files = sorted(tf.io.gfile.glob(os.path.join(examples_dir, split, "*.tfrecord.gz")))  # local paths or gs://
    if not files:
        raise FileNotFoundError(
            f"no {split} shards under {examples_dir}/{split}; run `python -m components.transform` first"
        )
    return files


def make_dataset(
    examples_dir: str,
    split: str,
    num_domains: int,
    batch_size: int,
    shuffle: bool = False,
    seed: int = 0,
    repeat: bool = False,
    shuffle_buffer: int = 10_000,
    sort_window: int = 0,
) -> tf.data.Dataset:
    """Batched, parsed dataset of one split. Keeps the last partial batch: every user counts.

    `sort_window` > 1 (training): the shuffled examples are taken `sort_window` batches at a time, sorted by
    history length within that window, cut into batches and those batches shuffled again. A batch then holds
    histories of similar length, so `base.trim_to_longest` drops most of its padding (on
    amazon-beauty-electronics, histories of 8 to 48 events, a random batch's longest is about 48 and a sorted
    one's about the batch's own length): the same examples an epoch, each once, in far fewer padded steps."""
    files = split_files(examples_dir, split)
    dataset = tf.data.Dataset.from_tensor_slices(files)
    if shuffle:
        dataset = dataset.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.interleave(
        lambda path: tf.data.TFRecordDataset(path, compression_type="GZIP"),
        cycle_length=min(4, len(files)),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )
    if shuffle:
        dataset = dataset.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        dataset = dataset.repeat()
    window = batch_size * sort_window if sort_window > 1 else batch_size
    dataset = dataset.batch(window, drop_remainder=False)
    specs = feature_spec(num_domains)
    dataset = dataset.map(
        lambda s: parse_batch(s, num_domains, specs), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True
    )
    if sort_window > 1:
        dataset = dataset.flat_map(lambda features: _sorted_batches(features, batch_size))
        dataset = dataset.shuffle(sort_window, seed=seed, reshuffle_each_iteration=True)
    return dataset.prefetch(tf.data.AUTOTUNE)


def _sorted_batches(features: dict[str, tf.Tensor], batch_size: int) -> tf.data.Dataset:
    """One parsed window of examples -> batches of `batch_size` in order of history length (ties keep order)."""
    lengths = tf.reduce_sum(tf.cast(features["item"] > 0, tf.int32), axis=-1)
    order = tf.argsort(lengths, stable=True)
    ordered = {name: tf.gather(value, order) for name, value in features.items()}
    return tf.data.Dataset.from_tensor_slices(ordered).batch(batch_size, drop_remainder=False)

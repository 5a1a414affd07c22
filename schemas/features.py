"""Feature names and splits of the written SequenceExamples, read once from the schema.

Every module that writes, validates or parses examples takes the names from here, so a feature
added to `sequence_example.pbtxt` reaches the writer, the validator and the input function
together (the schema test checks the writer against it).
"""

from __future__ import annotations

from schemas.schema_io import SEQUENCE_EXAMPLE_SCHEMA, SEQUENCE_STRUCT, load_schema

SPLITS = ("train", "valid", "test")


def _names() -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """(context features, one-value-a-step feature lists, D-values-a-step feature lists)."""
    schema = load_schema(SEQUENCE_EXAMPLE_SCHEMA)
    context = tuple(f.name for f in schema.feature if f.name != SEQUENCE_STRUCT)
    steps = [f for f in schema.feature if f.name == SEQUENCE_STRUCT][0].struct_domain.feature
    per_step = tuple(f.name for f in steps if f.HasField("value_count") and f.value_count.max == 1)
    per_domain = tuple(f.name for f in steps if not (f.HasField("value_count") and f.value_count.max == 1))
    return context, per_step, per_domain


CONTEXT_FEATURES, STEP_FEATURES, PER_DOMAIN_FEATURES = _names()
SEQUENCE_FEATURES = STEP_FEATURES + PER_DOMAIN_FEATURES
# What training reads from a batch (context features such as user_id are read by BPR-MF and evaluation).
MODEL_FEATURES = ("item", "target_item", "target_domain", "single_item", "single_target", "single_index")
ITEM_FEATURES = ("item", "target_item", "single_item", "single_target")  # hold item ids
DOMAIN_FEATURES = ("domain", "target_domain")  # hold domain ids

# A transform output is complete when this file exists: the transform writes it last, after every
# shard, and removes it first when it replaces an older output.
COMPLETION_MARKER = "stats.json"


def is_url(path: str) -> bool:
    """True for a path with a scheme (gs://, s3://, hdfs://): read through tf.io.gfile, not the os module."""
    return "://" in path


def exists(path: str) -> bool:
    """os.path.exists for local paths, tf.io.gfile.exists for URLs (TensorFlow is imported for URLs only)."""
    import os

    if is_url(path):
        import tensorflow as tf

        return tf.io.gfile.exists(path)
    return os.path.exists(path)


def read_text(path: str) -> str:
    """A whole UTF-8 file, local or on an object store."""
    if is_url(path):
        import tensorflow as tf

        with tf.io.gfile.GFile(path, "r") as handle:
            return handle.read()
    with open(path, encoding="utf-8") as handle:
        return handle.read()


def require_complete_examples(examples_dir: str) -> None:
    """Raise ValueError naming the fix when `examples_dir` is not a finished transform output."""
    if not exists(f"{examples_dir.rstrip('/')}/{COMPLETION_MARKER}"):
        what = (
            "does not exist"
            if not exists(examples_dir)
            else f"has no {COMPLETION_MARKER} (the transform did not finish)"
        )
        raise ValueError(
            f"examples folder {examples_dir} {what}: run `python -m components.transform --output {examples_dir}` first"
        )

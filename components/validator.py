"""ExampleValidator: check written SequenceExamples against schemas/sequence_example.pbtxt.

Reads every example of every split, checks each declared feature is present with the declared
type and length (T steps, D values for the per-domain lists), ids inside the vocabulary, domain
ids inside 1..D, alignment indices inside [-1, T), and the row accounting in stats.json. Any
problem is an anomaly; the report says which feature, how many examples, and one example.
"""

from __future__ import annotations

import json
import os

from google.protobuf import text_format
from tensorflow_metadata.proto.v0 import schema_pb2

from schemas.schema_io import SEQUENCE_EXAMPLE_SCHEMA, SEQUENCE_STRUCT, load_schema
from schemas.features import (
    COMPLETION_MARKER,
    DOMAIN_FEATURES,
    ITEM_FEATURES,
    PER_DOMAIN_FEATURES,
    SPLITS,
    read_text,
    require_complete_examples,
)
from schemas.vocabulary import Vocabulary


class AnomaliesFound(Exception):
    """The examples do not match the schema; str() is the readable report."""


def _records(path: str):
    import tensorflow as tf

    for record in tf.data.TFRecordDataset(path, compression_type="GZIP"):
        yield record.numpy()


class Anomalies:
    """Problems found, by feature: how many examples, the first one, and what is wrong."""

    def __init__(self):
        self.found: dict[str, dict] = {}

    def flag(self, feature: str, description: str, where: str) -> None:
        """Count one problem of `feature`, keeping the first example and its description."""
        entry = self.found.setdefault(feature, {"count": 0, "example": where, "description": description})
        entry["count"] += 1


class ExampleChecker:
    """Checks one SequenceExample against the schema and the vocabulary."""

    def __init__(self, schema, vocab: Vocabulary, anomalies: Anomalies):
        self.vocab, self.anomalies = vocab, anomalies
        self.context = {f.name: f for f in schema.feature if f.name != SEQUENCE_STRUCT}
        self.sequence = {
            f.name: f for f in schema.feature if f.name == SEQUENCE_STRUCT for f in f.struct_domain.feature
        }
        self.max_len = None

    def check(self, example, where: str) -> None:
        """Flag every way `example` breaks the schema or the vocabulary."""
        self._context(example, where)
        lists = example.feature_lists.feature_list
        lengths = {name: len(lists[name].feature) for name in self.sequence if name in lists}
        for name in self.sequence:
            if name not in lists:
                self.anomalies.flag(name, "feature list missing", where)
        if len(set(lengths.values())) > 1:
            self.anomalies.flag(SEQUENCE_STRUCT, f"feature lists have different lengths {lengths}", where)
        length = max(lengths.values(), default=0)
        self.max_len = self.max_len or length
        if length != self.max_len:
            self.anomalies.flag(SEQUENCE_STRUCT, f"length {length} != T={self.max_len}", where)
        for name in lengths:
            self._values(name, lists[name], length, where)

    def _context(self, example, where: str) -> None:
        for name, spec in self.context.items():
            feature = example.context.feature.get(name)
            kind = feature.WhichOneof("kind") if feature is not None else None
            expected = "bytes_list" if spec.type == schema_pb2.BYTES else "int64_list"
            if kind != expected:
                self.anomalies.flag(name, f"context feature missing or not {expected}", where)
            elif (
                spec.HasField("string_domain")
                and getattr(feature, kind).value[0].decode() not in spec.string_domain.value
            ):
                self.anomalies.flag(name, f"value outside {list(spec.string_domain.value)}", where)

    def _values(self, name: str, feature_list, length: int, where: str) -> None:
        width = self.vocab.num_domains if name in PER_DOMAIN_FEATURES else 1
        values = [v for f in feature_list.feature for v in f.int64_list.value]
        if any(len(f.int64_list.value) != width for f in feature_list.feature):
            self.anomalies.flag(name, f"each step must hold {width} int64 value(s)", where)
        elif name in ITEM_FEATURES and values and not 0 <= min(values) <= max(values) < self.vocab.num_items:
            self.anomalies.flag(name, f"item id outside the vocabulary [0, {self.vocab.num_items})", where)
        elif name in DOMAIN_FEATURES and values and not 0 <= min(values) <= max(values) <= self.vocab.num_domains:
            self.anomalies.flag(name, f"domain id outside [0, {self.vocab.num_domains}]", where)
        elif name == "single_index" and values and not -1 <= min(values) <= max(values) < length:
            self.anomalies.flag(name, f"alignment index outside [-1, {length})", where)


def _check_stats(
    stats: dict, counts: dict, examples_dir: str, max_rejected_fraction: float, anomalies: Anomalies
) -> None:
    """The row accounting of stats.json, the rejection rate, and one example per user in every split."""
    if len(set(counts.values())) > 1:
        anomalies.flag("splits", f"splits hold different numbers of users {counts}", examples_dir)
    if not any(counts.values()):
        anomalies.flag("splits", "no example was written: is the input empty or were all rows rejected?", examples_dir)
    if stats["rows_read"] != stats["rows_accepted"] + stats["rows_rejected"]:
        anomalies.flag("stats", "rows_read != rows_accepted + rows_rejected", "stats.json")
    if stats["rows_read"] and stats["rows_rejected"] / stats["rows_read"] > max_rejected_fraction:
        anomalies.flag(
            "stats",
            f"{stats['rows_rejected']} of {stats['rows_read']} rows rejected (> {max_rejected_fraction:.0%}): "
            f"{stats['rejected_by_reason']}; see quarantine/",
            "stats.json",
        )


def validate_examples(
    examples_dir: str, schema_path: str = str(SEQUENCE_EXAMPLE_SCHEMA), max_rejected_fraction: float = 0.5
) -> dict:
    """Every example of every split against the schema, and the accounting in stats.json.

    Returns {"anomalies": {feature: {"count", "example", "description"}}, "examples": n per split, "max_len": T}.
    Raises ValueError naming the fix when the folder is not a finished transform output."""
    import tensorflow as tf
    from tensorflow.core.example import example_pb2

    require_complete_examples(examples_dir)
    vocab = Vocabulary.load(os.path.join(examples_dir, "vocabulary.json"))
    stats = json.loads(read_text(os.path.join(examples_dir, COMPLETION_MARKER)))
    anomalies = Anomalies()
    checker = ExampleChecker(load_schema(schema_path), vocab, anomalies)
    counts = {}
    for split in SPLITS:
        counts[split] = 0
        for path in sorted(tf.io.gfile.glob(os.path.join(examples_dir, split, "*.tfrecord.gz"))):
            for raw in _records(path):
                counts[split] += 1
                example = example_pb2.SequenceExample.FromString(raw)
                user = example.context.feature["user_id"].bytes_list.value[:1]
                checker.check(
                    example, f"{split} example of user {user[0].decode() if user else '?'} in {os.path.basename(path)}"
                )
    _check_stats(stats, counts, examples_dir, max_rejected_fraction, anomalies)
    return {"anomalies": anomalies.found, "examples": counts, "max_len": checker.max_len}


def format_report(result: dict) -> str:
    """The anomalies as the readable report the run stops with."""
    if not result["anomalies"]:
        return f"no anomalies ({result['examples']})"
    lines = ["ExampleAnomalies: the examples do not match schemas/sequence_example.pbtxt"]
    for feature, entry in result["anomalies"].items():
        lines.append(f"- {feature}: {entry['description']} ({entry['count']} example(s); first: {entry['example']})")
    return "\n".join(lines)


def write_schema_copy(target_dir: str, schema_path: str = str(SEQUENCE_EXAMPLE_SCHEMA)) -> str:
    """ImportSchemaGen: the curated schema, re-serialised (so a syntax error fails here, loudly)."""
    os.makedirs(target_dir, exist_ok=True)
    out = os.path.join(target_dir, "schema.pbtxt")
    with open(out, "w", encoding="utf-8") as handle:
        handle.write(text_format.MessageToString(load_schema(schema_path)))
    return out

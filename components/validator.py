"""ExampleValidator: check written SequenceExamples against schemas/sequence_example.pbtxt.

Reads every example of every split, checks each declared feature is present with the declared
type and length (T steps, D values for the per-domain lists), ids inside the vocabulary, domain
ids inside 1..D, alignment indices inside [-1, T), and the row accounting in stats.json. Any
problem is an anomaly; the report says which feature, how many examples, and one example.
"""
from __future__ import annotations

import glob
import json
import os
from collections import defaultdict

from google.protobuf import text_format
from tensorflow_metadata.proto.v0 import schema_pb2

from schemas.schema_io import SEQUENCE_EXAMPLE_SCHEMA, SEQUENCE_STRUCT, load_schema
from schemas.features import DOMAIN_FEATURES, ITEM_FEATURES, PER_DOMAIN_FEATURES, SPLITS
from schemas.vocabulary import Vocabulary



class AnomaliesFound(Exception):
    """The examples do not match the schema; str() is the readable report."""


def _records(path: str):
    import tensorflow as tf

    for record in tf.data.TFRecordDataset(path, compression_type="GZIP"):
        yield record.numpy()


def validate_examples(examples_dir: str, schema_path: str = str(SEQUENCE_EXAMPLE_SCHEMA), max_rejected_fraction: float = 0.5) -> dict:
    """{"anomalies": {feature: {"count", "example", "description"}}, "examples": n per split}."""
    from tensorflow.core.example import example_pb2

    schema = load_schema(schema_path)
    vocab = Vocabulary.load(os.path.join(examples_dir, "vocabulary.json"))
    with open(os.path.join(examples_dir, "stats.json"), encoding="utf-8") as handle:
        stats = json.load(handle)
    context = {f.name: f for f in schema.feature if f.name != SEQUENCE_STRUCT}
    sequence = {f.name: f for f in schema.feature if f.name == SEQUENCE_STRUCT for f in f.struct_domain.feature}
    anomalies: dict[str, dict] = defaultdict(lambda: {"count": 0, "example": "", "description": ""})
    counts = {}
    max_len = None

    def flag(feature, description, where):
        entry = anomalies[feature]
        entry["count"] += 1
        if not entry["example"]:
            entry["example"], entry["description"] = where, description

    for split in SPLITS:
        counts[split] = 0
        for path in sorted(glob.glob(os.path.join(examples_dir, split, "*.tfrecord.gz"))):
            for raw in _records(path):
                counts[split] += 1
                ex = example_pb2.SequenceExample.FromString(raw)
                user = ex.context.feature["user_id"].bytes_list.value[:1]
                where = f"{split} example of user {user[0].decode() if user else '?'} in {os.path.basename(path)}"
                for name, spec in context.items():
                    feature = ex.context.feature.get(name)
                    kind = feature.WhichOneof("kind") if feature is not None else None
                    expected = "bytes_list" if spec.type == schema_pb2.BYTES else "int64_list"
                    if kind != expected:
                        flag(name, f"context feature missing or not {expected}", where)
                    elif spec.HasField("string_domain") and getattr(feature, kind).value[0].decode() not in spec.string_domain.value:
                        flag(name, f"value outside {list(spec.string_domain.value)}", where)
                lists = ex.feature_lists.feature_list
                lengths = {name: len(lists[name].feature) for name in sequence if name in lists}
                for name in sequence:
                    if name not in lists:
                        flag(name, "feature list missing", where)
                if len(set(lengths.values())) > 1:
                    flag("##SEQUENCE##", f"feature lists have different lengths {lengths}", where)
                length = max(lengths.values(), default=0)
                max_len = max_len or length
                if length != max_len:
                    flag("##SEQUENCE##", f"length {length} != T={max_len}", where)
                for name in sequence:
                    if name not in lists:
                        continue
                    width = vocab.num_domains if name in PER_DOMAIN_FEATURES else 1
                    values = [v for f in lists[name].feature for v in f.int64_list.value]
                    if any(len(f.int64_list.value) != width for f in lists[name].feature):
                        flag(name, f"each step must hold {width} int64 value(s)", where)
                    elif name in ITEM_FEATURES and values and not 0 <= min(values) <= max(values) < vocab.num_items:
                        flag(name, f"item id outside the vocabulary [0, {vocab.num_items})", where)
                    elif name in DOMAIN_FEATURES and values and not 0 <= min(values) <= max(values) <= vocab.num_domains:
                        flag(name, f"domain id outside [0, {vocab.num_domains}]", where)
                    elif name == "single_index" and values and not -1 <= min(values) <= max(values) < length:
                        flag(name, f"alignment index outside [-1, {length})", where)
    if len(set(counts.values())) > 1:
        flag("splits", f"splits hold different numbers of users {counts}", examples_dir)
    if not any(counts.values()):
        flag("splits", "no example was written: is the input empty or were all rows rejected?", examples_dir)
    if stats["rows_read"] != stats["rows_accepted"] + stats["rows_rejected"]:
        flag("stats", "rows_read != rows_accepted + rows_rejected", "stats.json")
    if stats["rows_read"] and stats["rows_rejected"] / stats["rows_read"] > max_rejected_fraction:
        flag("stats", f"{stats['rows_rejected']} of {stats['rows_read']} rows rejected (> {max_rejected_fraction:.0%}): "
                      f"{stats['rejected_by_reason']}; see quarantine/", "stats.json")
    return {"anomalies": dict(anomalies), "examples": counts, "max_len": max_len}


def format_report(result: dict) -> str:
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

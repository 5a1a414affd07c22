"""Load the curated schemas in `schemas/` (tensorflow_metadata text protos).

The schemas are the single source of truth for what a raw log row and a written
SequenceExample look like; the transform validates rows against the first, and the model's
input function derives its parsing spec from the second.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

from google.protobuf import text_format
from tensorflow_metadata.proto.v0 import schema_pb2

SCHEMA_DIR = Path(__file__).resolve().parent
RAW_LOG_SCHEMA = SCHEMA_DIR / "raw_log.pbtxt"
SEQUENCE_EXAMPLE_SCHEMA = SCHEMA_DIR / "sequence_example.pbtxt"
SEQUENCE_STRUCT = "##SEQUENCE##"


def load_schema(path: str | Path) -> schema_pb2.Schema:
    """Parse a text-format Schema; raise ValueError naming the file on a syntax error."""
    path = Path(path)
    try:
        return text_format.Parse(path.read_text(encoding="utf-8"), schema_pb2.Schema())
    except (OSError, text_format.ParseError) as err:
        raise ValueError(f"cannot read schema {path}: {err}") from err


@dataclass(frozen=True)
class FieldRule:
    """What one raw-log field must satisfy, read from a schema feature."""

    name: str
    kind: str  # "bytes" or "int"
    required: bool
    max_bytes: int | None = None
    int_min: int | None = None
    int_max: int | None = None
    allowed: frozenset[str] | None = None


def _rule_from_feature(feature: schema_pb2.Feature) -> FieldRule:
    max_bytes = None
    for tag in feature.annotation.tag:
        if tag.startswith("max_bytes="):
            max_bytes = int(tag.split("=", 1)[1])
    int_min = feature.int_domain.min if feature.HasField("int_domain") else None
    int_max = feature.int_domain.max if feature.HasField("int_domain") else None
    allowed = None
    if feature.HasField("string_domain") and feature.string_domain.value:
        allowed = frozenset(feature.string_domain.value)
    kind = "int" if feature.type == schema_pb2.INT else "bytes"
    return FieldRule(
        name=feature.name,
        kind=kind,
        required=feature.presence.min_count >= 1 or feature.presence.min_fraction >= 1.0,
        max_bytes=max_bytes,
        int_min=int_min,
        int_max=int_max,
        allowed=allowed,
    )


@functools.lru_cache(maxsize=8)
def raw_log_rules(path: str = str(RAW_LOG_SCHEMA)) -> tuple[FieldRule, ...]:
    """The raw-log field rules, in schema order."""
    return tuple(_rule_from_feature(f) for f in load_schema(path).feature)


def sequence_feature_names(path: str | Path = SEQUENCE_EXAMPLE_SCHEMA) -> tuple[list[str], list[str]]:
    """(context feature names, feature-list names) declared by the SequenceExample schema."""
    schema = load_schema(path)
    context, sequence = [], []
    for feature in schema.feature:
        if feature.name == SEQUENCE_STRUCT:
            sequence = [f.name for f in feature.struct_domain.feature]
        else:
            context.append(feature.name)
    return context, sequence

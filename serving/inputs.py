"""Request inputs to arrays, checked against the signature before anything is materialised.

A TensorProto declares its shape apart from its values, and TensorFlow fills a short value list by
repeating the last value: a 4 KB request declaring [512, 2048] strings with one 4,000-byte value would
expand to ~4 GiB. So every input must carry exactly as many values as its shape declares, dimensions are
bounded by LIMITS, and the bytes an input would expand to are bounded too, all before a tensor is built.
The REST API's JSON goes through the same checks once it is an array.
"""

from __future__ import annotations

import base64
import math

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import types_pb2

from serving.errors import BadRequest

# The most a request may ask for: rows in a batch, values in a row (history length, candidates), bytes
# of one input once expanded.
LIMITS = {"batch": 512, "row": 2048, "bytes": 64 << 20}
VALUE_FIELDS = {
    types_pb2.DT_STRING: "string_val",
    types_pb2.DT_INT32: "int_val",
    types_pb2.DT_INT64: "int64_val",
    types_pb2.DT_FLOAT: "float_val",
}


def check_dims(key: str, dims: list[int], spec) -> None:
    """Rank as the signature declares, no negative size, rows and row length within LIMITS."""
    if spec.shape.rank is not None and len(dims) != spec.shape.rank:
        raise BadRequest(f"input {key!r} must have rank {spec.shape.rank} (shape {spec.shape}), got shape {dims}")
    if any(d < 0 for d in dims):
        raise BadRequest(f"input {key!r} has a negative dimension {dims}")
    if dims and dims[0] > LIMITS["batch"]:
        raise BadRequest(f"input {key!r} has {dims[0]} rows; at most {LIMITS['batch']} a request (split the batch)")
    if len(dims) > 1 and dims[1] > LIMITS["row"]:
        raise BadRequest(f"input {key!r} has {dims[1]} values a row; at most {LIMITS['row']}")


def check_declared_shape(key: str, proto, spec) -> None:
    """Refuse a TensorProto of the wrong rank or dtype, too large, or whose value count differs from its shape."""
    if proto.tensor_shape.unknown_rank:
        raise BadRequest(f"input {key!r} must declare its shape")
    dims = [d.size for d in proto.tensor_shape.dim]
    check_dims(key, dims, spec)
    if proto.dtype != spec.dtype.as_datatype_enum:
        raise BadRequest(f"input {key!r} must be {spec.dtype.name} of shape {spec.shape}")
    count = math.prod(dims)
    if proto.tensor_content:
        item = max(tf.dtypes.as_dtype(proto.dtype).size, 1)
        given, expanded = len(proto.tensor_content) // item, len(proto.tensor_content)
    else:
        values = getattr(proto, VALUE_FIELDS.get(proto.dtype, "string_val"))
        given = len(values)
        widest = max((len(v) for v in values), default=0) if proto.dtype == types_pb2.DT_STRING else 8
        expanded = count * widest
    if given != count:
        raise BadRequest(
            f"input {key!r} declares shape {dims} ({count} values) but carries {given}: send every value "
            "(a shorter list is not repeated to fill the shape)"
        )
    if expanded > LIMITS["bytes"]:
        raise BadRequest(f"input {key!r} would take {expanded:,} bytes; at most {LIMITS['bytes']:,} a request")


def decode_proto(key: str, proto, spec) -> np.ndarray:
    """One TensorProto input as an array of the signature's dtype (checked first)."""
    check_declared_shape(key, proto, spec)
    try:
        return np.asarray(tf.make_ndarray(proto))
    except Exception as err:  # noqa: BLE001 (any malformed TensorProto)
        raise BadRequest(f"input {key!r} is not a valid {spec.dtype.name} tensor: {err}") from err


def _json_value(key: str, value, dtype):
    """A JSON leaf as TF Serving reads it: strings as UTF-8 (or {"b64": ...}), numbers as numbers."""
    if dtype == tf.string:
        if isinstance(value, dict) and set(value) == {"b64"}:
            try:
                return base64.b64decode(value["b64"], validate=True)
            except (ValueError, TypeError) as err:
                raise BadRequest(f"input {key!r} has an invalid b64 value") from err
        if not isinstance(value, str):
            raise BadRequest(f"input {key!r} must hold strings, got {type(value).__name__}")
        return value.encode("utf-8")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BadRequest(f"input {key!r} must hold numbers, got {type(value).__name__}")
    if dtype.is_integer and not float(value).is_integer():
        raise BadRequest(f"input {key!r} must hold whole numbers, got {value}")
    return value


def decode_json(key: str, value, spec) -> np.ndarray:
    """A nested JSON list as an array of the signature's dtype; ragged lists are refused."""
    dims, probe = [], value
    while isinstance(probe, list):
        dims.append(len(probe))
        probe = probe[0] if probe else None
    check_dims(key, dims, spec)

    def leaves(node, depth):
        if depth == len(dims):
            if isinstance(node, list):
                raise BadRequest(f"input {key!r} is ragged: every row must have the same length")
            yield _json_value(key, node, spec.dtype)
            return
        if not isinstance(node, list) or len(node) != dims[depth]:
            raise BadRequest(f"input {key!r} is ragged: every row must have the same length")
        for child in node:
            yield from leaves(child, depth + 1)

    flat = list(leaves(value, 0))
    array = np.array(flat, dtype=object if spec.dtype == tf.string else spec.dtype.as_numpy_dtype)
    return array.reshape(dims)

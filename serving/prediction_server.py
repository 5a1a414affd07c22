"""A PredictionService (tensorflow_serving.apis) server over <serving_root>/<model>/<version>/.

For local development and tests only: production uses `tensorflow_model_server` (TF Serving) on
the same folder and protocol, e.g.

    docker run -p 8500:8500 -v $ROOT/serving:/models tensorflow/serving \\
        --model_config_file=/models/models.config --enable_batching \\
        --batching_parameters_file=/models/batching_parameters.txt

Here: `python -m serving.prediction_server --serving-root runs/local/serving --port 8500`.
Like TF Serving it serves the latest version of each model found under the serving root, loads and
warms every version (replaying assets.extra/tf_serving_warmup_requests) before it takes traffic,
and polls the folder for newly pushed versions. Model names in requests are looked up among the
models found, never joined into paths. Every request's declared shapes are checked against LIMITS
before any tensor is built; bad requests get INVALID_ARGUMENT naming the problem, unknown models
NOT_FOUND, never a crash.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import sys
import threading
from concurrent import futures

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow loads: its start-up chatter is not for users

import grpc  # noqa: E402
import tensorflow as tf  # noqa: E402
from tensorflow.core.framework import types_pb2  # noqa: E402
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    predict_pb2,
    prediction_log_pb2,  # noqa: E402
    prediction_service_pb2_grpc,
)

DEFAULT_PORT = 8500
MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")
# The most a request may ask for: rows in a batch, values in a row (history length, candidates).
LIMITS = {"batch": 512, "row": 2048}
VALUE_FIELDS = {
    types_pb2.DT_STRING: "string_val",
    types_pb2.DT_INT32: "int_val",
    types_pb2.DT_INT64: "int64_val",
    types_pb2.DT_FLOAT: "float_val",
}


class BadRequest(Exception):
    """The request cannot be served; str() names the problem and the fix."""


def readable_error(err: Exception) -> str:
    """The user-facing part of a TensorFlow error: an assertion's own message when there is one."""
    message = getattr(err, "message", str(err))
    match = re.search(r"assertion failed: \[(.*?)\s*\] \[", message) or re.search(
        r"assertion failed: \[(.*?)\s*\]", message
    )
    if match:
        return match.group(1).rstrip(". ")
    lines = [line for line in message.strip().splitlines() if line.strip() and "Graph execution error" not in line]
    return lines[0].strip() if lines else "the model could not run this request"


def check_declared_shape(key: str, proto, spec) -> None:
    """Refuse a TensorProto whose declared shape is of the wrong rank, too large, or inconsistent with
    the values it carries, before anything is materialised (a 160-byte request may declare 5M strings)."""
    if proto.tensor_shape.unknown_rank:
        raise BadRequest(f"input {key!r} must declare its shape")
    dims = [d.size for d in proto.tensor_shape.dim]
    if spec.shape.rank is not None and len(dims) != spec.shape.rank:
        raise BadRequest(f"input {key!r} must have rank {spec.shape.rank} (shape {spec.shape}), got shape {dims}")
    if any(d < 0 for d in dims):
        raise BadRequest(f"input {key!r} has a negative dimension {dims}")
    if dims and dims[0] > LIMITS["batch"]:
        raise BadRequest(f"input {key!r} has {dims[0]} rows; at most {LIMITS['batch']} a request (split the batch)")
    if len(dims) > 1 and dims[1] > LIMITS["row"]:
        raise BadRequest(f"input {key!r} has {dims[1]} values a row; at most {LIMITS['row']}")
    if proto.dtype != spec.dtype.as_datatype_enum:
        raise BadRequest(f"input {key!r} must be {spec.dtype.name} of shape {spec.shape}")
    count = math.prod(dims)
    given = (
        len(proto.tensor_content) // max(tf.dtypes.as_dtype(proto.dtype).size, 1)
        if proto.tensor_content
        else len(getattr(proto, VALUE_FIELDS.get(proto.dtype, "string_val")))
    )
    if given > count or (given == 0 and count > 0):
        raise BadRequest(f"input {key!r} declares {count} values but carries {given}")


class ServedModel:
    """One loaded version with its signatures."""

    def __init__(self, name: str, version: int, path: str):
        self.name, self.version, self.path = name, version, path
        self.loaded = tf.saved_model.load(path)
        self.signatures = self.loaded.signatures

    def warm_up(self) -> int:
        """Replay the version's warmup requests (as TF Serving does); returns how many ran."""
        path = os.path.join(self.path, WARMUP_FILE)
        count = 0
        if os.path.exists(path):
            for record in tf.data.TFRecordDataset(path):
                request = prediction_log_pb2.PredictionLog.FromString(record.numpy()).predict_log.request
                run_signature(self, request)
                count += 1
        return count


def run_signature(model: ServedModel, request) -> dict:
    """Check a PredictRequest against the signature, then run it; BadRequest for anything wrong."""
    name = request.model_spec.signature_name or "serving_default"
    if name not in model.signatures:
        raise BadRequest(f"no signature {name!r}; available: {sorted(model.signatures)}")
    signature = model.signatures[name]
    expected = signature.structured_input_signature[1]
    missing, extra = sorted(set(expected) - set(request.inputs)), sorted(set(request.inputs) - set(expected))
    if missing or extra:
        raise BadRequest(f"signature {name!r} takes inputs {sorted(expected)}; missing {missing}, unexpected {extra}")
    inputs = {}
    for key, spec in expected.items():
        check_declared_shape(key, request.inputs[key], spec)
        try:
            inputs[key] = tf.constant(tf.make_ndarray(request.inputs[key]), dtype=spec.dtype)
        except Exception as err:  # noqa: BLE001 (any malformed TensorProto)
            raise BadRequest(f"input {key!r} is not a valid {spec.dtype.name} tensor: {err}") from err
    try:
        return signature(**inputs)
    except (tf.errors.InvalidArgumentError, ValueError) as err:
        raise BadRequest(readable_error(err)) from err


class ModelRepository:
    """The latest version of every model under the serving root, loaded and warmed; refreshed by `poll`."""

    def __init__(self, serving_root: str):
        self.serving_root = serving_root
        self._served: dict[str, ServedModel] = {}
        self._lock = threading.Lock()
        self.poll()

    def found_versions(self) -> dict[str, int]:
        """name -> latest version, for every model folder with a safe name and a numeric version."""
        found = {}
        for name in sorted(os.listdir(self.serving_root)) if os.path.isdir(self.serving_root) else []:
            folder = os.path.join(self.serving_root, name)
            if MODEL_NAME.fullmatch(name) and os.path.isdir(folder):
                numbers = [
                    int(v)
                    for v in os.listdir(folder)
                    if v.isdigit() and os.path.isfile(os.path.join(folder, v, "saved_model.pb"))
                ]
                if numbers:
                    found[name] = max(numbers)
        return found

    def poll(self) -> list[str]:
        """Load and warm any newer version, then swap it in (in-flight requests finish on the old one)."""
        changed = []
        for name, version in self.found_versions().items():
            current = self._served.get(name)
            if current is None or current.version != version:
                model = ServedModel(name, version, os.path.join(self.serving_root, name, str(version)))
                model.warm_up()
                with self._lock:
                    self._served[name] = model
                changed.append(f"{name}/{version}")
        return changed

    def get(self, name: str, version: int | None = None) -> ServedModel:
        """The served version of a model; KeyError naming what is served."""
        with self._lock:
            model = self._served.get(name)
            served = sorted(self._served)
        if model is None:
            raise KeyError(f"model {name!r} is not served; served models: {served}")
        if version and version != model.version:
            raise KeyError(f"model {name!r} version {version} is not served (serving version {model.version})")
        return model


class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    """TF Serving's Predict and GetModelMetadata over the repository's models."""

    def __init__(self, repository: ModelRepository):
        self.repository = repository

    def _model(self, spec, context) -> ServedModel:
        try:
            return self.repository.get(spec.name, spec.version.value if spec.HasField("version") else None)
        except KeyError as err:
            context.abort(grpc.StatusCode.NOT_FOUND, err.args[0])

    def Predict(self, request, context):  # noqa: N802 (gRPC method name)
        model = self._model(request.model_spec, context)
        try:
            outputs = run_signature(model, request)
        except BadRequest as err:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(err))
        response = predict_pb2.PredictResponse()
        response.model_spec.name = model.name
        response.model_spec.signature_name = request.model_spec.signature_name or "serving_default"
        response.model_spec.version.value = model.version
        for key, value in outputs.items():
            response.outputs[key].CopyFrom(tf.make_tensor_proto(value.numpy()))
        return response

    def GetModelMetadata(self, request, context):  # noqa: N802
        model = self._model(request.model_spec, context)
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        response.model_spec.name = model.name
        response.model_spec.version.value = model.version
        signature_map = get_model_metadata_pb2.SignatureDefMap()
        for name, fn in model.signatures.items():
            signature_map.signature_def[name].method_name = "tensorflow/serving/predict"
            for key, spec in fn.structured_input_signature[1].items():
                signature_map.signature_def[name].inputs[key].dtype = spec.dtype.as_datatype_enum
            for key, spec in fn.structured_outputs.items():
                signature_map.signature_def[name].outputs[key].dtype = spec.dtype.as_datatype_enum
        response.metadata["signature_def"].Pack(signature_map)
        return response


class Poller(threading.Thread):
    """Picks up newly pushed versions every `seconds` (TF Serving's --file_system_poll_wait_seconds)."""

    def __init__(self, repository: ModelRepository, seconds: float):
        super().__init__(daemon=True)
        self.repository, self.seconds, self.stopping = repository, seconds, threading.Event()

    def run(self):
        while not self.stopping.wait(self.seconds):
            try:
                for loaded in self.repository.poll():
                    print(f"now serving {loaded}", flush=True)
            except Exception as err:  # noqa: BLE001 (a half-pushed or broken version must not stop serving)
                print(f"poll: {type(err).__name__}: {err}", file=sys.stderr, flush=True)


def start_server(
    serving_root: str, port: int = DEFAULT_PORT, host: str = "127.0.0.1", workers: int = 4, poll_seconds: float = 5.0
) -> tuple[grpc.Server, int]:
    """Load and warm the served models, then start serving (background threads); returns (server, bound port).
    Port 0 picks a free one. The server takes no request before every model is warm."""
    repository = ModelRepository(serving_root)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers))
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(PredictionService(repository), server)
    bound = server.add_insecure_port(f"{host}:{port}")
    if bound == 0:
        raise OSError(f"cannot listen on {host}:{port}")
    server.start()
    if poll_seconds > 0:
        poller = Poller(repository, poll_seconds)
        poller.start()
        server.poller = poller
    return server, bound


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m serving.prediction_server", description=__doc__.splitlines()[0])
    parser.add_argument("--serving-root", required=True, help="the pipeline's serving folder (ROOT/serving)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--poll-seconds", type=float, default=5.0, help="how often to look for new versions (0: never)")
    args = parser.parse_args(argv)
    if not os.path.isdir(args.serving_root):
        print(f"error: {args.serving_root} is not a folder; run `python -m pipeline run-local` first", file=sys.stderr)
        return 2
    try:
        server, port = start_server(args.serving_root, args.port, args.host, poll_seconds=args.poll_seconds)
    except OSError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"PredictionService on {args.host}:{port} serving {args.serving_root} (Ctrl-C stops)", flush=True)
    try:
        server.wait_for_termination()
    except KeyboardInterrupt:
        server.stop(0)
    return 0


if __name__ == "__main__":
    sys.exit(main())

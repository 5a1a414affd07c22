"""A PredictionService (tensorflow_serving.apis) server over <serving_root>/<model>/<version>/.

For local development and tests only: production uses `tensorflow_model_server` (TF Serving)
on the same folder and protocol, e.g.

    docker run -p 8500:8500 -v $ROOT/serving:/models tensorflow/serving --model_config_file=/models/models.config

Here: `python -m serving.prediction_server --serving-root runs/local/serving --port 8500`.
Serves Predict and GetModelMetadata for the highest version of each model (or the one asked for);
bad requests get INVALID_ARGUMENT, unknown models NOT_FOUND, never a crash.
"""
from __future__ import annotations

import argparse
import os
import re
import sys
import threading
from concurrent import futures

import grpc
import tensorflow as tf
from tensorflow_serving.apis import get_model_metadata_pb2, model_pb2, predict_pb2, prediction_service_pb2_grpc
from tensorflow_serving.apis import get_model_status_pb2  # noqa: F401  (keeps the apis package complete)

DEFAULT_PORT = 8500


def readable_error(err: Exception) -> str:
    """The user-facing part of a TensorFlow error: an assertion's own message when there is one."""
    message = getattr(err, "message", str(err))
    match = re.search(r"assertion failed: \[(.*?)\s*\]", message)
    return match.group(1).rstrip(". ") if match else message.strip().splitlines()[0]


class ModelRepository:
    """Loads versions lazily and keeps them; picks up newly pushed versions."""

    def __init__(self, serving_root: str):
        self.serving_root = serving_root
        self._loaded: dict[tuple[str, int], object] = {}
        self._lock = threading.Lock()

    def versions(self, name: str) -> list[int]:
        folder = os.path.join(self.serving_root, name)
        return sorted(int(v) for v in os.listdir(folder) if v.isdigit()) if os.path.isdir(folder) else []

    def get(self, name: str, version: int | None = None):
        available = self.versions(name)
        if not available:
            raise KeyError(f"model {name!r} not found under {self.serving_root}")
        chosen = version if version else available[-1]
        if chosen not in available:
            raise KeyError(f"model {name!r} has no version {chosen} (available: {available})")
        with self._lock:
            if (name, chosen) not in self._loaded:
                self._loaded[(name, chosen)] = tf.saved_model.load(os.path.join(self.serving_root, name, str(chosen)))
        return chosen, self._loaded[(name, chosen)]


class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, repository: ModelRepository):
        self.repository = repository

    def _model(self, spec, context):
        try:
            return self.repository.get(spec.name, spec.version.value if spec.HasField("version") else None)
        except KeyError as err:
            context.abort(grpc.StatusCode.NOT_FOUND, err.args[0])

    def Predict(self, request, context):  # noqa: N802 (gRPC method name)
        version, model = self._model(request.model_spec, context)
        name = request.model_spec.signature_name or "serving_default"
        if name not in model.signatures:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"no signature {name!r}; available: {sorted(model.signatures)}")
        signature = model.signatures[name]
        expected = signature.structured_input_signature[1]
        missing = sorted(set(expected) - set(request.inputs))
        extra = sorted(set(request.inputs) - set(expected))
        if missing or extra:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"signature {name!r} takes inputs {sorted(expected)}; missing {missing}, unexpected {extra}")
        inputs = {}
        for key, spec in expected.items():
            try:
                value = tf.constant(tf.make_ndarray(request.inputs[key]))
            except Exception as err:  # malformed TensorProto
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"input {key!r} is not a valid tensor: {err}")
            if value.dtype != spec.dtype or not spec.shape.is_compatible_with(value.shape):
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"input {key!r} must be {spec.dtype.name} of shape {spec.shape}, got {value.dtype.name} {value.shape}")
            inputs[key] = value
        try:
            outputs = signature(**inputs)
        except (tf.errors.InvalidArgumentError, ValueError) as err:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, readable_error(err))
        response = predict_pb2.PredictResponse()
        response.model_spec.CopyFrom(model_pb2.ModelSpec(name=request.model_spec.name, signature_name=name))
        response.model_spec.version.value = version
        for key, value in outputs.items():
            response.outputs[key].CopyFrom(tf.make_tensor_proto(value.numpy()))
        return response

    def GetModelMetadata(self, request, context):  # noqa: N802
        version, model = self._model(request.model_spec, context)
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        response.model_spec.name = request.model_spec.name
        response.model_spec.version.value = version
        signature_map = get_model_metadata_pb2.SignatureDefMap()
        for name, fn in model.signatures.items():
            signature_map.signature_def[name].method_name = "tensorflow/serving/predict"
            for key, spec in fn.structured_input_signature[1].items():
                signature_map.signature_def[name].inputs[key].dtype = spec.dtype.as_datatype_enum
            for key, spec in fn.structured_outputs.items():
                signature_map.signature_def[name].outputs[key].dtype = spec.dtype.as_datatype_enum
        response.metadata["signature_def"].Pack(signature_map)
        return response


def start_server(serving_root: str, port: int = DEFAULT_PORT, host: str = "127.0.0.1", workers: int = 4) -> tuple[grpc.Server, int]:
    """Start serving in background threads; returns (server, bound port). Port 0 picks a free one."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers))
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(PredictionService(ModelRepository(serving_root)), server)
    bound = server.add_insecure_port(f"{host}:{port}")
    if bound == 0:
        raise OSError(f"cannot listen on {host}:{port}")
    server.start()
    return server, bound


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m serving.prediction_server", description=__doc__.splitlines()[0])
    parser.add_argument("--serving-root", required=True, help="the pipeline's serving folder (ROOT/serving)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args(argv)
    if not os.path.isdir(args.serving_root):
        print(f"error: {args.serving_root} is not a folder; run `python -m pipeline run-local` first", file=sys.stderr)
        return 2
    try:
        server, port = start_server(args.serving_root, args.port, args.host)
    except OSError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"PredictionService on {args.host}:{port} serving {args.serving_root} (Ctrl-C stops)")
    try:
        server.wait_for_termination()
    except KeyboardInterrupt:
        server.stop(0)
    return 0


if __name__ == "__main__":
    sys.exit(main())

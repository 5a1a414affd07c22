"""TF Serving's PredictionService and ModelService (gRPC) and its REST API over <serving_root>.

For local development and tests: production uses `tensorflow_model_server` (TF Serving) on the same
folder and protocol, e.g.

    docker run -p 8500:8500 -p 8501:8501 -v $ROOT/serving:/models tensorflow/serving:2.21.0 \\
        --model_config_file=/models/models.config --enable_batching \\
        --batching_parameters_file=/models/batching_parameters.txt

Here: `python -m serving.prediction_server --serving-root runs/local/serving --port 8500 [--rest-port 8501]`.
It follows TF Serving's rules rather than being more lenient (serving/repository.py, serving/batching.py):
models.config's version policy and labels; with batching_parameters.txt in the root (TF Serving with
--enable_batching), concurrent requests merged as BatchingSession merges them, warm-up included; a version
whose warm-up fails is not served (at start-up the server does not start, as TF Serving exits). Requests
are checked before any tensor is built (serving/inputs.py): bad ones get INVALID_ARGUMENT naming the
problem, unknown models, versions and signatures NOT_FOUND, never a crash.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
from concurrent import futures

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow loads: its start-up chatter is not for users

import grpc  # noqa: E402
import tensorflow as tf  # noqa: E402
from google.protobuf.message import DecodeError  # noqa: E402
from tensorflow_serving.apis import (  # noqa: E402
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from serving.errors import BadRequest, ServingError  # noqa: E402
from serving.inputs import LIMITS  # noqa: E402,F401 (re-exported: the limits a request may ask for)
from serving.repository import LoadFailed, ModelRepository  # noqa: E402
from serving.rest_api import start_rest  # noqa: E402

DEFAULT_PORT = 8500
GRPC_THREADS = 64  # requests served at once: batching can only merge requests that arrive together


class Undecodable:
    """Stands for a request whose bytes are not the protobuf the method takes."""

    def __init__(self, kind: str, error: Exception):
        self.message = f"the request is not a valid {kind}: {error}"


def _tolerant(message_class):
    """A deserializer that hands the method an Undecodable instead of failing with INTERNAL."""

    def parse(data: bytes):
        try:
            return message_class.FromString(data)
        except (DecodeError, RuntimeWarning, ValueError) as err:
            return Undecodable(message_class.DESCRIPTOR.name, err)

    return parse


def _model_of(repository: ModelRepository, spec):
    choice = spec.WhichOneof("version_choice")
    return repository.get(
        spec.name,
        spec.version.value if choice == "version" else None,
        spec.version_label if choice == "version_label" else None,
    )


def _abort(context, err: Exception):
    code = err.code if isinstance(err, ServingError) else grpc.StatusCode.INTERNAL
    context.abort(code, str(err))


class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    """Predict and GetModelMetadata over the repository's models."""

    def __init__(self, repository: ModelRepository):
        self.repository = repository

    def Predict(self, request, context):  # noqa: N802 (gRPC method name)
        try:
            if isinstance(request, Undecodable):
                raise BadRequest(request.message)
            model = _model_of(self.repository, request.model_spec)
            outputs = model.run_request(request)
        except ServingError as err:
            _abort(context, err)
        response = predict_pb2.PredictResponse()
        response.model_spec.name = model.name
        response.model_spec.signature_name = request.model_spec.signature_name or "serving_default"
        response.model_spec.version.value = model.version
        for key, value in outputs.items():
            response.outputs[key].CopyFrom(tf.make_tensor_proto(value))
        return response

    def GetModelMetadata(self, request, context):  # noqa: N802
        try:
            if isinstance(request, Undecodable):
                raise BadRequest(request.message)
            if not request.metadata_field:
                raise BadRequest("GetModelMetadataRequest must specify at least one metadata_field")
            unknown = sorted(set(request.metadata_field) - {"signature_def"})
            if unknown:
                raise BadRequest(f"Metadata field(s) {unknown} not supported; ask for signature_def")
            model = _model_of(self.repository, request.model_spec)
        except ServingError as err:
            _abort(context, err)
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        response.model_spec.name = model.name
        response.model_spec.version.value = model.version
        signature_map = get_model_metadata_pb2.SignatureDefMap()
        for name, signature_def in model.signature_defs.items():
            signature_map.signature_def[name].CopyFrom(signature_def)
        response.metadata["signature_def"].Pack(signature_map)
        return response


class ModelService(model_service_pb2_grpc.ModelServiceServicer):
    """GetModelStatus: the state of each version (AVAILABLE, or END with its load error)."""

    def __init__(self, repository: ModelRepository):
        self.repository = repository

    def GetModelStatus(self, request, context):  # noqa: N802
        try:
            if isinstance(request, Undecodable):
                raise BadRequest(request.message)
            spec = request.model_spec
            rows = self.repository.statuses(spec.name, spec.version.value if spec.HasField("version") else None)
        except ServingError as err:
            _abort(context, err)
        response = get_model_status_pb2.GetModelStatusResponse()
        for version, state, error in rows:
            status = response.model_version_status.add(version=version)
            status.state = get_model_status_pb2.ModelVersionStatus.State.Value(state)
            if error:
                status.status.error_code = 2  # tensorflow.error.UNKNOWN
                status.status.error_message = error
        return response


def _handlers(service_name: str, servicer, methods: dict) -> grpc.GenericRpcHandler:
    """The service's unary methods with tolerant request deserializers."""
    return grpc.method_handlers_generic_handler(
        service_name,
        {
            name: grpc.unary_unary_rpc_method_handler(
                getattr(servicer, name),
                request_deserializer=_tolerant(request_class),
                response_serializer=lambda message: message.SerializeToString(),
            )
            for name, request_class in methods.items()
        },
    )


class Poller(threading.Thread):
    """Picks up newly pushed versions and config changes every `seconds` (TF Serving's
    --file_system_poll_wait_seconds and --model_config_file_poll_wait_seconds)."""

    def __init__(self, repository: ModelRepository, seconds: float):
        super().__init__(daemon=True, name="version-poller")
        self.repository, self.seconds, self.stopping = repository, seconds, threading.Event()

    def run(self):
        while not self.stopping.wait(self.seconds):
            try:
                for loaded in self.repository.poll():
                    print(f"now serving {loaded}", flush=True)
            except Exception as err:  # noqa: BLE001 (a half-pushed or broken version must not stop serving)
                print(f"poll: {type(err).__name__}: {err}", file=sys.stderr, flush=True)


def start_server(
    serving_root: str,
    port: int = DEFAULT_PORT,
    host: str = "127.0.0.1",
    workers: int = GRPC_THREADS,
    poll_seconds: float = 5.0,
    rest_port: int | None = None,
    batching: bool = True,
) -> tuple[grpc.Server, int]:
    """Load and warm the served models, then start serving (background threads); returns (server, bound port).
    Port 0 picks a free one; `server.repository` is the repository and `server.rest` the REST server (its
    port is `server.rest.server_address[1]`). LoadFailed when a version fails to load, as TF Serving exits."""
    repository = ModelRepository(serving_root, batching=batching)
    repository.poll(strict=True)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers))
    prediction = PredictionService(repository)
    server.add_generic_rpc_handlers(
        (
            _handlers(
                "tensorflow.serving.PredictionService",
                prediction,
                {
                    "Predict": predict_pb2.PredictRequest,
                    "GetModelMetadata": get_model_metadata_pb2.GetModelMetadataRequest,
                },
            ),
            _handlers(
                "tensorflow.serving.ModelService",
                ModelService(repository),
                {"GetModelStatus": get_model_status_pb2.GetModelStatusRequest},
            ),
        )
    )
    bound = server.add_insecure_port(f"{host}:{port}")
    if bound == 0:
        raise OSError(f"cannot listen on {host}:{port}")
    server.repository = repository
    server.rest = start_rest(repository, host, rest_port) if rest_port is not None else None
    server.start()
    if poll_seconds > 0:
        poller = Poller(repository, poll_seconds)
        poller.start()
        server.poller = poller
    return server, bound


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m serving.prediction_server", description=__doc__.splitlines()[0])
    parser.add_argument("--serving-root", required=True, help="the pipeline's serving folder (ROOT/serving)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="gRPC port (TF Serving's --port)")
    parser.add_argument("--rest-port", type=int, default=None, help="REST API port (TF Serving's --rest_api_port)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--poll-seconds", type=float, default=5.0, help="how often to look for new versions (0: never)")
    parser.add_argument(
        "--no-batching", action="store_true", help="ignore batching_parameters.txt (TF Serving without --enable_batching)"
    )
    args = parser.parse_args(argv)
    if not os.path.isdir(args.serving_root):
        print(f"error: {args.serving_root} is not a folder; run `python -m pipeline run-local` first", file=sys.stderr)
        return 2
    try:
        server, port = start_server(
            args.serving_root,
            args.port,
            args.host,
            poll_seconds=args.poll_seconds,
            rest_port=args.rest_port,
            batching=not args.no_batching,
        )
    except (OSError, LoadFailed, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2 if isinstance(err, OSError) else 1
    rest = f", REST on {args.host}:{server.rest.server_address[1]}" if server.rest else ""
    batching = "batching on" if server.repository.batching else "batching off"
    print(f"PredictionService on {args.host}:{port}{rest} serving {args.serving_root} ({batching}; Ctrl-C stops)", flush=True)
    try:
        server.wait_for_termination()
    except KeyboardInterrupt:
        server.stop(0)
    return 0


if __name__ == "__main__":
    sys.exit(main())

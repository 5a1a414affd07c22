"""gRPC client for TF Serving's PredictionService: "top-k next items in domain d for this history".

    python -m serving.client --server localhost:8500 --model syncrec \\
        --history "0439806119:Books,B001KZ24NU:Video_Games" --domain Books --k 10

The request sent (the answer to "what do I send TF Serving?"): signature `serving_default`,
inputs history_items (string [1, L]), history_domains (string [1, L]), target_domain (string [1]),
k (int32 scalar); outputs item_ids (string [1, k]) and scores (float [1, k]).
"""

from __future__ import annotations

import argparse
import sys

import grpc
import numpy as np
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc


def _string_tensor(values: list[list[str]] | list[str]) -> tensor_pb2.TensorProto:
    array = np.asarray(values, dtype=object)
    proto = tensor_pb2.TensorProto(
        dtype=types_pb2.DT_STRING,
        tensor_shape=tensor_shape_pb2.TensorShapeProto(
            dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=s) for s in array.shape]
        ),
    )
    proto.string_val.extend(str(v).encode("utf-8") for v in array.ravel())
    return proto


def _int_scalar(value: int) -> tensor_pb2.TensorProto:
    return tensor_pb2.TensorProto(
        dtype=types_pb2.DT_INT32, tensor_shape=tensor_shape_pb2.TensorShapeProto(), int_val=[value]
    )


def build_request(model: str, history: list[tuple[str, str]], domain: str, k: int) -> predict_pb2.PredictRequest:
    """The PredictRequest for serving_default (the request TF Serving expects)."""
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.model_spec.signature_name = "serving_default"
    items = [item for item, _ in history] or [""]
    domains = [d for _, d in history] or [""]
    request.inputs["history_items"].CopyFrom(_string_tensor([items]))
    request.inputs["history_domains"].CopyFrom(_string_tensor([domains]))
    request.inputs["target_domain"].CopyFrom(_string_tensor([domain]))
    request.inputs["k"].CopyFrom(_int_scalar(k))
    return request


class RecommendClient:
    """Top-k requests to a PredictionService; `last_version` is the model version that answered last."""

    def __init__(self, server: str, model: str = "syncrec", timeout: float = 30.0):
        self.channel = grpc.insecure_channel(server)
        self.stub = prediction_service_pb2_grpc.PredictionServiceStub(self.channel)
        self.model, self.timeout = model, timeout
        self.last_version: int | None = None

    def recommend(self, history: list[tuple[str, str]], domain: str, k: int = 10) -> list[tuple[str, float]]:
        """[(item id, score)] of the top-k of `domain` for the history (oldest first)."""
        import tensorflow as tf  # make_ndarray reads every TensorProto encoding TF Serving may use

        response = self.stub.Predict(build_request(self.model, history, domain, k), timeout=self.timeout)
        self.last_version = response.model_spec.version.value if response.model_spec.HasField("version") else None
        items = [v.decode("utf-8") for v in tf.make_ndarray(response.outputs["item_ids"]).ravel()]
        scores = tf.make_ndarray(response.outputs["scores"]).ravel().tolist()
        return list(zip(items, scores))

    def close(self):
        """Close the channel."""
        self.channel.close()


def parse_history(text: str) -> list[tuple[str, str]]:
    """ "item:domain,item:domain" (oldest first) -> pairs; the domain is after the last colon."""
    pairs = []
    for token in [t for t in text.split(",") if t.strip()]:
        if ":" not in token:
            raise ValueError(f"history entry {token!r} is not item:domain")
        item, domain = token.strip().rsplit(":", 1)
        pairs.append((item, domain))
    return pairs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m serving.client", description=__doc__.splitlines()[0])
    parser.add_argument("--server", default="localhost:8500")
    parser.add_argument("--model", default="syncrec")
    parser.add_argument("--history", required=True, help="item:domain,item:domain,... oldest first")
    parser.add_argument("--domain", required=True, help="recommend items of this domain")
    parser.add_argument("--k", type=int, default=10)
    args = parser.parse_args(argv)
    try:
        client = RecommendClient(args.server, args.model)
        results = client.recommend(parse_history(args.history), args.domain, args.k)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except grpc.RpcError as err:
        print(f"error: {err.code().name}: {err.details()} (server {args.server})", file=sys.stderr)
        return 1
    print(f"model {args.model} version {client.last_version}")
    for rank, (item, score) in enumerate(results, start=1):
        print(f"{rank:>3}  {item}  {score:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

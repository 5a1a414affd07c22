"""gRPC client for TF Serving's PredictionService: "top-k next items in domain d for this history".

    python -m serving.client --server localhost:8500 --model syncrec \\
        --history "0439806119:Books,B001KZ24NU:Video_Games" --domain Books --k 10

The request sent (the answer to "what do I send TF Serving?"): signature `serving_default`, every input
with one row per user (dimension 0 is the batch, as TF Serving's batching requires):
history_items (string [B, L], oldest first), history_domains (string [B, L]), history_length (int32 [B]:
how many of a row's L places hold its history; the rest is padding), target_domain (string [B]), k (int32
[B]). Outputs item_ids (string [B, K]) and scores (float [B, K]), K the largest k of the batch after TF
Serving merged it with others: row b keeps its first k[b] places and drops "" (places past its own k).
`version_label` ("stable", "canary": the Pusher writes them to models.config) or a version picks the model.
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


def _int_vector(values: list[int]) -> tensor_pb2.TensorProto:
    return tensor_pb2.TensorProto(
        dtype=types_pb2.DT_INT32,
        tensor_shape=tensor_shape_pb2.TensorShapeProto(dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=len(values))]),
        int_val=values,
    )


def build_batch_request(
    model: str,
    histories: list[list[tuple[str, str]]],
    domains: list[str],
    ks: list[int],
    version_label: str | None = None,
) -> predict_pb2.PredictRequest:
    """One serving_default PredictRequest for several users: row b is (histories[b], domains[b], ks[b])."""
    if not (len(histories) == len(domains) == len(ks)):
        raise ValueError("histories, domains and ks must have one entry per user")
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.model_spec.signature_name = "serving_default"
    if version_label:
        request.model_spec.version_label = version_label
    width = max([len(h) for h in histories] + [1])
    items = [[item for item, _ in h] + [""] * (width - len(h)) for h in histories]
    item_domains = [[d for _, d in h] + [""] * (width - len(h)) for h in histories]
    request.inputs["history_items"].CopyFrom(_string_tensor(items))
    request.inputs["history_domains"].CopyFrom(_string_tensor(item_domains))
    request.inputs["history_length"].CopyFrom(_int_vector([len(h) for h in histories]))
    request.inputs["target_domain"].CopyFrom(_string_tensor(list(domains)))
    request.inputs["k"].CopyFrom(_int_vector(list(ks)))
    return request


def build_request(
    model: str, history: list[tuple[str, str]], domain: str, k: int, version_label: str | None = None
) -> predict_pb2.PredictRequest:
    """The PredictRequest for serving_default for one user (the request TF Serving expects)."""
    return build_batch_request(model, [history], [domain], [k], version_label)


def top_k_rows(response, ks: list[int]) -> list[list[tuple[str, float]]]:
    """[(item id, score)] per row of a serving_default response: its first k places, without the "" that
    fill places past a row's own k when TF Serving batched it with requests asking for more."""
    import tensorflow as tf  # make_ndarray reads every TensorProto encoding TF Serving may use

    items = tf.make_ndarray(response.outputs["item_ids"])
    scores = tf.make_ndarray(response.outputs["scores"])
    rows = []
    for row, k in enumerate(ks):
        pairs = zip((v.decode("utf-8") for v in items[row][:k]), scores[row][:k].tolist())
        rows.append([(item, score) for item, score in pairs if item])
    return rows


# A request's gRPC deadline unless the caller gives one: far above a request's milliseconds, so that only a server
# that is down or stuck runs it out.
DEFAULT_TIMEOUT_S = 30.0


class RecommendClient:
    """Top-k requests to a PredictionService; `last_version` is the model version that answered last."""

    def __init__(
        self, server: str, model: str = "syncrec", timeout: float = DEFAULT_TIMEOUT_S, version_label: str | None = None
    ):
        self.channel = grpc.insecure_channel(server)
        self.stub = prediction_service_pb2_grpc.PredictionServiceStub(self.channel)
        self.model, self.timeout, self.version_label = model, timeout, version_label
        self.last_version: int | None = None

    def recommend(self, history: list[tuple[str, str]], domain: str, k: int = 10) -> list[tuple[str, float]]:
        """[(item id, score)] of the top-k of `domain` for the history (oldest first)."""
        return self.recommend_batch([history], [domain], [k])[0]

    def recommend_batch(
        self, histories: list[list[tuple[str, str]]], domains: list[str], ks: list[int]
    ) -> list[list[tuple[str, float]]]:
        """The top-k of each user in one request (one row per user)."""
        request = build_batch_request(self.model, histories, domains, ks, self.version_label)
        response = self.stub.Predict(request, timeout=self.timeout)
        self.last_version = response.model_spec.version.value if response.model_spec.HasField("version") else None
        return top_k_rows(response, ks)

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
    parser.add_argument("--label", default=None, help="version label from models.config, e.g. stable or canary")
    parser.add_argument(
        "--timeout", type=float, default=DEFAULT_TIMEOUT_S, help="seconds the request may take (its gRPC deadline)"
    )
    args = parser.parse_args(argv)
    try:
        if not args.timeout > 0:  # NaN included
            raise ValueError(f"--timeout must be > 0 seconds (got {args.timeout})")
        client = RecommendClient(args.server, args.model, args.timeout, args.label)
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

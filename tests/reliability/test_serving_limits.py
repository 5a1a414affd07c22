"""Hostile and careless requests against the PredictionService on loopback: each gets a clear
INVALID_ARGUMENT or NOT_FOUND, nothing is materialised before the checks, and the server lives on."""

import os

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from pipeline.pusher import push
from serving.client import RecommendClient, build_request
from serving.prediction_server import LIMITS, start_server
from tests.serving import DEADLINE
from tests.serving.small_model import export, small_vocabulary

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("serve")
    push(export(tmp, "v1"), str(tmp / "serving"), "syncrec")
    server, port = start_server(str(tmp / "serving"), 0, poll_seconds=0.5)
    stub = prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(f"127.0.0.1:{port}"))
    yield tmp, server, f"127.0.0.1:{port}", stub
    server.stop(0)


def predict(stub, request):
    return stub.Predict(request, timeout=DEADLINE)


def expect(stub, request, code, text):
    with pytest.raises(grpc.RpcError) as err:
        predict(stub, request)
    assert err.value.code() == code and text in err.value.details(), err.value.details()


def declared(shape, values, dtype=types_pb2.DT_STRING):
    proto = tensor_pb2.TensorProto(
        dtype=dtype,
        tensor_shape=tensor_shape_pb2.TensorShapeProto(
            dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=s) for s in shape]
        ),
    )
    (proto.string_val if dtype == types_pb2.DT_STRING else proto.int_val).extend(values)
    return proto


def test_the_server_is_warm_before_it_takes_traffic(served):
    _, server, address, _ = served
    model = server.poller.repository.get("syncrec")
    assert model.warm_up() > 0  # the export carries warmup requests for every signature
    assert len(RecommendClient(address, timeout=DEADLINE).recommend([("A-1", "A")], "B", 3)) == 3


def test_a_tiny_request_declaring_a_huge_shape_is_refused_before_it_is_built(served):
    _, _, _, stub = served
    request = build_request("syncrec", [("A-1", "A")], "B", 3)
    request.inputs["history_items"].CopyFrom(
        declared([100_000, 50], [b"A-1"])
    )  # ~160 bytes that would expand to 5M strings
    request.inputs["history_domains"].CopyFrom(declared([100_000, 50], [b"A"]))
    expect(stub, request, grpc.StatusCode.INVALID_ARGUMENT, f"100000 rows; at most {LIMITS['batch']}")
    request = build_request("syncrec", [("A-1", "A")], "B", 3)
    request.inputs["k"].CopyFrom(declared([100_000_000], [5], types_pb2.DT_INT32))
    expect(stub, request, grpc.StatusCode.INVALID_ARGUMENT, "100000000 rows")
    request = build_request("syncrec", [("A-1", "A")], "B", 3)
    request.inputs["history_items"].CopyFrom(declared([1, 2], [b"a", b"b", b"c"]))
    expect(stub, request, grpc.StatusCode.INVALID_ARGUMENT, "[1, 2] (2 values) but carries 3")


def test_a_4kb_request_that_would_expand_to_gigabytes_is_refused_and_the_server_keeps_answering(served):
    """TensorFlow fills a short value list by repeating the last value: [512, 2048] strings with one 4,000-byte
    value would be ~4 GiB. Fewer values than the shape declares are refused, as are more."""
    _, _, address, stub = served
    request = build_request("syncrec", [("A-1", "A")], "B", 3)
    request.inputs["history_items"].CopyFrom(declared([512, 2048], [b"x" * 4000]))
    assert request.ByteSize() < 4200
    expect(stub, request, grpc.StatusCode.INVALID_ARGUMENT, "declares shape [512, 2048] (1048576 values) but carries 1")
    short = build_request("syncrec", [("A-1", "A")], "B", 3)
    short.inputs["history_items"].CopyFrom(declared([1, 5], [b"A-1", b"A-2"]))  # not a 5-item history
    expect(stub, short, grpc.StatusCode.INVALID_ARGUMENT, "(5 values) but carries 2")
    assert len(RecommendClient(address, timeout=DEADLINE).recommend([("A-1", "A")], "B", 3)) == 3


@pytest.mark.parametrize("name", ["./syncrec", "../serving/syncrec", "syncrec/../syncrec", "/etc", "syncrec/1", ""])
def test_model_names_are_looked_up_never_joined_into_paths(served, name):
    _, server, _, stub = served
    expect(stub, build_request(name, [("A-1", "A")], "B", 3), grpc.StatusCode.NOT_FOUND, "served models: ['syncrec']")


def test_k_is_clamped_to_the_domain_and_the_history_is_not_recommended(served):
    _, _, address, _ = served
    client = RecommendClient(address, timeout=DEADLINE)
    results = client.recommend([("B-1", "B"), ("B-2", "B")], "B", 10**9)
    items = [item for item, _ in results]
    assert len(items) == 40 and all(item.startswith("B-") for item in items)  # every item of B, no other domain's
    assert [i for i, s in results if s == -np.inf] == [i for i in items if i in ("B-1", "B-2")]  # history last, at -inf
    assert set(items[:38]).isdisjoint({"B-1", "B-2"})


def test_ids_and_domains_out_of_range_are_named(served):
    _, _, _, stub = served
    vocab = small_vocabulary()

    def ids_request(history, domains):
        request = predict_pb2.PredictRequest()
        request.model_spec.name, request.model_spec.signature_name = "syncrec", "recommend_ids"
        request.inputs["history_items"].CopyFrom(tf.make_tensor_proto(np.array(history, np.int32)))
        request.inputs["history_length"].CopyFrom(tf.make_tensor_proto(np.array([len(h) for h in history], np.int32)))
        request.inputs["target_domain"].CopyFrom(tf.make_tensor_proto(np.array(domains, np.int32)))
        request.inputs["k"].CopyFrom(tf.make_tensor_proto(np.full(len(domains), 3, np.int32)))
        return request

    expect(
        stub,
        ids_request([[vocab.num_items + 5]], [1]),
        grpc.StatusCode.INVALID_ARGUMENT,
        f"item ids in [0, {vocab.num_items})",
    )
    for domain in (99, -3, 0):
        expect(
            stub,
            ids_request([[3]], [domain]),
            grpc.StatusCode.INVALID_ARGUMENT,
            "target_domain must be a domain id in [1, 3]",
        )
    # with batching on (the Pusher writes batching_parameters.txt), TF Serving's batching refuses it first
    expect(stub, ids_request([[3]], [1, 2]), grpc.StatusCode.INVALID_ARGUMENT, "equal 0th-dimension size")
    request = build_request("syncrec", [("A-1", "A")], "B", 3)
    request.inputs["target_domain"].CopyFrom(tf.make_tensor_proto(np.array([b"B", b"C"], dtype=object)))
    expect(stub, request, grpc.StatusCode.INVALID_ARGUMENT, "equal 0th-dimension size")
    assert tf.make_ndarray(predict(stub, ids_request([[3]], [2])).outputs["item_ids"]).shape == (1, 3)  # still serving


def test_a_newly_pushed_version_is_loaded_warmed_and_answers(served):
    tmp, _, address, _ = served
    client = RecommendClient(address, timeout=DEADLINE)
    client.recommend([("A-1", "A")], "B", 3)
    first = client.last_version
    pushed = push(export(tmp, "v2"), str(tmp / "serving"), "syncrec")
    for _ in range(600):  # bounded: up to ~60 s for the poller on a busy machine
        client.recommend([("A-1", "A")], "B", 3)
        if client.last_version != first:
            break
        import time

        time.sleep(0.1)
    assert client.last_version == int(os.path.basename(pushed)) > first

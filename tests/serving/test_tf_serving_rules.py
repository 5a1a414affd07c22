"""The local server holds models to TF Serving's rules: batching (BatchingSession's merge, padding and checks,
warm-up through it), version labels from models.config, full metadata, model status and the REST API."""

import json
import os
import threading
import urllib.error
import urllib.request

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import (
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_log_pb2,
    prediction_service_pb2_grpc,
)

from pipeline.pusher import BATCHING_PARAMETERS, push
from serving.batching import BatchingParameters, merge_inputs, request_batch_size, split_outputs
from serving.client import RecommendClient, build_batch_request, build_request
from serving.errors import BadRequest, FailedPrecondition
from serving.prediction_server import start_server
from serving.repository import LoadFailed
from tests.serving import DEADLINE
from tests.serving.small_model import export, small_vocabulary

# Wide enough a window that concurrent requests from a busy machine still meet in one batch.
TEST_BATCHING = BATCHING_PARAMETERS.replace("batch_timeout_micros { value: 2000 }", "batch_timeout_micros { value: 200000 }")


def test_the_pushers_batching_file_is_what_tf_serving_reads():
    params = BatchingParameters.parse(BATCHING_PARAMETERS)
    assert (params.max_batch_size, params.batch_timeout_micros, params.pad_variable_length_inputs) == (64, 2000, True)
    with pytest.raises(ValueError, match="unknown field 'max_batch'"):
        BatchingParameters.parse("max_batch { value: 3 }")
    with pytest.raises(ValueError, match="end with max_batch_size"):
        BatchingParameters.parse("max_batch_size { value: 8 } allowed_batch_sizes: 2 allowed_batch_sizes: 4")


def test_batching_session_rules_on_arrays():
    with pytest.raises(BadRequest, match="at least one dimension"):
        request_batch_size({"x": np.zeros((2, 3)), "k": np.int32(3)})
    with pytest.raises(BadRequest, match="equal 0th-dimension size"):
        request_batch_size({"x": np.zeros((2, 3)), "k": np.zeros(3)})
    a = {"h": np.array([[b"old", b"new"]], dtype=object)}
    b = {"h": np.array([[b"p", b"q", b"r", b"s"], [b"t", b"u", b"v", b"w"]], dtype=object)}
    padded = BatchingParameters(pad_variable_length_inputs=True, max_batch_size=8)
    merged, size = merge_inputs([a, b], padded)
    assert size == 3 and merged["h"][0].tolist() == [b"old", b"new", b"old", b"old"]  # the first element fills the end
    with pytest.raises(FailedPrecondition, match="padding is turned off"):
        merge_inputs([a, b], BatchingParameters(max_batch_size=8))
    allowed = BatchingParameters(pad_variable_length_inputs=True, max_batch_size=8, allowed_batch_sizes=(4, 8))
    merged, size = merge_inputs([a, b], allowed)
    assert size == 4 and merged["h"][3].tolist() == [b"p", b"q", b"r", b"s"]  # the last request's first row
    parts = split_outputs({"y": np.arange(4)}, [1, 2], 4)
    assert [p["y"].tolist() for p in parts] == [[0], [1, 2]]
    with pytest.raises(FailedPrecondition, match="0 dimensions"):
        split_outputs({"y": np.float32(1)}, [1, 2], 4)
    with pytest.raises(FailedPrecondition, match="0th dimension does not equal"):
        split_outputs({"y": np.arange(2)}, [1, 2], 4)


class Echo(tf.Module):
    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.string, name="x")])
    def echo(self, x):
        return {"y": x}


class ScalarK(tf.Module):
    @tf.function(
        input_signature=[tf.TensorSpec([None], tf.string, name="x"), tf.TensorSpec([], tf.int32, name="k")]
    )
    def top(self, x, k):
        return {"y": tf.repeat(x[:, tf.newaxis], k, axis=1)}


def save_with_warmup(module, signature, path, inputs):
    tf.saved_model.save(module, path, signatures={"serving_default": signature})
    os.makedirs(os.path.join(path, "assets.extra"))
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "m"
    for key, value in inputs.items():
        request.inputs[key].CopyFrom(tf.make_tensor_proto(value))
    log = prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))
    with tf.io.TFRecordWriter(os.path.join(path, "assets.extra", "tf_serving_warmup_requests")) as writer:
        writer.write(log.SerializeToString())


def test_a_model_with_a_rank_0_input_fails_its_warm_up_under_batching(tmp_path):
    """The signatures this project shipped before took a scalar k: TF Serving with --enable_batching fails the load."""
    root = tmp_path / "serving"
    module = ScalarK()
    save_with_warmup(module, module.top, str(root / "m" / "1"), {"x": np.array([b"a"], dtype=object), "k": np.int32(2)})
    (root / "batching_parameters.txt").write_text(BATCHING_PARAMETERS)
    with pytest.raises(LoadFailed, match="Batching Run\\(\\) input tensors must have at least one dimension"):
        start_server(str(root), 0, poll_seconds=0)
    server, _ = start_server(str(root), 0, poll_seconds=0, batching=False)  # without --enable_batching it loads
    server.stop(0)


def concurrently(calls):
    results, errors = [None] * len(calls), []

    def run(i):
        try:
            results[i] = calls[i]()
        except Exception as err:  # noqa: BLE001
            errors.append(err)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(DEADLINE * 2)
    assert not errors, errors[:3]
    return results


def test_padding_fills_with_the_tensors_first_element(tmp_path):
    """What made batched histories wrong: a short request merged with a long one comes back padded with its
    own first element at the end (TF Serving issue 1279), so anything read past the sender's width is not real."""
    root = tmp_path / "serving"
    module = Echo()
    save_with_warmup(module, module.echo, str(root / "echo" / "1"), {"x": np.array([[b"w"]], dtype=object)})
    (root / "batching_parameters.txt").write_text(TEST_BATCHING)
    server, port = start_server(str(root), 0, poll_seconds=0)
    stub = prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(f"127.0.0.1:{port}"))

    def call(row):
        request = predict_pb2.PredictRequest()
        request.model_spec.name = "echo"
        request.inputs["x"].CopyFrom(tf.make_tensor_proto(np.array([row], dtype=object)))
        return tf.make_ndarray(stub.Predict(request, timeout=DEADLINE).outputs["y"]).tolist()

    for _ in range(5):  # a busy machine may keep them apart once; they meet within a few tries
        short, long = concurrently([lambda: call([b"old", b"new"]), lambda: call([b"a", b"b", b"c", b"d", b"e"])])
        if len(short[0]) == 5:
            break
    server.stop(0)
    assert short == [[b"old", b"new", b"old", b"old", b"old"]] and long == [[b"a", b"b", b"c", b"d", b"e"]]


@pytest.fixture(scope="module")
def batching_server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("batching")
    first = push(export(tmp, "v1", seed=1), str(tmp / "serving"), "syncrec")
    (tmp / "serving" / "batching_parameters.txt").write_text(TEST_BATCHING)
    server, port = start_server(str(tmp / "serving"), 0, poll_seconds=0.5, rest_port=0)
    yield tmp, server, f"127.0.0.1:{port}", int(os.path.basename(first))
    server.stop(0)
    server.rest.shutdown()


def test_concurrent_requests_merged_by_batching_get_the_answers_each_gets_alone(batching_server):
    _, server, address, _ = batching_server
    vocab = small_vocabulary()
    rng = np.random.default_rng(7)
    requests = []
    for i in range(40):
        length = int(rng.integers(0, 25))
        history = [(f"{d}-{rng.integers(30)}", d) for d in rng.choice(["A", "B", "C"], size=length)]
        rows = 1 + i % 3  # some requests carry several users of different lengths
        histories = [history[: max(0, length - 5 * r)] for r in range(rows)]
        domains = [str(rng.choice(vocab.domain_names)) for _ in range(rows)]
        ks = [int(rng.integers(1, 30)) for _ in range(rows)]
        requests.append((histories, domains, ks))
    client = RecommendClient(address, timeout=DEADLINE)
    alone = [client.recommend_batch(*r) for r in requests]  # one at a time: each is a batch of its own
    scheduler = server.repository.get("syncrec").schedulers["serving_default"]
    merged_before = scheduler.stats["most_requests_merged"]
    together = concurrently([lambda r=r: RecommendClient(address, timeout=DEADLINE).recommend_batch(*r) for r in requests])
    assert merged_before == 1 and scheduler.stats["most_requests_merged"] > 1  # batching really merged them
    for (histories, _, ks), one, many in zip(requests, alone, together):
        for k, a, b in zip(ks, one, many):
            assert len(a) == len(b) <= k
            np.testing.assert_allclose([s for _, s in a], [s for _, s in b], rtol=1e-5, atol=1e-6)
            differ = [i for i, (x, y) in enumerate(zip(a, b)) if x[0] != y[0]]
            assert all(abs(a[i][1] - a[i + (1 if i + 1 < len(a) else -1)][1]) < 1e-5 for i in differ)  # ties only


def test_version_labels_come_from_models_config(batching_server):
    tmp, server, address, first = batching_server
    canary = int(os.path.basename(push(export(tmp, "v2", seed=2), str(tmp / "serving"), "syncrec", canary=True)))
    server.repository.poll()
    stable_client = RecommendClient(address, timeout=DEADLINE, version_label="stable")
    canary_client = RecommendClient(address, timeout=DEADLINE, version_label="canary")
    stable_client.recommend([("A-1", "A")], "B", 3)
    canary_client.recommend([("A-1", "A")], "B", 3)
    assert (stable_client.last_version, canary_client.last_version) == (first, canary)
    with pytest.raises(grpc.RpcError) as err:
        RecommendClient(address, timeout=DEADLINE, version_label="beta").recommend([("A-1", "A")], "B", 3)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.value.details() == "Unrecognized servable version label: beta"
    request = build_request("syncrec", [("A-1", "A")], "B", 3)
    request.model_spec.version.value = 12345
    stub = prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(address))
    with pytest.raises(grpc.RpcError) as err:
        stub.Predict(request, timeout=DEADLINE)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND and "Specific(syncrec, 12345)" in err.value.details()
    status_stub = model_service_pb2_grpc.ModelServiceStub(grpc.insecure_channel(address))
    status = status_stub.GetModelStatus(get_model_status_pb2.GetModelStatusRequest(model_spec={"name": "syncrec"}))
    assert [(s.version, s.state) for s in status.model_version_status] == [
        (first, get_model_status_pb2.ModelVersionStatus.AVAILABLE),
        (canary, get_model_status_pb2.ModelVersionStatus.AVAILABLE),
    ]
    later = push(export(tmp, "v3", seed=3), str(tmp / "serving"), "syncrec")  # a plain push becomes stable alone
    server.repository.poll()
    stable_client.recommend([("A-1", "A")], "B", 3)
    assert stable_client.last_version == int(os.path.basename(later))
    with pytest.raises(grpc.RpcError) as err:
        canary_client.recommend([("A-1", "A")], "B", 3)
    assert "Unrecognized servable version label: canary" in err.value.details()


def rest(server, path, body=None):
    url = f"http://127.0.0.1:{server.rest.server_address[1]}{path}"
    data = json.dumps(body).encode() if body is not None else None
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=data), timeout=DEADLINE) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_rest_api_answers_as_tf_serving(batching_server):
    _, server, address, _ = batching_server
    code, status = rest(server, "/v1/models/syncrec")
    assert code == 200 and status["model_version_status"][-1]["state"] == "AVAILABLE"
    assert rest(server, "/v1/models/nothing")[0] == 404
    code, meta = rest(server, "/v1/models/syncrec/metadata")
    inputs = meta["metadata"]["signature_def"]["signature_def"]["serving_default"]["inputs"]
    assert code == 200 and set(inputs) == {"history_items", "history_domains", "history_length", "target_domain", "k"}
    history = [("A-1", "A"), ("B-2", "B")]
    expected = RecommendClient(address, timeout=DEADLINE).recommend(history, "C", 4)
    row = {
        "history_items": ["A-1", "B-2"],
        "history_domains": ["A", "B"],
        "history_length": 2,
        "target_domain": "C",
        "k": 4,
    }
    code, answer = rest(server, "/v1/models/syncrec:predict", {"instances": [row]})
    assert code == 200 and answer["predictions"][0]["item_ids"] == [item for item, _ in expected]
    columns = {k: [v] for k, v in row.items()}
    code, answer = rest(server, "/v1/models/syncrec/labels/stable:predict", {"inputs": columns})
    assert code == 200 and answer["outputs"]["item_ids"][0] == [item for item, _ in expected]
    ragged = {"inputs": {**columns, "history_items": [["A-1", "B-2"], ["A-1"]]}}
    code, answer = rest(server, "/v1/models/syncrec:predict", ragged)
    assert code == 400 and "ragged" in answer["error"]
    code, answer = rest(server, "/v1/models/syncrec/labels/nope:predict", {"inputs": columns})
    assert code == 400 and answer["error"] == "Unrecognized servable version label: nope"


def test_an_undecodable_request_is_invalid_argument_and_the_server_answers_on(batching_server):
    _, _, address, _ = batching_server
    channel = grpc.insecure_channel(address)
    raw = channel.unary_unary("/tensorflow.serving.PredictionService/Predict")  # bytes in, bytes out
    with pytest.raises(grpc.RpcError) as err:
        raw(b"\xff\xff\xff\xff not a protobuf", timeout=DEADLINE)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "not a valid PredictRequest" in err.value.details()
    response = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(
        build_batch_request("syncrec", [[("A-1", "A")]], ["B"], [2]), timeout=DEADLINE
    )
    assert tf.make_ndarray(response.outputs["item_ids"]).shape == (1, 2)


def test_a_request_that_picked_a_version_just_unloaded_is_still_answered():
    """The race the version swap opens: a request takes the old version, the poller unloads it (its batch threads
    stop), then the request reaches the old version's queue. Queued requests are drained, later ones run alone."""
    from serving.batching import BatchScheduler

    params = BatchingParameters.parse(TEST_BATCHING)
    scheduler = BatchScheduler(params, lambda merged: {"y": merged["x"] * 2})
    pending = concurrently([lambda: scheduler.run({"x": np.array([1])}), lambda: (scheduler.stop(), None)[1]])
    assert pending[0]["y"].tolist() == [2]
    assert scheduler.run({"x": np.array([3, 4])})["y"].tolist() == [6, 8]  # after stop: answered on its own

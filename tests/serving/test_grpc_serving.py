"""Serving contract over real gRPC on loopback, and the SavedModel through saved_model_cli."""

import os
import subprocess
import sys

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import get_model_metadata_pb2, prediction_service_pb2_grpc

from pipeline.pusher import latest_version
from schemas.vocabulary import Vocabulary
from serving.client import RecommendClient, build_request, parse_history
from serving.client import main as client_main
from serving.prediction_server import start_server
from tests.serving import DEADLINE

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def pushed(tmp_path_factory, sample_examples):
    """A model trained for one epoch on the embedded sample and pushed as the pipeline's Pusher does."""
    from model_keras.config import ModelConfig
    from model_keras.train import run_fn
    from pipeline.pusher import push

    root = tmp_path_factory.mktemp("serve")
    run_fn(str(sample_examples[0]), str(root / "model"), ModelConfig(epochs=1, embed_dim=16, num_blocks=1), verbose=0)
    push(str(root / "model" / "saved_model"), str(root / "serving"), "syncrec")
    return root / "serving", Vocabulary.load(str(sample_examples[0] / "vocabulary.json"))


@pytest.fixture(scope="module")
def server(pushed):
    srv, port = start_server(str(pushed[0]), 0)
    yield f"127.0.0.1:{port}"
    srv.stop(0)


def test_grpc_round_trip_returns_top_k_of_the_domain(server, pushed):
    _, vocab = pushed
    books, games = vocab.domain("Books"), vocab.domain("Video_Games")
    client = RecommendClient(server, timeout=DEADLINE)
    history = [(books.items[0], "Books"), (games.items[0], "Video_Games"), ("never-seen-item", "Books")]
    results = client.recommend(history, "Video_Games", k=7)
    assert len(results) == 7
    assert all(item in games.items for item, _ in results)
    scores = [s for _, s in results]
    assert scores == sorted(scores, reverse=True)
    local = tf.saved_model.load(latest_version(str(pushed[0]), "syncrec"))
    direct = local.signatures["serving_default"](
        history_items=tf.constant([[h[0] for h in history]]),
        history_domains=tf.constant([[h[1] for h in history]]),
        history_length=tf.constant([len(history)]),
        target_domain=tf.constant(["Video_Games"]),
        k=tf.constant([7]),
    )
    assert [x.decode() for x in direct["item_ids"].numpy()[0]] == [item for item, _ in results]
    np.testing.assert_allclose(direct["scores"].numpy()[0], scores, rtol=1e-6)
    client.close()


def test_bad_requests_get_invalid_argument_or_not_found(server):
    client = RecommendClient(server, timeout=DEADLINE)
    with pytest.raises(grpc.RpcError) as err:
        client.recommend([("x", "Books")], "Cars", 3)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "known domains: Books" in err.value.details()
    with pytest.raises(grpc.RpcError) as err:
        client.recommend([("x", "Books")], "Books", 0)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "k must be >= 1" in err.value.details()
    stub = prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(server))
    request = build_request("syncrec", [("x", "Books")], "Books", 3)
    del request.inputs["k"]
    with pytest.raises(grpc.RpcError) as err:
        stub.Predict(request, timeout=DEADLINE)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "missing ['k']" in err.value.details()
    request = build_request("syncrec", [("x", "Books")], "Books", 3)
    request.inputs["k"].CopyFrom(tf.make_tensor_proto(np.int32(3)))
    with pytest.raises(grpc.RpcError) as err:
        stub.Predict(request, timeout=DEADLINE)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "input 'k' must have rank 1" in err.value.details()
    with pytest.raises(grpc.RpcError) as err:
        RecommendClient(server, model="other", timeout=DEADLINE).recommend([("x", "Books")], "Books", 3)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    # the server is still up after all of that
    assert len(client.recommend([("x", "Books")], "Books", 2)) == 2


def test_model_metadata_names_the_signatures(server):
    stub = prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(server))
    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    request.model_spec.name = "syncrec"
    response = stub.GetModelMetadata(request, timeout=DEADLINE)
    signatures = get_model_metadata_pb2.SignatureDefMap()
    response.metadata["signature_def"].Unpack(signatures)
    assert set(signatures.signature_def) == {"serving_default", "score_items", "recommend_ids"}
    default = signatures.signature_def["serving_default"]
    assert set(default.inputs) == {"history_items", "history_domains", "history_length", "target_domain", "k"}
    assert (
        default.inputs["history_items"].dtype == tf.string.as_datatype_enum
        and default.inputs["k"].dtype == tf.int32.as_datatype_enum
    )
    # the full signature_def, as TF Serving gives it: tensor names and shapes with the batch first everywhere
    shapes = {k: [d.size for d in v.tensor_shape.dim] for k, v in {**default.inputs, **default.outputs}.items()}
    assert shapes["history_items"] == [-1, -1] and shapes["k"] == [-1] and shapes["item_ids"] == [-1, -1]
    assert all(v.name.endswith(":0") for v in default.inputs.values())
    assert signatures.signature_def["serving_default"].method_name == "tensorflow/serving/predict"
    empty = get_model_metadata_pb2.GetModelMetadataRequest()
    empty.model_spec.name = "syncrec"
    with pytest.raises(grpc.RpcError) as err:
        stub.GetModelMetadata(empty, timeout=DEADLINE)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "metadata_field" in err.value.details()
    assert (
        set(default.outputs) == {"item_ids", "scores"}
        and default.outputs["scores"].dtype == tf.float32.as_datatype_enum
    )


def test_saved_model_cli_runs_the_default_signature(pushed, tmp_path):
    root, vocab = pushed
    version = latest_version(str(root), "syncrec")
    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    arrays = {
        "history_items": np.array([[vocab.domain("Books").items[0]]], dtype=object),
        "history_domains": np.array([["Books"]], dtype=object),
        "history_length": np.array([1], dtype=np.int32),
        "target_domain": np.array(["Books"], dtype=object),
        "k": np.array([4], dtype=np.int32),
    }
    for name, value in arrays.items():
        np.save(tmp_path / f"{name}.npy", value, allow_pickle=True)
    inputs = ";".join(f"{name}={tmp_path / name}.npy" for name in arrays)
    result = subprocess.run(
        [cli, "run", "--dir", version, "--tag_set", "serve", "--signature_def", "serving_default", "--inputs", inputs],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "item_ids" in result.stdout and "scores" in result.stdout


def test_client_cli(server, pushed):
    _, vocab = pushed
    item = vocab.domain("Books").items[0]
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "serving.client",
            "--server",
            server,
            "--history",
            f"{item}:Books",
            "--domain",
            "Books",
            "--k",
            "3",
            "--timeout",
            str(DEADLINE),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.strip().splitlines()
    assert lines[0].startswith("model syncrec version ") and len(lines) == 4  # which version answered, then k items
    bad = subprocess.run(
        [sys.executable, "-m", "serving.client", "--server", server, "--history", f"{item}:Books", "--domain", "Cars"]
        + ["--timeout", str(DEADLINE)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 1 and "INVALID_ARGUMENT" in bad.stderr and "Traceback" not in bad.stderr
    assert parse_history("a:b,c:d:e") == [("a", "b"), ("c:d", "e")]


@pytest.mark.parametrize("timeout", ["0", "-1", "nan"])
def test_client_cli_names_a_bad_timeout_before_it_connects(capsys, timeout):
    args = ["--server", "127.0.0.1:1", "--history", "a:Books", "--domain", "Books", "--timeout", timeout]
    assert client_main(args) == 2
    assert f"--timeout must be > 0 seconds (got {float(timeout)})" in capsys.readouterr().err

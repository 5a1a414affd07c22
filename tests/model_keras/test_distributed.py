"""Multi-worker training: two worker processes (TF_CONFIG on loopback) compute what one worker does
with the same global batch: the same epoch losses, the same lambda, the same valid metrics."""

import json
import os
import socket
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow
SETTINGS = [
    "epochs=2",
    "patience=0",
    "embed_dim=16",
    "num_blocks=1",
    "dropout=0.0",
    "batch_size=64",
    "seed=3",
    "distribution=multi_worker",
    "use_sc_mim=true",  # SC-MIM's negatives are the other users of the global batch, gathered across workers
]
LOSS_TOLERANCE = 1e-4  # relative: the same arithmetic summed in another order across processes
METRIC_TOLERANCE = 2e-3  # absolute: a near-tie between two candidates may flip after two epochs of updates


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def train(examples, output, workers: int) -> dict:
    ports = free_ports(workers)
    processes = []
    for index in range(workers):
        tf_config = {
            "cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]},
            "task": {"type": "worker", "index": index},
        }
        env = dict(os.environ, TF_CONFIG=json.dumps(tf_config))
        processes.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "model_keras.train",
                    "--examples",
                    str(examples),
                    "--output",
                    str(output),
                    *[a for s in SETTINGS for a in ("--set", s)],
                ],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    results = [p.communicate(timeout=1200) for p in processes]
    for process, (_out, err) in zip(processes, results):
        assert process.returncode == 0, err[-3000:]
    return json.loads((output / "training.json").read_text())


@pytest.fixture(scope="module")
def runs(sample_examples, tmp_path_factory):
    examples = sample_examples[0]
    return train(examples, tmp_path_factory.mktemp("one"), 1), train(examples, tmp_path_factory.mktemp("two"), 2)


def test_two_workers_give_one_workers_losses(runs):
    one, two = runs
    for run in runs:  # every epoch trained: an epoch that ran no step logs a loss of 0
        assert len(run["loss_history"]["loss"]) == 2 and all(loss > 1 for loss in run["loss_history"]["loss"])
    for term in ("loss", "single_loss", "cross_loss", "mim_loss"):
        for a, b in zip(one["loss_history"][term], two["loss_history"][term]):
            assert b == pytest.approx(a, rel=LOSS_TOLERANCE), term
    lambdas = sorted(k for k in one["loss_history"] if k.startswith("lambda/"))
    assert lambdas and all(
        two["loss_history"][k] == pytest.approx(one["loss_history"][k], rel=LOSS_TOLERANCE) for k in lambdas
    )


def test_two_workers_give_one_workers_valid_metrics(runs):
    one, two = runs
    for metric in ("HR@10", "NDCG@10", "MRR"):
        assert two["valid"]["all"][metric] == pytest.approx(one["valid"]["all"][metric], abs=METRIC_TOLERANCE)


def test_only_the_chief_writes_outputs(runs, tmp_path_factory):
    one, two = runs
    assert two["config"]["distribution"] == "multi_worker" and two["last_epoch"] == 2

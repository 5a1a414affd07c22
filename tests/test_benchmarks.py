"""The benchmark commands run and print their tables (tiny sizes here; the figures come from full runs)."""

import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow


def run(*args):
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, timeout=900)


def test_serving_benchmark_prints_latency_and_throughput_rows():
    result = run("benchmarks.serving_benchmark", "--items", "5000", "--requests", "30", "--batches", "1", "4")
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [line.split("|") for line in result.stdout.splitlines() if line.startswith("| ")]
    latency = {r[1].strip(): (float(r[2]), float(r[3])) for r in rows if len(r) == 5 and "single request" in r[1]}
    assert set(latency) == {
        "in-process serving_default (single request)",
        "in-process serving_default (single request), domain served by its single tower",
        "gRPC PredictionService (loopback, single request)",
    }
    assert "p50 / floor p50:" in result.stdout and "floor: read the target domain's item table once" in result.stdout
    assert any(line.startswith("machine: ") and "AVX-512" in line for line in result.stdout.splitlines())
    assert all(0 < p50 <= p99 for p50, p99 in latency.values())
    assert sum(r[1].strip() in ("in-process", "gRPC") and r[2].strip() in ("1", "4") for r in rows) == 4
    assert "before:" not in result.stdout  # the recorded 1M-item figures are printed for 1M items only


def test_training_benchmark_prints_a_throughput_row():
    args = ["--max-len", "20", "--embed-dim", "16", "--experts", "2", "--steps", "2", "--batch-size", "32"]
    result = run(
        "benchmarks.training_benchmark", *args, "--domains", "3", "--items", "3000", "--set", "use_sc_mim=true"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "use_sc_mim=True" in result.stdout.splitlines()[0]  # the step measured is the one with SC-MIM's term
    rows = {line.split("|")[1].strip(): line.split("|") for line in result.stdout.splitlines() if line.startswith("| ")}
    assert float(rows["20"][3].replace(",", "")) > 0  # sequences/s
    assert "before:" not in result.stdout  # the recorded figures are for the settings only


@pytest.mark.parametrize(
    "setting, message",
    [("use_sc_mim=maybe", "use_sc_mim must be true or false"), ("max_len=20", "--set max_len: use --max-len")],
)
def test_training_benchmark_names_a_bad_setting_before_any_work(setting, message):
    result = run("benchmarks.training_benchmark", "--set", setting)
    assert result.returncode == 2 and message in result.stderr
    assert "Traceback" not in result.stderr and "| T |" not in result.stdout


def test_epoch_benchmark_times_plain_and_length_sorted_batches():
    """The same examples an epoch either way; sorted by length, the batches a step runs at are shorter."""
    result = run("benchmarks.epoch_benchmark", "--epochs", "2", "--set", "embed_dim=8", "--set", "batch_size=64")
    assert result.returncode == 0, result.stderr[-3000:]
    rows = {line.split("|")[1].strip(): line.split("|") for line in result.stdout.splitlines() if line.startswith("| ")}
    plain, sorted_ = rows["0"], rows["16"]
    assert int(plain[2]) == int(sorted_[2]) == 8  # 500 users in batches of 64
    assert float(sorted_[3]) < float(plain[3]) and all(float(r[5]) > 0 for r in (plain, sorted_))
    assert "machine: " in result.stdout.splitlines()[0]


def test_epoch_benchmark_names_a_bad_examples_folder(tmp_path):
    result = run("benchmarks.epoch_benchmark", "--examples", str(tmp_path))
    assert result.returncode == 2 and "no transform output there" in result.stderr and "Traceback" not in result.stderr

"""The transform's output folder: never half-written, never deleting what it did not write."""

import os
import signal
import subprocess
import sys
import time

import pytest

from components.readers import InputError
from components.transform import TransformConfig, run_transform
from synthetic.generator import SyntheticConfig, write_csv

pytestmark = pytest.mark.slow
ROWS = "user_id,item_id,domain,timestamp\n" + "".join(f"u{u},i{k},D,{k}\n" for u in range(4) for k in range(4))


def transform(tmp_path, output, source="log.csv"):
    return run_transform(TransformConfig(input=str(tmp_path / source), format="raw", output=str(output)))


def test_foreign_entries_are_never_deleted(tmp_path):
    (tmp_path / "log.csv").write_text(ROWS)
    out = tmp_path / "project"
    (out / "test").mkdir(parents=True)
    (out / "test" / "unit_test.py").write_text("# someone's code")
    with pytest.raises(InputError, match="no finished transform wrote; choose an empty or new folder"):
        transform(tmp_path, out)
    assert (out / "test" / "unit_test.py").read_text() == "# someone's code"
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    transform(tmp_path, tmp_path / "mine")  # other files in the folder are left alone
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me" and (tmp_path / "mine" / "stats.json").exists()


def test_a_failing_rerun_keeps_the_previous_output(tmp_path):
    (tmp_path / "log.csv").write_text(ROWS)
    first = transform(tmp_path, tmp_path / "out")
    shards = sorted(os.listdir(tmp_path / "out" / "train"))
    (tmp_path / "log.csv").write_text("user,item\n1,2\n")  # the rerun fails on the header
    with pytest.raises(InputError):
        transform(tmp_path, tmp_path / "out")
    assert sorted(os.listdir(tmp_path / "out" / "train")) == shards
    assert (tmp_path / "out" / "stats.json").read_text().count('"rows_read": ' + str(first["rows_read"])) == 1


def test_a_killed_run_leaves_no_output_that_consumers_take(tmp_path):
    write_csv(SyntheticConfig(events=300_000, domains=3, items_per_domain=500, seed=3), str(tmp_path / "big.csv"))
    out = tmp_path / "out"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "components.transform",
            "--input",
            str(tmp_path / "big.csv"),
            "--format",
            "raw",
            "--output",
            str(out),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 600
    while not any(name.startswith(".out.staging-") for name in os.listdir(tmp_path)) and time.monotonic() < deadline:
        time.sleep(0.2)  # wait (bounded) until the run is writing
    time.sleep(1.0)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    assert not (out / "stats.json").exists() and not (out / "train").exists()  # staged, never swapped in
    result = subprocess.run(
        [sys.executable, "-m", "model_keras.train", "--examples", str(out), "--output", str(tmp_path / "model")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert (
        result.returncode == 2
        and "run `python -m components.transform" in result.stderr
        and "Traceback" not in result.stderr
    )
    (tmp_path / "small.csv").write_text(ROWS)
    transform(tmp_path, out, "small.csv")  # the next run cleans the killed run's staging folder
    assert not [n for n in os.listdir(tmp_path) if ".staging-" in n] and (out / "stats.json").exists()


def test_consumers_refuse_a_folder_without_the_completion_marker(tmp_path):
    (tmp_path / "log.csv").write_text(ROWS)
    transform(tmp_path, tmp_path / "out")
    os.remove(tmp_path / "out" / "stats.json")  # as a kill -9 used to leave it
    from components.validator import validate_examples
    from model_keras.train import run_fn
    from model_keras.config import ModelConfig

    for consumer in (
        lambda: validate_examples(str(tmp_path / "out")),
        lambda: run_fn(str(tmp_path / "out"), str(tmp_path / "m"), ModelConfig()),
    ):
        with pytest.raises(ValueError, match="has no stats.json"):
            consumer()

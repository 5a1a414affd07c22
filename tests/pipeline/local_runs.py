"""What the end-to-end pipeline tests share: the CLI run as a user runs it, the smallest model settings, and two
days of synthetic logs from one generator (so a retrain on the second day sees no drift)."""

import json
import os
import subprocess
import sys

from synthetic.generator import SyntheticConfig, write_csv

FAST = ["--set", "epochs=1", "--set", "embed_dim=16", "--set", "max_len=20", "--set", "num_blocks=1"]
# ~300 valid users a domain: NDCG@10 moves by ~0.02 between equally good models, so the tolerance says so.
SHAPE = ["--set", "embed_dim=16", "--set", "num_blocks=1", "--set", "max_len=20", "--set", "blessing_tolerance=0.05"]
TRAIN = ["--set", "epochs=3", "--set", "learning_rate=0.005", *SHAPE]


def run(*args, timeout=600):
    return subprocess.run([sys.executable, "-m", "pipeline", *args], capture_output=True, text=True, timeout=timeout)


def write_days(folder) -> tuple[str, str]:
    """day1.csv (12,000 events) and day2.csv (6,000 more users from the same generator) under `folder`."""
    common = dict(domains=3, items_per_domain=60, clusters=6, mean_events_per_user=12, p_sequential=0.7)
    day1, day2 = str(folder / "day1.csv"), str(folder / "day2.csv")
    write_csv(SyntheticConfig(events=12000, seed=1, **common), day1)
    write_csv(SyntheticConfig(events=6000, seed=2, **common), day2)
    return day1, day2


def first_push(folder) -> tuple[str, str, dict]:
    """run-local on day 1 into folder/r: (root, day2.csv, the report of the pushed model)."""
    day1, day2 = write_days(folder)
    root = str(folder / "r")
    first = run("run-local", "--input", day1, "--format", "raw", "--root", root, *TRAIN)
    assert first.returncode == 0, first.stderr[-3000:]
    report = json.loads(open(os.path.join(root, "report", "metrics.json")).read())
    assert report["pushed_to"]
    return root, day2, report

"""The transform beyond one process: byte-range reading, Beam's portable runner with separate worker
processes, and inputs on a filesystem other than local paths (through Beam's FileSystems)."""

import io
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from apache_beam.io.filesystem import BeamIOError, CompressionTypes, FileMetadata, FileSystem

from components.transform import TransformConfig, run_transform
from synthetic.generator import SyntheticConfig, write_csv
from tests.conftest import EMBEDDED_SAMPLE

REPO = Path(__file__).resolve().parents[2]


def outputs(out: Path) -> dict:
    """What must not depend on how the transform ran: the stats (times and run settings aside), the
    vocabulary, every example of every split, and every quarantined row."""
    import tensorflow as tf

    stats = json.loads((out / "stats.json").read_text())
    for key in ("seconds", "config", "input_sha256"):
        stats.pop(key)
    examples = {
        split: sorted(
            r.numpy()
            for p in sorted((out / split).glob("*.tfrecord.gz"))
            for r in tf.data.TFRecordDataset(str(p), compression_type="GZIP")
        )
        for split in ("train", "valid", "test")
    }
    quarantine = sorted(
        json.dumps({k: v for k, v in json.loads(line).items() if k != "file"}, sort_keys=True)
        for p in (out / "quarantine").glob("*.jsonl")
        for line in open(p)
    )
    return {
        "stats": stats,
        "vocabulary": (out / "vocabulary.json").read_text(),
        "examples": examples,
        "quarantine": quarantine,
    }


@pytest.fixture(scope="module")
def multi_file_input(tmp_path_factory):
    """Two CSV files with a few bad rows: the reading must number every line exactly, in every range."""
    folder = tmp_path_factory.mktemp("multi")
    for index in range(2):
        write_csv(
            SyntheticConfig(events=6000, domains=3, items_per_domain=150, seed=10 + index),
            str(folder / f"day{index}.csv"),
        )
        with open(folder / f"day{index}.csv", "a") as handle:
            handle.write("bad,row\n\nu1,i1,d1,yesterday\n")
    return folder


@pytest.mark.slow
def test_byte_ranges_give_exactly_what_whole_files_give(multi_file_input, tmp_path):
    runs = {}
    for chunk in (64 << 20, 4096, 1031):  # one range a file; ~60 ranges; ~250 ranges cutting lines anywhere
        out = tmp_path / f"out{chunk}"
        run_transform(
            TransformConfig(input=str(multi_file_input / "*.csv"), format="raw", output=str(out), chunk_bytes=chunk)
        )
        runs[chunk] = outputs(out)
    assert runs[4096] == runs[64 << 20] == runs[1031]
    lines = {json.loads(q)["line"] for q in runs[1031]["quarantine"]}
    assert {6002, 6003, 6004} <= lines  # the bad rows at the end of each file keep their line numbers


@pytest.fixture(scope="module")
def worker_pool():
    """Beam's Python worker pool in its own process: the portable runner starts SDK workers through it."""
    env = dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"], PYTHONPATH=str(REPO))
    process = subprocess.Popen(
        [sys.executable, "-m", "apache_beam.runners.worker.worker_pool_main", "--service_port=0"],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=str(REPO),
    )
    port, deadline = None, time.monotonic() + 300
    while port is None and time.monotonic() < deadline:  # bounded: the pool prints its port once it listens
        line = process.stderr.readline()
        match = re.search(r"port: \S+:(\d+)", line)
        port = int(match.group(1)) if match else None
    assert port, "the worker pool did not start"
    yield port
    process.kill()
    process.wait(timeout=60)


@pytest.mark.slow
@pytest.mark.parametrize("which", ["embedded sample", "multi-file input"])
def test_portable_runner_with_separate_workers_gives_the_same_output(worker_pool, multi_file_input, tmp_path, which):
    args = (
        ["--input", str(EMBEDDED_SAMPLE), "--format", "syncrec"]
        if which == "embedded sample"
        else ["--input", str(multi_file_input / "*.csv"), "--format", "raw", "--chunk-mb", "1"]
    )
    portable = [
        "--runner=PortableRunner",
        "--job_endpoint=embed",
        "--environment_type=EXTERNAL",
        f"--environment_config=localhost:{worker_pool}",
        "--sdk_worker_parallelism=2",
    ]
    for name, extra in (("direct", []), ("portable", portable)):
        result = subprocess.run(
            [sys.executable, "-m", "components.transform", *args, "--output", str(tmp_path / name), *extra],
            capture_output=True,
            text=True,
            timeout=900,
            cwd=str(REPO),
        )
        assert result.returncode == 0, result.stderr[-3000:]
    assert outputs(tmp_path / "portable") == outputs(tmp_path / "direct")


class _MemoryWriter(io.BytesIO):
    """What MemoryFileSystem.create returns: the bytes land in FILES when closed."""

    def __init__(self, files: dict, path: str):
        super().__init__()
        self.files, self.path = files, path

    def close(self):
        self.files[self.path] = self.getvalue()
        super().close()


class MemoryFileSystem(FileSystem):
    """A Beam filesystem for `mem://` paths held in a dict, an object store without folders (registered by
    being defined: Beam finds FileSystem subclasses by scheme)."""

    FILES: dict[str, bytes] = {}

    @classmethod
    def scheme(cls):
        return "mem"

    def join(self, base, *paths):
        return "/".join([base.rstrip("/"), *[p.strip("/") for p in paths]])

    def split(self, path):
        head, _, tail = path.rpartition("/")
        return head, tail

    def has_dirs(self):
        return False

    def mkdirs(self, path):
        pass

    def _list(self, dir_or_prefix):
        for path, data in self.FILES.items():
            if path.startswith(dir_or_prefix):
                yield FileMetadata(path, len(data), 1.0)

    def metadata(self, path):
        if path not in self.FILES:
            raise BeamIOError("no such file", {path: FileNotFoundError(path)})
        return FileMetadata(path, len(self.FILES[path]), 1.0)

    def exists(self, path):
        return path in self.FILES

    def size(self, path):
        return len(self.FILES[path])

    def last_updated(self, path):
        return 1.0

    def open(self, path, mime_type="application/octet-stream", compression_type=CompressionTypes.AUTO):
        return io.BufferedReader(io.BytesIO(self.FILES[path]))

    def create(self, path, mime_type="application/octet-stream", compression_type=CompressionTypes.AUTO):
        return _MemoryWriter(self.FILES, path)

    def copy(self, source, destination):
        for src, dst in zip(source, destination):
            self.FILES[dst] = self.FILES[src]

    def rename(self, source, destination):
        for src, dst in zip(source, destination):
            self.FILES[dst] = self.FILES.pop(src)

    def delete(self, paths):
        for path in paths:  # a path or a "folder" prefix
            for name in [n for n in self.FILES if n == path or n.startswith(path.rstrip("/") + "/")]:
                del self.FILES[name]


@pytest.mark.slow
def test_any_beam_filesystem_path_is_an_input(multi_file_input, tmp_path):
    for path in sorted(multi_file_input.glob("*.csv")):
        MemoryFileSystem.FILES[f"mem://bucket/logs/{path.name}"] = path.read_bytes()
    # (in this process, where mem:// is registered: the CLI in a subprocess would not know the scheme)
    run_transform(
        TransformConfig(
            input="mem://bucket/logs/day*.csv", format="raw", output=str(tmp_path / "mem"), chunk_bytes=4096
        )
    )
    run_transform(TransformConfig(input=str(multi_file_input / "*.csv"), format="raw", output=str(tmp_path / "local")))
    remote, local = outputs(tmp_path / "mem"), outputs(tmp_path / "local")
    assert remote == local
    stats = json.loads((tmp_path / "mem" / "stats.json").read_text())
    assert stats["config"]["files"] == ["mem://bucket/logs/day0.csv", "mem://bucket/logs/day1.csv"]


@pytest.mark.slow
def test_an_object_store_output_is_written_with_its_marker_last_and_never_overwritten(multi_file_input, tmp_path):
    from apache_beam.io.filesystems import FileSystems

    from components.readers import InputError

    config = TransformConfig(input=str(multi_file_input / "*.csv"), format="raw", output="mem://bucket/examples/run1")
    stats = run_transform(config)
    written = sorted(name for name in MemoryFileSystem.FILES if name.startswith("mem://bucket/examples/run1/"))
    assert "mem://bucket/examples/run1/stats.json" in written and not [n for n in written if "/_work/" in n]
    assert any("/train/part-" in n for n in written) and any("/quarantine/rejected" in n for n in written)
    with FileSystems.open("mem://bucket/examples/run1/stats.json") as handle:
        assert json.loads(handle.read())["rows_read"] == stats["rows_read"] == 12006
    with pytest.raises(InputError, match="object stores cannot replace a folder atomically"):
        run_transform(config)

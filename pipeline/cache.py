"""Content-addressed cache for pipeline stages (kfp.local has no caching of its own).

A stage's key hashes everything its output depends on: input file contents, its parameters and
the source of the code that computes it. Same key -> the cached output is reused (hard-linked
when possible, so reuse is cheap even for large example sets).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _hash_file(path: str, digest) -> None:
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)


# The sources that decide each stage's output (a change elsewhere must not invalidate it).
TRANSFORM_CODE = ("components/readers.py", "components/raw_log.py", "components/sequences.py", "components/vocabulary.py",
                  "components/example_codec.py", "components/beam_transforms.py", "components/transform.py",
                  "components/schema_io.py", "schemas")
TRAIN_CODE = ("model_keras", "components/vocabulary.py", "components/schema_io.py", "schemas")


def fingerprint(files: list[str] = (), params: dict | None = None, code_dirs: tuple[str, ...] = ()) -> str:
    """sha256 over file contents (in order), canonical JSON params and the code's sources
    (`code_dirs`: files or folders relative to the repository; folders contribute *.py and *.pbtxt)."""
    digest = hashlib.sha256()
    for path in files:
        digest.update(os.path.basename(path).encode())
        _hash_file(path, digest)
    digest.update(json.dumps(params or {}, sort_keys=True, default=str).encode())
    for entry in code_dirs:
        path = REPO / entry
        sources = [path] if path.is_file() else sorted([*path.rglob("*.py"), *path.rglob("*.pbtxt")])
        for source in sources:
            digest.update(str(source.relative_to(REPO)).encode())
            _hash_file(str(source), digest)
    return digest.hexdigest()[:24]


def _copy(src: str, dst: str) -> None:
    def link_or_copy(a, b):
        try:
            os.link(a, b)
        except OSError:
            shutil.copy2(a, b)

    if os.path.exists(dst):
        shutil.rmtree(dst)
    shutil.copytree(src, dst, copy_function=link_or_copy)


def restore(cache_dir: str, stage: str, key: str, target: str) -> bool:
    """Copy a cached output into `target`; False when there is none."""
    if not cache_dir:
        return False
    entry = os.path.join(cache_dir, stage, key)
    if not os.path.isfile(os.path.join(entry, ".complete")):
        return False
    _copy(entry, target)
    os.remove(os.path.join(target, ".complete"))
    return True


def store(cache_dir: str, stage: str, key: str, source: str) -> None:
    """Save `source` as the output for `key` (written aside, then renamed: never half an entry)."""
    if not cache_dir:
        return
    entry = os.path.join(cache_dir, stage, key)
    staging = entry + ".partial"
    _copy(source, staging)
    Path(staging, ".complete").touch()
    if os.path.exists(entry):
        shutil.rmtree(entry)
    os.rename(staging, entry)

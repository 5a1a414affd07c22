"""Content-addressed cache for run-local's stages (on Kubeflow, Kubeflow's own task cache is used).

A stage's key hashes everything its output depends on: input file contents, its parameters and
the source of the code that computes it. Same key -> the cached output is reused. Every entry holds
a manifest of its files' sha256, written when it is stored and checked when it is restored: a
truncated or edited entry is removed and reported, and the stage runs again. Entries are copied,
never hard-linked, so nothing a run does to its own folder can reach the cache.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from pathlib import Path

from components.readers import hash_local_file

REPO = Path(__file__).resolve().parents[1]
MANIFEST = ".manifest.json"

# The sources that decide each stage's output (a change elsewhere must not invalidate it).
TRANSFORM_CODE = ("components", "schemas")
TRAIN_CODE = ("model_keras", "schemas")


def fingerprint(files: list[str] = (), params: dict | None = None, code_dirs: tuple[str, ...] = ()) -> str:
    """sha256 over the input files (contents; path, size and time for remote ones), canonical JSON params
    and the code's sources (`code_dirs`: files or folders relative to the repository; folders contribute
    *.py and *.pbtxt)."""
    from components.transform import input_fingerprint

    digest = hashlib.sha256()
    digest.update(input_fingerprint(list(files)).encode())
    digest.update(json.dumps(params or {}, sort_keys=True, default=str).encode())
    for entry in code_dirs:
        path = REPO / entry
        sources = [path] if path.is_file() else sorted([*path.rglob("*.py"), *path.rglob("*.pbtxt")])
        for source in sources:
            digest.update(str(source.relative_to(REPO)).encode())
            hash_local_file(str(source), digest)
    return digest.hexdigest()[:24]


def _manifest(folder: str) -> dict[str, str]:
    """{relative path: sha256} of every file below `folder` (the manifest itself excluded)."""
    found = {}
    for base, _dirs, files in os.walk(folder):
        for name in files:
            path = os.path.join(base, name)
            relative = os.path.relpath(path, folder)
            if relative != MANIFEST:
                found[relative] = hash_local_file(path)
    return found


def _entry_problem(entry: str) -> str | None:
    """Why a cache entry cannot be trusted, or None."""
    try:
        with open(os.path.join(entry, MANIFEST), encoding="utf-8") as handle:
            expected = json.load(handle)
    except (OSError, ValueError):
        return "its manifest is missing or unreadable"
    actual = _manifest(entry)
    changed = sorted(k for k in expected if actual.get(k) != expected[k])
    extra = sorted(set(actual) - set(expected))
    if changed or extra:
        return f"{len(changed)} file(s) differ from the manifest (first: {(changed or extra)[0]})"
    return None


def restore(cache_dir: str, stage: str, key: str, target: str) -> bool:
    """Copy a verified cached output into `target`; False when there is none (or it was corrupt)."""
    if not cache_dir:
        return False
    entry = os.path.join(cache_dir, stage, key)
    if not os.path.isdir(entry):
        return False
    problem = _entry_problem(entry)
    if problem:
        print(
            f"cache: the {stage} entry {entry} is corrupt ({problem}); removed, the stage runs again", file=sys.stderr
        )
        shutil.rmtree(entry, ignore_errors=True)
        return False
    if os.path.exists(target):
        shutil.rmtree(target)
    shutil.copytree(entry, target, ignore=shutil.ignore_patterns(MANIFEST))
    return True


def store(cache_dir: str, stage: str, key: str, source: str) -> None:
    """Save `source` as the output for `key` with its manifest (written aside, then renamed: never half an entry)."""
    if not cache_dir:
        return
    entry = os.path.join(cache_dir, stage, key)
    staging = entry + ".partial"
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(source, staging)
    with open(os.path.join(staging, MANIFEST), "w", encoding="utf-8") as handle:
        json.dump(_manifest(staging), handle)
    if os.path.exists(entry):
        shutil.rmtree(entry)
    os.rename(staging, entry)

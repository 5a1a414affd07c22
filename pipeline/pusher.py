"""Pusher: copy a blessed SavedModel into TF Serving's layout, atomically, with a new version.

<serving_root>/<model_name>/<version>/saved_model.pb ..., <serving_root>/models.config for
`tensorflow_model_server --model_config_file` and <serving_root>/batching_parameters.txt for its
`--enable_batching --batching_parameters_file`. A push holds an exclusive lock on the serving root
(`.push.lock`), so two runs pushing at once take turns: versions are unique even within one second,
a run can re-check its blessing against the version that is really latest when its turn comes, and
any `.staging-*` folder found while holding the lock is a leftover of an interrupted push and is
removed. The version folder appears in one rename, so a server polling the folder never loads half
a model.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import time

from pipeline.config import MODEL_NAME

LOCK_FILE = ".push.lock"
BATCHING_FILE = "batching_parameters.txt"
# TF Serving's server-side batching (--enable_batching --batching_parameters_file): requests arriving
# within 2 ms are run as one batch of up to 64, which raises throughput on CPU at a small latency cost.
BATCHING_PARAMETERS = """max_batch_size { value: 64 }
batch_timeout_micros { value: 2000 }
max_enqueued_batches { value: 100 }
num_batch_threads { value: 2 }
pad_variable_length_inputs: true
"""
STAGING_PREFIX = ".staging-"


def models_config(model_name: str, container_base: str = "/models") -> str:
    """TF Serving's model_config_list (text proto) with the name and path quoted as proto strings."""
    if not MODEL_NAME.fullmatch(model_name):
        raise ValueError(f"model name {model_name!r} must be 1-64 letters, digits, '_', '-' or '.'")
    name, base = json.dumps(model_name), json.dumps(f"{container_base}/{model_name}")  # proto string escaping
    return (
        f"model_config_list {{\n  config {{\n    name: {name}\n    base_path: {base}\n"
        '    model_platform: "tensorflow"\n  }\n}\n'
    )


def versions(serving_root: str, model_name: str) -> list[int]:
    """Pushed version numbers of a model, ascending (folders named by digits only)."""
    folder = os.path.join(serving_root, model_name)
    return sorted(int(v) for v in os.listdir(folder) if v.isdigit()) if os.path.isdir(folder) else []


def latest_version(serving_root: str, model_name: str) -> str | None:
    """Path of the highest pushed version, if any."""
    found = versions(serving_root, model_name) if serving_root else []
    return os.path.join(serving_root, model_name, str(found[-1])) if found else None


def content_hash(folder: str) -> str:
    """sha256 over the relative paths and bytes of every file below `folder`."""
    digest = hashlib.sha256()
    for base, _dirs, files in sorted(os.walk(folder)):
        for name in sorted(files):
            path = os.path.join(base, name)
            digest.update(os.path.relpath(path, folder).encode())
            with open(path, "rb") as handle:
                for chunk in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(chunk)
    return digest.hexdigest()


@contextlib.contextmanager
def serving_lock(serving_root: str):
    """Exclusive lock on the serving root for the duration of a push (blocks until it is free)."""
    os.makedirs(serving_root, exist_ok=True)
    with open(os.path.join(serving_root, LOCK_FILE), "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def remove_stale_staging(folder: str) -> list[str]:
    """Delete leftovers of interrupted pushes (call with the lock held: no push is under way)."""
    stale = [name for name in os.listdir(folder) if name.startswith(STAGING_PREFIX)] if os.path.isdir(folder) else []
    for name in stale:
        shutil.rmtree(os.path.join(folder, name), ignore_errors=True)
    return stale


def push_locked(saved_model_dir: str, serving_root: str, model_name: str, container_base: str = "/models") -> str:
    """Copy into a new version folder and return its path; the caller holds `serving_lock`.

    Re-pushing the very model already served last (an unchanged re-run) returns that version."""
    folder = os.path.join(serving_root, model_name)
    os.makedirs(folder, exist_ok=True)
    remove_stale_staging(folder)
    existing = versions(serving_root, model_name)
    if existing and content_hash(os.path.join(folder, str(existing[-1]))) == content_hash(saved_model_dir):
        return os.path.join(folder, str(existing[-1]))
    version = max(existing + [int(time.time()) - 1]) + 1  # unique: the lock orders pushes
    staging = os.path.join(folder, f"{STAGING_PREFIX}{version}")
    shutil.copytree(saved_model_dir, staging)
    target = os.path.join(folder, str(version))
    os.rename(staging, target)
    for name, text in (
        ("models.config", models_config(model_name, container_base)),
        (BATCHING_FILE, BATCHING_PARAMETERS),
    ):
        path = os.path.join(serving_root, name)
        with open(path + ".tmp", "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(path + ".tmp", path)
    return target


def push(saved_model_dir: str, serving_root: str, model_name: str, container_base: str = "/models") -> str:
    """push_locked under the serving root's lock."""
    with serving_lock(serving_root):
        return push_locked(saved_model_dir, serving_root, model_name, container_base)

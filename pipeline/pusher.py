"""Pusher: copy a blessed SavedModel into TF Serving's layout, atomically, with a new version.

<serving_root>/<model_name>/<version>/saved_model.pb ..., <serving_root>/models.config for
`tensorflow_model_server --model_config_file` and <serving_root>/batching_parameters.txt for its
`--enable_batching --batching_parameters_file`. models.config labels the pushed version `stable`; a
push as canary labels it `canary`, keeps `stable` where it was and has TF Serving load both (a
`specific` version policy). A push holds an exclusive lock on the serving root, so two runs pushing at
once take turns: versions are unique even within one second, a run can re-check its blessing against
the version served when its turn comes, and any `.staging-*` folder found while holding the lock is a
leftover of an interrupted push and is removed. The lock is a directory created with mkdir, which is
atomic on NFS and other shared (RWX) volumes where flock may be local to one node; a lock older than
LOCK_STALE_S (longer than any push) is taken to be left by a killed pod and broken. The version folder
appears in one rename, so a server polling the folder never loads half a model; a failed copy removes
its own staging folder and says why in one line.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import socket
import time

from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from components.readers import hash_local_file
from pipeline.config import MODEL_NAME

LOCK_DIR = ".push.lock"
LOCK_STALE_S = 1800.0  # a push copies one SavedModel: minutes at most, so a lock this old was left by a dead pod
LOCK_POLL_S = 0.2
BATCHING_FILE = "batching_parameters.txt"
CONFIG_FILE = "models.config"
# TF Serving's server-side batching (--enable_batching --batching_parameters_file): requests arriving
# within 2 ms are run as one batch of up to 64, which raises throughput on CPU at a small latency cost.
# Padding stays on so that requests of any history width merge (without it a batch mixing widths fails
# for every request in it); the signatures make padding harmless (model_keras/signatures.py).
BATCHING_PARAMETERS = """max_batch_size { value: 64 }
batch_timeout_micros { value: 2000 }
max_enqueued_batches { value: 100 }
num_batch_threads { value: 2 }
pad_variable_length_inputs: true
"""
STAGING_PREFIX = ".staging-"


class PushFailed(Exception):
    """The copy into the serving root failed; str() is one line naming the cause."""


def models_config(
    model_name: str, container_base: str = "/models", stable: int | None = None, canary: int | None = None
) -> str:
    """TF Serving's ModelServerConfig (text proto): the model, its version policy and labels.

    Without a canary TF Serving serves the latest version and `stable` names it; with one it loads
    exactly the stable and the canary version."""
    if not MODEL_NAME.fullmatch(model_name):
        raise ValueError(f"model name {model_name!r} must be 1-64 letters, digits, '_', '-' or '.'")
    config = model_server_config_pb2.ModelServerConfig()
    model = config.model_config_list.config.add(
        name=model_name, base_path=f"{container_base}/{model_name}", model_platform="tensorflow"
    )
    if canary is not None and stable is not None:
        model.model_version_policy.specific.versions.extend(sorted({stable, canary}))
    else:
        model.model_version_policy.latest.num_versions = 1
    for label, version in (("stable", stable), ("canary", canary)):
        if version is not None:
            model.version_labels[label] = version
    return text_format.MessageToString(config)


def read_labels(serving_root: str, model_name: str) -> dict[str, int]:
    """The version labels models.config gives a model ({} without the file or the model)."""
    path = os.path.join(serving_root, CONFIG_FILE)
    if not os.path.exists(path):
        return {}
    with open(path, encoding="utf-8") as handle:
        config = text_format.Parse(handle.read(), model_server_config_pb2.ModelServerConfig())
    found = [c for c in config.model_config_list.config if c.name == model_name]
    return dict(found[0].version_labels) if found else {}


def versions(serving_root: str, model_name: str) -> list[int]:
    """Pushed version numbers of a model, ascending (folders named by digits only)."""
    folder = os.path.join(serving_root, model_name)
    return sorted(int(v) for v in os.listdir(folder) if v.isdigit()) if os.path.isdir(folder) else []


def latest_version(serving_root: str, model_name: str) -> str | None:
    """Path of the highest pushed version, if any."""
    found = versions(serving_root, model_name) if serving_root else []
    return os.path.join(serving_root, model_name, str(found[-1])) if found else None


def served_version(serving_root: str, model_name: str) -> str | None:
    """Path of the version clients get: the one labelled `stable`, else the latest (what the Resolver finds)."""
    stable = read_labels(serving_root, model_name).get("stable") if serving_root else None
    if stable is not None and stable in versions(serving_root, model_name):
        return os.path.join(serving_root, model_name, str(stable))
    return latest_version(serving_root, model_name)


def content_hash(folder: str) -> str:
    """sha256 over the relative paths and bytes of every file below `folder`."""
    digest = hashlib.sha256()
    for base, _dirs, files in sorted(os.walk(folder)):
        for name in sorted(files):
            path = os.path.join(base, name)
            digest.update(os.path.relpath(path, folder).encode())
            hash_local_file(path, digest)
    return digest.hexdigest()


@contextlib.contextmanager
def serving_lock(serving_root: str, stale_s: float = LOCK_STALE_S):
    """Exclusive lock on the serving root for the duration of a push (waits until it is free)."""
    os.makedirs(serving_root, exist_ok=True)
    lock = os.path.join(serving_root, LOCK_DIR)
    while True:
        try:
            os.mkdir(lock)
            break
        except FileExistsError:
            try:
                age = time.time() - os.stat(lock).st_mtime
            except FileNotFoundError:
                continue  # released meanwhile
            if age > stale_s:
                shutil.rmtree(lock, ignore_errors=True)  # left by a pod killed mid-push
                continue
            time.sleep(LOCK_POLL_S)
    with open(os.path.join(lock, "owner"), "w", encoding="utf-8") as handle:
        handle.write(f"{socket.gethostname()} pid {os.getpid()} since {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}\n")
    try:
        yield
    finally:
        shutil.rmtree(lock, ignore_errors=True)


def remove_stale_staging(folder: str) -> list[str]:
    """Delete leftovers of interrupted pushes (call with the lock held: no push is under way)."""
    stale = [name for name in os.listdir(folder) if name.startswith(STAGING_PREFIX)] if os.path.isdir(folder) else []
    for name in stale:
        shutil.rmtree(os.path.join(folder, name), ignore_errors=True)
    return stale


def _write_atomically(path: str, text: str) -> None:
    with open(path + ".tmp", "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(path + ".tmp", path)


def _copy(source: str, staging: str) -> None:
    """copytree into the staging folder; on any failure the folder is removed and PushFailed says why."""
    try:
        shutil.copytree(source, staging)
    except (OSError, shutil.Error) as err:
        shutil.rmtree(staging, ignore_errors=True)
        causes = err.args[0] if isinstance(err, shutil.Error) and err.args and isinstance(err.args[0], list) else None
        reason = causes[0][2] if causes else (err.strerror or str(err))
        if isinstance(err, OSError) and err.errno == errno.ENOSPC or "No space left" in str(reason):
            reason = "no space left on the volume"
        raise PushFailed(f"cannot copy the model into {os.path.dirname(staging)}: {reason}") from None


def push_locked(
    saved_model_dir: str, serving_root: str, model_name: str, container_base: str = "/models", canary: bool = False
) -> str:
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
    _copy(saved_model_dir, staging)
    target = os.path.join(folder, str(version))
    os.rename(staging, target)
    served = served_version(serving_root, model_name)
    stable = int(os.path.basename(served)) if canary and served and served != target else None
    labels = {"stable": stable, "canary": version} if stable is not None else {"stable": version}
    _write_atomically(
        os.path.join(serving_root, CONFIG_FILE), models_config(model_name, container_base, **labels)
    )
    for where in (serving_root, folder):  # beside models.config, and in the model folder KServe mounts alone
        _write_atomically(os.path.join(where, BATCHING_FILE), BATCHING_PARAMETERS)
    return target


def push(
    saved_model_dir: str, serving_root: str, model_name: str, container_base: str = "/models", canary: bool = False
) -> str:
    """push_locked under the serving root's lock."""
    with serving_lock(serving_root):
        return push_locked(saved_model_dir, serving_root, model_name, container_base, canary)

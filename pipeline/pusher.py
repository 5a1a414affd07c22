"""Pusher: copy a blessed SavedModel into TF Serving's layout, atomically, with a new version.

<serving_root>/<model_name>/<version>/saved_model.pb ... and <serving_root>/models.config for
`tensorflow_model_server --model_config_file`. The version directory appears in one rename, so
a server polling the folder never loads half a model.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import time

MODELS_CONFIG = """model_config_list {{
  config {{
    name: "{name}"
    base_path: "{base}/{name}"
    model_platform: "tensorflow"
  }}
}}
"""


def next_version(folder: str) -> int:
    versions = [int(v) for v in os.listdir(folder) if v.isdigit()] if os.path.isdir(folder) else []
    return max(versions + [int(time.time()) - 1]) + 1


def content_hash(folder: str) -> str:
    """sha256 over the relative paths and bytes of every file below `folder`."""
    digest = hashlib.sha256()
    for base, _dirs, files in sorted(os.walk(folder)):
        for name in sorted(files):
            path = os.path.join(base, name)
            digest.update(os.path.relpath(path, folder).encode())
            with open(path, "rb") as handle:
                digest.update(handle.read())
    return digest.hexdigest()


def push(saved_model_dir: str, serving_root: str, model_name: str, container_base: str = "/models") -> str:
    """Copy into a new version directory and return its path; re-pushing the very same model
    (an unchanged re-run) returns the existing version instead of serving a duplicate."""
    folder = os.path.join(serving_root, model_name)
    os.makedirs(folder, exist_ok=True)
    versions = sorted((int(v) for v in os.listdir(folder) if v.isdigit()), reverse=True)
    if versions and content_hash(os.path.join(folder, str(versions[0]))) == content_hash(saved_model_dir):
        return os.path.join(folder, str(versions[0]))
    version = next_version(folder)
    staging = os.path.join(folder, f".staging-{version}")
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(saved_model_dir, staging)
    target = os.path.join(folder, str(version))
    os.rename(staging, target)
    with open(os.path.join(serving_root, "models.config"), "w", encoding="utf-8") as handle:
        handle.write(MODELS_CONFIG.format(name=model_name, base=container_base))
    return target

"""The models a server holds: which versions, under which labels, loaded and warmed as TF Serving does.

With `<serving_root>/models.config` (TF Serving's ModelServerConfig, written by the Pusher) each listed
model's versions follow its model_version_policy (latest N, all, or specific versions; TF Serving's default
is the latest one) and its version_labels name versions (`stable`, `canary`). Without it, every model
folder under the root is served at its latest version. A version is loaded, then warmed by replaying
assets.extra/tf_serving_warmup_requests through the same path requests take (the batching session when
batching is on): a version whose warm-up fails is not served, as in TF Serving, and its error is kept for
GetModelStatus. Model names in requests are looked up among the configured models, never joined into paths.
"""

from __future__ import annotations

import os
import re
import threading

import numpy as np
import tensorflow as tf
from google.protobuf import text_format
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow_serving.apis import prediction_log_pb2
from tensorflow_serving.config import model_server_config_pb2

from serving.batching import BATCHING_FILE, BatchingParameters, BatchScheduler
from serving.errors import BadRequest, NotFound, ServingError
from serving.inputs import decode_proto

MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
CONFIG_FILE = "models.config"
WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")


class LoadFailed(Exception):
    """A version could not be loaded or warmed; str() says which and why."""


def readable_error(err: Exception) -> str:
    """The user-facing part of a TensorFlow error: an assertion's own message when there is one."""
    message = getattr(err, "message", str(err))
    match = re.search(r"assertion failed: \[(.*?)\s*\] \[", message) or re.search(
        r"assertion failed: \[(.*?)\s*\]", message
    )
    if match:
        return match.group(1).rstrip(". ")
    lines = [line for line in message.strip().splitlines() if line.strip() and "Graph execution error" not in line]
    return lines[0].strip() if lines else "the model could not run this request"


class ServedModel:
    """One loaded version: its signatures, their SignatureDefs, and a batch scheduler per signature."""

    def __init__(self, name: str, version: int, path: str, batching: BatchingParameters | None = None):
        self.name, self.version, self.path = name, version, path
        self.loaded = tf.saved_model.load(path)
        self.signatures = self.loaded.signatures
        with open(os.path.join(path, "saved_model.pb"), "rb") as handle:
            meta_graph = saved_model_pb2.SavedModel.FromString(handle.read()).meta_graphs[0]
        self.signature_defs = {k: v for k, v in meta_graph.signature_def.items() if not k.startswith("__")}
        self.schedulers = (
            {name: BatchScheduler(batching, self._runner(name)) for name in self.signatures} if batching else {}
        )

    def input_specs(self, signature: str) -> dict:
        if signature not in self.signatures:
            raise BadRequest(f"no signature {signature!r}; available: {sorted(self.signatures)}")
        return self.signatures[signature].structured_input_signature[1]

    def _runner(self, signature: str):
        function, specs = self.signatures[signature], self.input_specs(signature)

        def run(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            try:
                tensors = {k: tf.constant(v, dtype=specs[k].dtype) for k, v in arrays.items()}
                return {k: v.numpy() for k, v in function(**tensors).items()}
            except (tf.errors.InvalidArgumentError, ValueError, TypeError) as err:
                raise BadRequest(readable_error(err)) from err

        return run

    def run(self, signature: str, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run one request (merged with others when batching is on); ServingError for anything wrong."""
        expected = self.input_specs(signature)
        missing, extra = sorted(set(expected) - set(arrays)), sorted(set(arrays) - set(expected))
        if missing or extra:
            raise BadRequest(
                f"signature {signature!r} takes inputs {sorted(expected)}; missing {missing}, unexpected {extra}"
            )
        if signature in self.schedulers:
            return self.schedulers[signature].run(arrays)
        return self._runner(signature)(arrays)

    def run_request(self, request) -> dict[str, np.ndarray]:
        """A PredictRequest's inputs decoded against the signature, then run."""
        signature = request.model_spec.signature_name or "serving_default"
        specs = self.input_specs(signature)
        arrays = {key: decode_proto(key, request.inputs[key], specs[key]) for key in specs if key in request.inputs}
        arrays.update({key: None for key in request.inputs if key not in specs})
        return self.run(signature, arrays)

    def warm_up(self) -> int:
        """Replay the version's warmup requests through `run_request`; LoadFailed on the first that fails."""
        path = os.path.join(self.path, WARMUP_FILE)
        count = 0
        if os.path.exists(path):
            for record in tf.data.TFRecordDataset(path):
                request = prediction_log_pb2.PredictionLog.FromString(record.numpy()).predict_log.request
                try:
                    self.run_request(request)
                except ServingError as err:
                    raise LoadFailed(
                        f"{self.name} version {self.version}: warm-up request {count + 1} "
                        f"({request.model_spec.signature_name or 'serving_default'}) failed: {err}"
                    ) from err
                count += 1
        return count

    def stop(self) -> None:
        for scheduler in self.schedulers.values():
            scheduler.stop()


def read_model_config(serving_root: str) -> list | None:
    """models.config's model_config_list entries, or None when the file is absent."""
    path = os.path.join(serving_root, CONFIG_FILE)
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    try:
        config = text_format.Parse(text, model_server_config_pb2.ModelServerConfig())
    except text_format.ParseError as err:
        raise LoadFailed(f"{path}: not a ModelServerConfig text proto: {err}") from err
    return list(config.model_config_list.config)


def on_disk(folder: str) -> list[int]:
    """Version folders holding a saved_model.pb, ascending."""
    if not os.path.isdir(folder):
        return []
    found = [v for v in os.listdir(folder) if v.isdigit() and os.path.isfile(os.path.join(folder, v, "saved_model.pb"))]
    return sorted(int(v) for v in found)


def wanted_versions(config, present: list[int]) -> list[int]:
    """The versions a model_version_policy keeps loaded, among those present (TF Serving's default: latest 1)."""
    policy = config.model_version_policy if config is not None else None
    choice = policy.WhichOneof("policy_choice") if policy is not None else None
    if choice == "all":
        return present
    if choice == "specific":
        return [v for v in present if v in set(policy.specific.versions)]
    count = policy.latest.num_versions if choice == "latest" and policy.latest.num_versions else 1
    return present[-count:]


class ModelRepository:
    """Every served model's loaded versions and labels; `poll` brings them in line with the folder."""

    def __init__(self, serving_root: str, batching: bool = True):
        self.serving_root = serving_root
        path = os.path.join(serving_root, BATCHING_FILE)
        self.batching = BatchingParameters.load(path) if batching and os.path.exists(path) else None
        self._models: dict[str, dict[int, ServedModel]] = {}
        self._labels: dict[str, dict[str, int]] = {}
        self.failures: dict[tuple[str, int], str] = {}
        self._lock = threading.Lock()

    def _configured(self) -> dict[str, tuple]:
        """name -> (folder, config or None) of every model to serve."""
        configs = read_model_config(self.serving_root)
        if configs is None:
            names = sorted(os.listdir(self.serving_root)) if os.path.isdir(self.serving_root) else []
            return {
                n: (os.path.join(self.serving_root, n), None)
                for n in names
                if MODEL_NAME.fullmatch(n) and os.path.isdir(os.path.join(self.serving_root, n))
            }
        found = {}
        for config in configs:
            if not MODEL_NAME.fullmatch(config.name):
                raise LoadFailed(f"models.config names a model {config.name!r} that is not a safe name")
            base = config.base_path.rstrip("/")
            folder = base if os.path.isdir(base) else os.path.join(self.serving_root, os.path.basename(base))
            found[config.name] = (folder, config)
        return found

    def poll(self, strict: bool = False) -> list[str]:
        """Load and warm wanted versions, swap them in, unload the unwanted; returns what changed.
        A version that fails to load is recorded (and raised with strict=True, as at start-up)."""
        changed = []
        for name, (folder, config) in self._configured().items():
            served = dict(self._models.get(name, {}))
            wanted = wanted_versions(config, on_disk(folder))
            for version in wanted:
                if version in served or (name, version) in self.failures:
                    continue
                try:
                    model = ServedModel(name, version, os.path.join(folder, str(version)), self.batching)
                    model.warm_up()
                except Exception as err:  # noqa: BLE001 (a broken version must not take the server down)
                    self.failures[(name, version)] = str(err)
                    if strict:
                        raise LoadFailed(str(err)) from err
                    continue
                served[version] = model
                changed.append(f"{name}/{version}")
            keep = {v: m for v, m in served.items() if v in wanted}
            labels = dict(config.version_labels) if config is not None else {}
            with self._lock:
                old, self._models[name], self._labels[name] = self._models.get(name, {}), keep, labels
            for version, model in old.items():
                if version not in keep:
                    model.stop()
        return changed

    def names(self) -> list[str]:
        with self._lock:
            return sorted(n for n, versions in self._models.items() if versions)

    def get(self, name: str, version: int | None = None, label: str | None = None) -> ServedModel:
        """The version a request asks for (TF Serving's errors for what is not there)."""
        with self._lock:
            versions = dict(self._models.get(name, {}))
            labels = dict(self._labels.get(name, {}))
        if not versions:
            raise NotFound(f"Servable not found for request: Latest({name}); served models: {self.names()}")
        if label:
            if label not in labels:
                raise BadRequest(f"Unrecognized servable version label: {label}")
            version = labels[label]
        if version:
            if version not in versions:
                raise NotFound(f"Servable not found for request: Specific({name}, {version})")
            return versions[version]
        return versions[max(versions)]

    def statuses(self, name: str, version: int | None = None) -> list[tuple[int, str, str]]:
        """(version, state, error message) of a model's loaded and failed versions (GetModelStatus)."""
        with self._lock:
            loaded = sorted(self._models.get(name, {}))
        failed = sorted(v for n, v in self.failures if n == name)
        rows = [(v, "AVAILABLE", "") for v in loaded] + [(v, "END", self.failures[(name, v)]) for v in failed]
        rows = [r for r in rows if version in (None, 0, r[0])]
        if not rows:
            what = f"version {version} of model {name}" if version else f"any versions of model {name}"
            raise NotFound(f"Could not find {what}")
        return sorted(rows)

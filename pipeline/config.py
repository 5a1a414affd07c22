"""Pipeline configuration, defined once: typed defaults -> YAML file -> `--set key=value` flags.

`PipelineConfig` holds every pipeline setting with its default and its check. The fields marked
`runtime` are the parameters of the compiled pipeline (visible in pipeline.yaml); `create_pipeline`'s
signature and the arguments of a run are both derived from them. Model settings live in
`model_keras.config.ModelConfig`; here they travel as one dict (`model`, written `model.KEY` or bare
KEY on the command line) and reach the pipeline as the JSON parameter `model_settings`.
Every value is checked when the config is built, before any stage runs, and all problems are
reported in one message.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
from dataclasses import dataclass, field
from typing import Any

import yaml

from components.readers import FORMATS
from components.transform import DEFAULT_INPUT
from model_keras import registry
from model_keras.config import PRESETS, ModelConfig, parse_settings
from model_keras.protocol import POOLS, EvalProtocol
from pipeline.stage_table import STAGES, Stage
from schemas import sequence_settings

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_MODEL = PRESETS["pipeline"]  # the model settings a pipeline run trains with (model_keras/config.py)
MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
KUBEFLOW_SERVING_ROOT = "/models"
ALIASES = {"input": "input_path", "format": "input_format"}  # command-line flag names
DRIFT_ACTIONS = ("stop", "warn")
# pipeline.data_statistics' threshold names -> the settings that hold them
DRIFT_THRESHOLDS = {
    "domain_mix": "drift_max_domain_mix",
    "history_length": "drift_max_history_length",
    "multi_domain": "drift_max_multi_domain",
    "oov_rate": "drift_max_oov_rate",
    "new_labels": "drift_max_new_labels",
}
KIND_NAMES = {"int": "a whole number", "float": "a number"}


def runtime(default, doc: str):
    """A field that is also a parameter of the compiled pipeline."""
    return field(default=default, metadata={"runtime": True, "doc": doc})


def setting(default, doc: str, **kwargs):
    """A field that is not a pipeline parameter (run-local only)."""
    return field(default=default, metadata={"runtime": False, "doc": doc}, **kwargs)


@dataclass
class PipelineConfig:
    """Every setting of a pipeline run; see each field's doc (`python -m pipeline settings` lists them)."""

    input_path: str = runtime(
        os.path.relpath(DEFAULT_INPUT, REPO), "raw logs: files, directories or globs, comma-separated"
    )
    input_format: str = runtime("syncrec", f"one of {', '.join(FORMATS)}")
    max_len: int = runtime(sequence_settings.default("max_len"), sequence_settings.doc("max_len"))
    min_events: int = runtime(sequence_settings.default("min_events"), sequence_settings.doc("min_events"))
    min_item_count: int = runtime(sequence_settings.default("min_item_count"), sequence_settings.doc("min_item_count"))
    domains: str = runtime("", "comma-separated allow-list of domains ('' = any)")
    domain_names: str = runtime("", "abxi: names of domain 0, 1, ...")
    warm_start: str = runtime("", "'' or 'none' = from scratch, 'latest' = the last pushed model, or a SavedModel path")
    num_negatives: int = runtime(EvalProtocol.num_negatives, "evaluation: sampled negatives per user")
    negative_pool: str = runtime(EvalProtocol.pool, "evaluation: negatives from the label's 'domain' or from 'all' items")
    full_ranking: bool = runtime(EvalProtocol.full_ranking, "evaluation: rank the label among all items of its domain")
    blessing_tolerance: float = runtime(0.01, "a domain's valid NDCG@10 may drop this much below the served model's")
    max_rejected_fraction: float = runtime(0.5, "more quarantined rows than this stops the run")
    drift_action: str = runtime("stop", "a drift anomaly against the served model's data: 'stop' the run or 'warn'")
    drift_max_domain_mix: float = runtime(0.15, "drift: largest change of a domain's share of events (L-infinity)")
    drift_max_history_length: float = runtime(0.15, "drift: Jensen-Shannon divergence of history lengths")
    drift_max_multi_domain: float = runtime(0.2, "drift: change of the share of users active in several domains")
    drift_max_oov_rate: float = runtime(0.1, "drift: change of a domain's OOV rate")
    drift_max_new_labels: float = runtime(0.5, "drift: share of test labels the served model never saw")
    model_name: str = runtime("syncrec", "the TF Serving model name: letters, digits, '_', '-', '.'")
    serving_root: str = runtime(
        "", f"TF Serving's model folder ('' = ROOT/serving locally, {KUBEFLOW_SERVING_ROOT} on Kubeflow)"
    )
    push_as_canary: bool = runtime(
        False, "label the pushed version 'canary' and keep 'stable' on the served one (TF Serving loads both)"
    )
    models_pvc: str = runtime(
        "syncrec-models", "Kubeflow: the PersistentVolumeClaim that holds the serving root (see deploy/)"
    )
    root: str = setting("runs/local", "run-local: the run folder (report/, serving/, cache/, logs/, pipeline_root/)")
    model: dict = setting(None, "model settings (model_keras.config.ModelConfig)")

    def __post_init__(self):
        if self.model is None:
            self.model = dict(DEFAULT_MODEL)

    # ------------------------------------------------------------------ checks
    def problems(self) -> list[str]:
        """Every problem with the values, all at once (types first, then ranges)."""
        out = []
        for f in dataclasses.fields(self):
            value, kind = (
                getattr(self, f.name),
                {"int": int, "float": (int, float), "bool": bool, "str": str, "dict": dict}[f.type],
            )
            if isinstance(value, bool) and kind is not bool or not isinstance(value, kind):
                out.append(f"{f.name} must be {KIND_NAMES.get(f.type, 'a ' + f.type)} (got {value!r})")
        if out:
            return out
        checks = [
            (self.input_format in FORMATS, f"input_format must be one of {list(FORMATS)} (got {self.input_format!r})"),

            (1 <= self.num_negatives <= 100_000, f"num_negatives must be in [1, 100000] (got {self.num_negatives})"),
            (
                self.negative_pool in POOLS,
                f"negative_pool must be 'domain' or 'all' (got {self.negative_pool!r})",
            ),
            (
                math.isfinite(self.blessing_tolerance) and 0 <= self.blessing_tolerance <= 1,
                f"blessing_tolerance must be in [0, 1] (got {self.blessing_tolerance})",
            ),
            (
                math.isfinite(self.max_rejected_fraction) and 0 <= self.max_rejected_fraction <= 1,
                f"max_rejected_fraction must be in [0, 1] (got {self.max_rejected_fraction})",
            ),
            (self.drift_action in DRIFT_ACTIONS, f"drift_action must be 'stop' or 'warn' (got {self.drift_action!r})"),
            *[
                (
                    math.isfinite(getattr(self, name)) and 0 <= getattr(self, name) <= 1,
                    f"{name} must be in [0, 1] (got {getattr(self, name)})",
                )
                for name in DRIFT_THRESHOLDS.values()
            ],
            (
                bool(MODEL_NAME.fullmatch(self.model_name)),
                f"model_name {self.model_name!r} must be 1-64 letters, digits, '_', '-' or '.', "
                "starting with a letter or digit",
            ),
            (bool(self.input_path.strip()), "input_path must name at least one file, directory or glob"),
        ]
        out = [message for ok, message in checks if not ok]
        out += sequence_settings.problems(
            {"max_len": self.max_len, "min_events": self.min_events, "min_item_count": self.min_item_count}
        )
        try:
            out += [f"model.{p}" for p in ModelConfig.from_dict(self.model).setting_problems()]
        except ValueError as err:
            out.append(str(err))
        architecture = self.model.get("architecture", "syncrec")
        if architecture != ModelConfig.architecture and architecture in registry.names():  # imports that model only
            reason = registry.model_class(architecture).not_servable_reason
            if reason:
                out.append(f"model.architecture={architecture}: the pipeline pushes a model to serve, and {reason}")
        return out

    def validate(self) -> "PipelineConfig":
        """Raise ValueError listing every problem."""
        problems = self.problems()
        if problems:
            raise ValueError("invalid settings: " + "; ".join(problems))
        return self

    # ------------------------------------------------------------------ what the pipeline gets
    def model_settings(self) -> str:
        """The model settings as the JSON pipeline parameter."""
        return json.dumps(self.model, sort_keys=True)

    def paths(self) -> dict[str, str]:
        """run-local's folders under ROOT."""
        root = os.path.abspath(self.root)
        return {
            "root": root,
            "serving_root": self.serving_root or os.path.join(root, "serving"),
            "cache_dir": os.path.join(root, "cache"),
            "report_dir": os.path.join(root, "report"),
            "pipeline_root": os.path.join(root, "pipeline_root"),
            "logs": os.path.join(root, "logs"),
        }

    def input_list(self, absolute: bool) -> str:
        """The comma-separated inputs, made absolute for local runs."""
        parts = [p.strip() for p in self.input_path.split(",") if p.strip()]
        return ",".join(os.path.abspath(p) if absolute else p for p in parts)


def runtime_fields() -> list[dataclasses.Field]:
    """The fields that are parameters of the compiled pipeline."""
    return [f for f in dataclasses.fields(PipelineConfig) if f.metadata.get("runtime")]


# Parameters the pipeline has besides the runtime fields: model settings as JSON, and the two
# run-local-only folders (empty on Kubeflow, where Kubeflow caches and the UI shows metrics).
EXTRA_PARAMETERS = {
    "model_settings": (str, json.dumps(DEFAULT_MODEL, sort_keys=True)),
    "cache_dir": (str, ""),
    "report_dir": (str, ""),
}


def pipeline_parameters() -> dict[str, tuple[type, Any]]:
    """name -> (type, default on Kubeflow) of every parameter of the compiled pipeline."""
    types = {"int": int, "float": float, "bool": bool, "str": str}
    params = {f.name: (types[f.type], f.default) for f in runtime_fields()}
    params["serving_root"] = (str, KUBEFLOW_SERVING_ROOT)
    return {**params, **EXTRA_PARAMETERS}


def pipeline_arguments(config: PipelineConfig, local: bool = True) -> dict:
    """The pipeline's parameters for one run: local paths made absolute under ROOT, or Kubeflow's."""
    paths = config.paths()
    args = {f.name: float(getattr(config, f.name)) if f.type == "float" else getattr(config, f.name) for f in runtime_fields()}  # 1 -> 1.0: KFP types floats strictly
    args["input_path"] = config.input_list(absolute=local)
    args["model_settings"] = config.model_settings()
    if not local and config.serving_root and not _under(config.serving_root, KUBEFLOW_SERVING_ROOT):
        raise ValueError(
            f"serving_root {config.serving_root!r} is not on the models volume: on Kubeflow it is mounted at "
            f"{KUBEFLOW_SERVING_ROOT}, so use {KUBEFLOW_SERVING_ROOT} or a folder below it (elsewhere the Pusher "
            "would write to the pod's own disk, which TF Serving never sees)"
        )
    args["serving_root"] = paths["serving_root"] if local else (config.serving_root or KUBEFLOW_SERVING_ROOT)
    args["cache_dir"] = paths["cache_dir"] if local else ""
    args["report_dir"] = paths["report_dir"] if local else ""
    return args


def _under(path: str, root: str) -> bool:
    path = os.path.normpath(path)
    return path == root or path.startswith(root.rstrip("/") + "/")


def apply_overrides(config: PipelineConfig, values: dict) -> PipelineConfig:
    """Apply settings (from YAML or --set): pipeline keys by name, anything else is a model setting."""
    names = {f.name for f in dataclasses.fields(PipelineConfig)} - {"model"}
    model = dict(config.model)
    for key, value in values.items():
        key = ALIASES.get(key, key)
        if key == "model" and isinstance(value, dict):
            model.update(value)
        elif key in names:
            setattr(config, key, value)
        else:
            model[key.removeprefix("model.")] = value
    ModelConfig.from_dict(model)  # raises ValueError naming unknown keys
    config.model = model
    return config


def load_config(yaml_path: str | None = None, sets: list[str] | None = None, **flags) -> PipelineConfig:
    """Defaults, then the YAML file, then command-line flags, then --set; checked before returning."""
    config = PipelineConfig()
    if yaml_path:
        try:
            with open(yaml_path, encoding="utf-8") as handle:
                values = yaml.safe_load(handle) or {}
        except (OSError, yaml.YAMLError) as err:
            raise ValueError(f"cannot read config file {yaml_path}: {err}") from err
        if not isinstance(values, dict):
            raise ValueError(f"config file {yaml_path} must hold a mapping of settings")
        apply_overrides(config, values)
    apply_overrides(config, {k: v for k, v in flags.items() if v is not None})
    return apply_overrides(config, parse_settings(sets)).validate()


def describe_settings() -> str:
    """Every pipeline setting with its default and doc, then the model presets (`python -m pipeline settings`)."""
    lines = []
    for f in dataclasses.fields(PipelineConfig):
        default = f.default if f.name != "model" else DEFAULT_MODEL
        lines.append(f"{f.name:<24} {default!r:<34} {f.metadata.get('doc', '')}")
    lines += ["", "model presets (--set preset=NAME; later --set flags win; model_keras/config.py):"]
    lines += [f"  {name:<12} {values}" for name, values in PRESETS.items()]
    return "\n".join(lines)


# KubeflowConfig's values come through the environment: pipeline.kfp_pipeline reads them when it is imported, and
# pipeline.kubeflow.pipeline_module sets them and imports it again.
IMAGE_ENV, CACHING_ENV, RETRIES_ENV = "SYNCREC_IMAGE", "SYNCREC_KFP_CACHING", "SYNCREC_KFP_RETRIES"


@dataclass(frozen=True)
class KubeflowConfig:
    """How the compiled pipeline runs on a cluster (compile-time: image, volume, caching, retries, resources).

    The serving root is a PersistentVolumeClaim (`models_pvc`, a run-time parameter) mounted at
    `serving_root` in every task that reads or writes it, and in TF Serving (deploy/)."""

    image: str = "syncrec:latest"
    enable_caching: bool = True  # Kubeflow's task cache (`compile --no-cache` turns it off)
    retry_failed_tasks: bool = True  # `retries` below, after a preempted pod or a lost node; run-local has neither
    models_mount: str = KUBEFLOW_SERVING_ROOT
    # Derived from pipeline/stage_table.py (one row a stage), keyed by Kubeflow task name.
    resources: dict = field(default_factory=lambda: {s.task: s.resources for s in STAGES})
    retries: dict = field(default_factory=lambda: {s.task: s.retries for s in STAGES if s.retries})
    timeouts_s: dict = field(default_factory=lambda: {s.task: s.timeout_s for s in STAGES})
    default_timeout_s: int = Stage.timeout_s

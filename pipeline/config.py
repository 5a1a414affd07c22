"""Pipeline configuration: typed defaults -> YAML file -> `--set key=value` flags.

Keys of PipelineConfig are pipeline settings; any other key (or one written `model.KEY`) is a
model setting checked against model_keras.config.ModelConfig. Everything ends up as a runtime
parameter of the compiled pipeline (model settings as one JSON string), visible in pipeline.yaml.
"""
from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field

import yaml

from components.transform import DEFAULT_INPUT
from model_keras.config import ModelConfig

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_MODEL = {"epochs": 5, "embed_dim": 64, "num_blocks": 1, "batch_size": 128}


@dataclass
class PipelineConfig:
    input: str = os.path.relpath(DEFAULT_INPUT, REPO)
    format: str = "syncrec"
    root: str = "runs/local"
    model_name: str = "syncrec"
    max_len: int = 50
    min_events: int = 3
    min_item_count: int = 1
    domains: str = ""  # comma-separated allow-list ("" = any)
    domain_names: str = ""  # abxi: names of domain 0, 1, ...
    num_negatives: int = 99
    negative_pool: str = "domain"
    blessing_tolerance: float = 0.01
    max_rejected_fraction: float = 0.5
    warm_start: str = ""  # ""/"none" = from scratch, "latest" = last pushed model, or a SavedModel path
    serving_root: str = ""  # "" = ROOT/serving locally, /models on Kubeflow
    model: dict = field(default_factory=lambda: dict(DEFAULT_MODEL))

    def model_settings(self) -> str:
        ModelConfig.from_dict(self.model)
        return json.dumps(self.model, sort_keys=True)

    def paths(self) -> dict[str, str]:
        root = os.path.abspath(self.root)
        return {"root": root, "serving_root": self.serving_root or os.path.join(root, "serving"), "cache_dir": os.path.join(root, "cache"),
                "report_dir": os.path.join(root, "report"), "pipeline_root": os.path.join(root, "pipeline_root")}


def _coerce(value: str):
    try:
        return json.loads(value)
    except ValueError:
        return value


def apply_overrides(config: PipelineConfig, values: dict) -> PipelineConfig:
    """Apply a dict of settings (from YAML or --set); unknown model keys fail naming them."""
    names = {f.name for f in dataclasses.fields(PipelineConfig)} - {"model"}
    model = dict(config.model)
    for key, value in values.items():
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
    pairs = {}
    for item in sets or []:
        if "=" not in item:
            raise ValueError(f"--set {item!r} is not key=value (e.g. --set epochs=2)")
        key, value = item.split("=", 1)
        pairs[key.strip()] = _coerce(value)
    return apply_overrides(config, pairs)

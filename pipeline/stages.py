"""What each pipeline component does, as plain functions over directories.

The KFP components in kfp_pipeline.py only call these (so Kubeflow runs the code baked into the
image, and tests run the same functions directly). Each stage writes a `_stage.json` beside its
outputs saying whether it came from the cache and under which key.
"""
from __future__ import annotations

import glob
import json
import os
import shutil

from pipeline import cache
from components.readers import expand_input, is_data_file

STAGE_FILE = "_stage.json"


def _write_json(path: str, payload: dict) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(payload, handle, indent=1)


def _read_json(path: str) -> dict:
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def input_files(input_path: str) -> list[str]:
    """Files of a comma-separated list of paths, directories or globs (retraining adds to it).

    A relative pattern that matches nothing here is tried against the code folder, so the default
    `data/amazon-sample/...` works in the component image whatever its working directory."""
    files: list[str] = []
    for pattern in [p.strip() for p in input_path.split(",") if p.strip()]:
        if not os.path.isabs(pattern) and not glob.glob(pattern) and glob.glob(os.path.join(cache.REPO, pattern)):
            pattern = os.path.join(cache.REPO, pattern)
        files += [f for f in expand_input(pattern) if is_data_file(f)]
    return files


def import_schema_stage(schema_dir: str) -> str:
    from components.validator import write_schema_copy

    return write_schema_copy(schema_dir)


def transform_stage(input_path: str, input_format: str, max_len: int, min_events: int, min_item_count: int,
                    domains: str, domain_names: str, cache_dir: str, examples_dir: str) -> dict:
    from components.transform import TransformConfig, run_transform

    files = input_files(input_path)
    params = {"format": input_format, "max_len": max_len, "min_events": min_events, "min_item_count": min_item_count,
              "domains": domains, "domain_names": domain_names}
    key = cache.fingerprint(files, params, code_dirs=cache.TRANSFORM_CODE)
    hit = cache.restore(cache_dir, "transform", key, examples_dir)
    if not hit:
        pattern = files[0] if len(files) == 1 else os.path.join(os.path.dirname(examples_dir), "_inputs", "*")
        if len(files) > 1:  # several inputs: link them side by side so one glob reads them all
            shutil.rmtree(os.path.dirname(pattern), ignore_errors=True)
            os.makedirs(os.path.dirname(pattern))
            for index, path in enumerate(files):
                os.symlink(os.path.abspath(path), os.path.join(os.path.dirname(pattern), f"{index:05d}-{os.path.basename(path)}"))
        config = TransformConfig(
            input=pattern, format=input_format, output=examples_dir, max_len=max_len, min_events=min_events,
            min_item_count=min_item_count, domains=[d for d in domains.split(",") if d] or None,
            domain_names=[d for d in domain_names.split(",") if d],
        )
        run_transform(config)
        cache.store(cache_dir, "transform", key, examples_dir)
    stats = _read_json(os.path.join(examples_dir, "stats.json"))
    stage = {"cache_hit": hit, "key": key, "users": stats["users"], "rows_read": stats["rows_read"]}
    _write_json(os.path.join(examples_dir, STAGE_FILE), stage)
    return stage


def validate_stage(examples_dir: str, schema_dir: str, max_rejected_fraction: float, anomalies_dir: str, report_dir: str) -> dict:
    from components.validator import AnomaliesFound, format_report, validate_examples

    result = validate_examples(examples_dir, os.path.join(schema_dir, "schema.pbtxt"), max_rejected_fraction)
    report = format_report(result)
    _write_json(os.path.join(anomalies_dir, "anomalies.json"), result)
    if report_dir:
        os.makedirs(report_dir, exist_ok=True)
        with open(os.path.join(report_dir, "anomalies.txt"), "w", encoding="utf-8") as handle:
            handle.write(report + "\n")
    if result["anomalies"]:
        raise AnomaliesFound(report)
    return result


def resolve_warm_start(warm_start: str, serving_root: str, model_name: str) -> str | None:
    from pipeline.blessing import latest_version

    if not warm_start or warm_start == "none":
        return None
    if warm_start == "latest":
        return latest_version(serving_root, model_name)
    return warm_start


def train_stage(examples_dir: str, model_settings: str, warm_start: str, serving_root: str, model_name: str,
                cache_dir: str, model_dir: str) -> dict:
    from model_keras.config import ModelConfig
    from model_keras.train import run_fn

    settings = json.loads(model_settings or "{}")
    start = resolve_warm_start(warm_start, serving_root, model_name)
    examples_key = _read_json(os.path.join(examples_dir, STAGE_FILE))["key"]
    warm_files = [os.path.join(start, "saved_model.pb")] if start else []
    key = cache.fingerprint(warm_files, {"settings": settings, "examples": examples_key, "warm_start": bool(start)}, code_dirs=cache.TRAIN_CODE)
    hit = cache.restore(cache_dir, "train", key, model_dir)
    if not hit:
        run_fn(examples_dir, model_dir, ModelConfig.from_dict(settings), warm_start=start, verbose=2)
        shutil.rmtree(os.path.join(model_dir, "checkpoints"), ignore_errors=True)  # resume state is not an output
        cache.store(cache_dir, "train", key, model_dir)
    stage = {"cache_hit": hit, "key": key, "warm_start": start}
    _write_json(os.path.join(model_dir, STAGE_FILE), stage)
    return stage


def evaluate_stage(examples_dir: str, model_dir: str, serving_root: str, model_name: str, blessing_tolerance: float,
                   num_negatives: int, negative_pool: str, evaluation_dir: str) -> dict:
    from pipeline.blessing import run_evaluator
    from model_keras.evaluation import EvalProtocol

    protocol = EvalProtocol(num_negatives=num_negatives, pool=negative_pool)
    result = run_evaluator(examples_dir, os.path.join(model_dir, "saved_model"), serving_root, model_name, blessing_tolerance, protocol)
    _write_json(os.path.join(evaluation_dir, "evaluation.json"), result)
    return result


def push_stage(model_dir: str, evaluation_dir: str, examples_dir: str, serving_root: str, model_name: str, report_dir: str) -> str:
    from pipeline.pusher import push

    evaluation = _read_json(os.path.join(evaluation_dir, "evaluation.json"))
    pushed_to = push(os.path.join(model_dir, "saved_model"), serving_root, model_name) if evaluation["blessed"] else None
    stats = _read_json(os.path.join(examples_dir, "stats.json"))
    report = {
        "domains": evaluation["test"]["domains"],
        "data": {k: stats[k] for k in ("rows_read", "rows_accepted", "rows_rejected", "users", "items", "interactions")},
        "all": evaluation["test"]["all"],
        "blessed": evaluation["blessed"],
        "pushed_to": pushed_to,
        "blessing": {"baseline": evaluation["baseline"], "reasons": evaluation["reasons"], "valid": evaluation["valid"]},
        "cache": {"transform": _read_json(os.path.join(examples_dir, STAGE_FILE))["cache_hit"],
                  "train": _read_json(os.path.join(model_dir, STAGE_FILE))["cache_hit"]},
    }
    if report_dir:
        _write_json(os.path.join(report_dir, "metrics.json"), report)
    return pushed_to or ""

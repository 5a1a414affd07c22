"""What each pipeline component does, as plain functions over directories.

The KFP components in kfp_pipeline.py only call these (so Kubeflow runs the code baked into the
image, and tests run the same functions directly), always with keywords. Stages that can be reused
write a `_stage.json` beside their outputs saying whether they came from run-local's cache; each
stage reports its start and end to pipeline.progress.
"""

from __future__ import annotations

import glob
import json
import os
import shutil

from components.readers import expand_input, is_data_file, listing
from model_keras.metrics import towers_line
from pipeline import cache
from pipeline.progress import StageTimer, note

STAGE_FILE = "_stage.json"
EVALUATION_FILE = "evaluation.json"


def _write_json(path: str, payload: dict) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(payload, handle, indent=1)


def _read_json(path: str) -> dict:
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def input_files(input_path: str) -> list[str]:
    """Data files of a comma-separated list of paths, directories or globs (retraining adds to it).

    A relative pattern that matches nothing here is tried against the code folder, so the default
    `data/amazon-sample/...` works in the component image whatever its working directory.
    Raises components.readers.InputError when a pattern matches no file."""
    return [f for pattern in _resolved_patterns(input_path) for f in expand_input(pattern) if is_data_file(f)]


def _resolved_patterns(input_path: str) -> list[str]:
    """The comma-separated patterns, a relative one that matches nothing here taken from the code folder."""
    patterns = []
    for pattern in [p.strip() for p in input_path.split(",") if p.strip()]:
        if not os.path.isabs(pattern) and not glob.glob(pattern) and glob.glob(os.path.join(cache.REPO, pattern)):
            pattern = os.path.join(cache.REPO, pattern)
        patterns.append(pattern)
    return patterns


def fingerprint_stage(*, input_path: str) -> str:
    """Input fingerprint: sha256 over the path, size and modification time of every input file.

    Kubeflow's cache key is a task's parameters, image and command, never what a bucket or volume holds,
    so a scheduled run over the same input_path would get the first run's Transform back. This step is
    never cached and its output is a Transform parameter: new or changed files give a new key (the
    Transform and everything after it run again), an unchanged folder the same key (all reused)."""
    import hashlib

    with StageTimer("fingerprint") as progress:
        files = [entry for p in _resolved_patterns(input_path) for entry in listing(p) if is_data_file(entry[0])]
        digest = hashlib.sha256(json.dumps(sorted(set(files))).encode()).hexdigest()
        progress.update(detail=f"{len(files)} files, {sum(size for _, size, _ in files):,} bytes, {digest[:12]}")
        return digest


def import_schema_stage(*, schema_dir: str) -> str:
    """ImportSchemaGen. Args: schema_dir: output folder. Returns: the path of the copied schema.pbtxt."""
    from components.validator import write_schema_copy

    with StageTimer("schema"):
        return write_schema_copy(schema_dir)


# The pipeline parameters each stage reads (typed and checked once, in pipeline.config.PipelineConfig).
TRANSFORM_SETTINGS = ("input_format", "max_len", "min_events", "min_item_count", "domains", "domain_names")
PROTOCOL_SETTINGS = ("num_negatives", "negative_pool", "full_ranking")
DRIFT_SETTINGS = (
    "drift_action",
    "drift_max_domain_mix",
    "drift_max_history_length",
    "drift_max_multi_domain",
    "drift_max_oov_rate",
    "drift_max_new_labels",
)
DRIFT_FILE = "drift.json"


def transform_stage(*, input_path: str, settings: dict, cache_dir: str, examples_dir: str) -> dict:
    """Transform: raw logs -> SequenceExamples (components.transform), reused from the cache when the
    inputs' contents, the settings and the data-path code are unchanged.

    Args: input_path (comma-separated paths or globs), settings (the TRANSFORM_SETTINGS parameters),
        cache_dir ('' = no cache) and examples_dir (output).
    Returns: {"cache_hit", "key", "users", "rows_read"} (also in _stage.json)."""
    from components.transform import TransformConfig, run_transform

    with StageTimer("transform") as progress:
        files = input_files(input_path)
        config = TransformConfig(
            input="",
            format=settings["input_format"],
            output=examples_dir,
            max_len=settings["max_len"],
            min_events=settings["min_events"],
            min_item_count=settings["min_item_count"],
            domains=[d for d in settings["domains"].split(",") if d] or None,
            domain_names=[d for d in settings["domain_names"].split(",") if d],
        )
        key = cache.fingerprint(files, settings, code_dirs=cache.TRANSFORM_CODE) if cache_dir else ""
        hit = cache.restore(cache_dir, "transform", key, examples_dir)
        if not hit:
            config.input = _link_inputs(files, os.path.dirname(examples_dir))
            run_transform(config)
            cache.store(cache_dir, "transform", key, examples_dir)
        stats = _read_json(os.path.join(examples_dir, "stats.json"))
        stage = {"cache_hit": hit, "key": key, "users": stats["users"], "rows_read": stats["rows_read"]}
        _write_json(os.path.join(examples_dir, STAGE_FILE), stage)
        progress.update(
            cache=hit,
            detail=f"{stats['rows_read']:,} rows, {stats['users']:,} users, {stats['rows_rejected']:,} quarantined",
        )
        return stage


def _link_inputs(files: list[str], work_dir: str) -> str:
    """One path or glob that reads exactly `files` (several inputs are linked side by side)."""
    if len(files) == 1:
        return files[0]
    folder = os.path.join(work_dir, "_inputs")
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    for index, path in enumerate(files):
        os.symlink(os.path.abspath(path), os.path.join(folder, f"{index:05d}-{os.path.basename(path)}"))
    return os.path.join(folder, "*")


def drift_check(examples_dir: str, baseline: str, drift: dict) -> dict:
    """This run's data statistics and, when a model is served, their drift from the data it learned from.
    Returns {"statistics", "rows" (every comparison), "anomalies" (one line each), "served": bool}."""
    from pipeline.config import DRIFT_THRESHOLDS
    from pipeline.data_statistics import drift_anomaly_lines, drift_rows, example_statistics, served_statistics
    from schemas.vocabulary import Vocabulary

    served_vocabulary = None
    vocabulary_path = os.path.join(baseline, "assets.extra", "vocabulary.json") if baseline else ""
    if vocabulary_path and os.path.exists(vocabulary_path):
        served_vocabulary = Vocabulary.load(vocabulary_path)
    statistics = example_statistics(examples_dir, served_vocabulary)
    served = served_statistics(baseline)
    thresholds = {key: drift[name] for key, name in DRIFT_THRESHOLDS.items()}
    rows = drift_rows(statistics, served, thresholds) if served else []
    return {"statistics": statistics, "rows": rows, "anomalies": drift_anomaly_lines(rows), "served": bool(served)}


def validate_stage(
    *,
    examples_dir: str,
    schema_dir: str,
    max_rejected_fraction: float,
    anomalies_dir: str,
    report_dir: str,
    baseline: str = "",
    drift: dict | None = None,
) -> dict:
    """ExampleValidator: every example against the schema, the rejection rate, and (with a served model) the
    drift of this run's data from the data that model learned from (`drift`: the DRIFT_SETTINGS).

    Writes anomalies.json and drift.json (and report_dir/anomalies.txt when given). Raises AnomaliesFound with
    the readable report when anything is wrong, which stops the run; drift anomalies only warn with
    drift_action='warn'. Returns the validation result."""
    from components.validator import AnomaliesFound, format_report, validate_examples
    from pipeline.config import PipelineConfig

    drift = drift or {name: getattr(PipelineConfig, name) for name in DRIFT_SETTINGS}
    with StageTimer("validate") as progress:
        result = validate_examples(examples_dir, os.path.join(schema_dir, "schema.pbtxt"), max_rejected_fraction)
        report = format_report(result)
        checked = drift_check(examples_dir, baseline, drift) if not result["anomalies"] else None
        if checked and checked["anomalies"]:
            report = "\n".join(
                ([] if report.startswith("no anomalies") else [report])
                + checked["anomalies"]
                + [f"(drift_action={drift['drift_action']}: 'warn' trains anyway; the thresholds are drift_max_*)"]
            )
        _write_json(os.path.join(anomalies_dir, "anomalies.json"), result)
        if checked:
            _write_json(os.path.join(anomalies_dir, DRIFT_FILE), checked)
        if report_dir:
            os.makedirs(report_dir, exist_ok=True)
            with open(os.path.join(report_dir, "anomalies.txt"), "w", encoding="utf-8") as handle:
                handle.write(report + "\n")
        if result["anomalies"] or (checked and checked["anomalies"] and drift["drift_action"] == "stop"):
            raise AnomaliesFound(report)
        detail = f"{sum(result['examples'].values()):,} examples, no anomalies"
        if checked and checked["anomalies"]:
            detail = f"{sum(result['examples'].values()):,} examples; warning: {len(checked['anomalies'])} drift anomalies"
        elif checked and checked["served"]:
            detail += ", no drift"
        progress.update(detail=detail)
        return result


def resolve_baseline_stage(*, serving_root: str, model_name: str) -> str:
    """Resolver: the model served now (the version labelled `stable`, else the latest), '' when none. The
    trainer warm-starts from it (warm_start=latest) and the evaluator blesses against it."""
    from pipeline.pusher import served_version

    with StageTimer("resolve") as progress:
        baseline = served_version(serving_root, model_name) or ""
        progress.update(detail=f"serving {baseline}" if baseline else "nothing served yet")
        return baseline


def train_stage(
    *,
    examples_dir: str,
    model_settings: str,
    warm_start: str,
    baseline: str,
    cache_dir: str,
    model_dir: str,
    anomalies_dir: str = "",
) -> dict:
    """Trainer: model_keras.train.run_fn, reused from the cache for the same examples, settings, start and code.

    Args: model_settings (JSON of ModelConfig fields), warm_start ('' / 'none' / 'latest' / a SavedModel),
        baseline (the resolver's output, used by 'latest'). Returns: {"cache_hit", "key", "warm_start"}.
    Raises: model_keras.train.TrainingDiverged when the loss becomes NaN (the run fails, nothing is pushed)."""
    from model_keras.config import ModelConfig
    from model_keras.train import run_fn

    with StageTimer("train") as progress:
        settings = json.loads(model_settings or "{}")
        start = {"": None, "none": None, "latest": baseline or None}.get(warm_start, warm_start)
        examples_key = _read_json(os.path.join(examples_dir, STAGE_FILE))["key"]
        warm_files = [os.path.join(start, "saved_model.pb")] if start else []
        key = cache.fingerprint(
            warm_files,
            {"settings": settings, "examples": examples_key, "warm_start": bool(start)},
            code_dirs=cache.TRAIN_CODE,
        )
        hit = cache.restore(cache_dir, "train", key, model_dir)
        if not hit:
            config = ModelConfig.from_dict(settings)
            run_fn(
                examples_dir, model_dir, config, warm_start=start, verbose=0, callbacks=[EpochProgress(config.epochs)]
            )
            shutil.rmtree(os.path.join(model_dir, "checkpoints"), ignore_errors=True)  # resume state is not an output
            _store_statistics(examples_dir, model_dir, anomalies_dir)
            cache.store(cache_dir, "train", key, model_dir)
        training = _read_json(os.path.join(model_dir, "training.json"))
        stage = {"cache_hit": hit, "key": key, "warm_start": start}
        _write_json(os.path.join(model_dir, STAGE_FILE), stage)
        progress.update(
            cache=hit,
            detail=(f"warm start from {start}; " if start else "")
            + f"best epoch {training['best_epoch']} of {training['last_epoch']}, "
            + f"valid NDCG@10 {training['valid']['all']['NDCG@10']:.4f}"
            + (f"; {towers_line(training.get('prediction_towers'))}" if training.get("prediction_towers") else ""),
        )
        return stage


def _store_statistics(examples_dir: str, model_dir: str, anomalies_dir: str = "") -> None:
    """The statistics of the data a model learned from, pushed with it (the next run's drift check reads them):
    the ones the ExampleValidator computed (drift.json), or computed here when there are none."""
    from pipeline.data_statistics import STATISTICS_FILE, example_statistics

    drift_path = os.path.join(anomalies_dir, DRIFT_FILE) if anomalies_dir else ""
    if drift_path and os.path.exists(drift_path):
        statistics = _read_json(drift_path)["statistics"]
    else:
        statistics = example_statistics(examples_dir)
    _write_json(os.path.join(model_dir, "saved_model", "assets.extra", STATISTICS_FILE), statistics)


class EpochProgress:
    """A Keras callback that reports each epoch to pipeline.progress (built lazily: no TF import here)."""

    def __new__(cls, epochs: int):
        import tensorflow as tf

        class _Callback(tf.keras.callbacks.Callback):
            def __init__(self):
                super().__init__()
                self.best, self.best_epoch = -1.0, 0

            def on_epoch_end(self, epoch, logs=None):
                ndcg = float((logs or {}).get("val_NDCG@10", 0.0))
                if ndcg > self.best:
                    self.best, self.best_epoch = ndcg, epoch + 1
                note("epoch", "train", epoch=epoch + 1, epochs=epochs, ndcg=ndcg, best=self.best_epoch)

        return _Callback()


def evaluate_stage(
    *, examples_dir: str, model_dir: str, baseline: str, blessing_tolerance: float, protocol: dict, evaluation_dir: str
) -> dict:
    """Evaluator: per-domain test metrics, and blessing on valid against the resolver's baseline.

    Args: protocol holds the PROTOCOL_SETTINGS parameters (negatives and how they are drawn).
    Writes evaluation_dir/evaluation.json. Returns pipeline.blessing.run_evaluator's result."""
    from model_keras.evaluation import EvalProtocol
    from pipeline.blessing import negative_transfer, run_evaluator

    with StageTimer("evaluate") as progress:
        chosen = EvalProtocol(**_protocol_args(protocol))
        result = run_evaluator(
            examples_dir, os.path.join(model_dir, "saved_model"), baseline or None, blessing_tolerance, chosen
        )
        result["protocol"] = dict(protocol)
        training = _read_json(os.path.join(model_dir, "training.json"))
        margin = training.get("config", {}).get("tower_choice_margin", 2.0)
        refused, transfer = negative_transfer(training.get("prediction_towers"), margin)
        result["reasons"] += transfer
        result["blessed"] = result["blessed"] and not refused
        _write_json(os.path.join(evaluation_dir, EVALUATION_FILE), result)
        progress.update(
            detail=f"test NDCG@10 {result['test']['all']['NDCG@10']:.4f}; "
            + ("blessed" if result["blessed"] else "NOT blessed")
        )
        return result


def push_stage(
    *,
    model_dir: str,
    evaluation_dir: str,
    examples_dir: str,
    serving_root: str,
    model_name: str,
    blessing_tolerance: float,
    canary: bool = False,
) -> str:
    """Pusher (runs only when the Evaluator blessed the model): a new version under the serving root's lock,
    labelled `stable` (or `canary`, keeping `stable` where it is) in models.config.

    If another run pushed since this one was evaluated, the blessing is checked again against the
    version that is latest now (compare-and-swap), and a candidate that is worse is not pushed.
    Returns: the pushed version's path, or '' when the re-check refused it."""
    from model_keras.evaluation import EvalProtocol
    from pipeline.blessing import compare_with
    from pipeline.pusher import PushFailed, push_locked, served_version, serving_lock

    with StageTimer("push") as progress:
        evaluation = _read_json(os.path.join(evaluation_dir, EVALUATION_FILE))
        with serving_lock(serving_root):
            latest = served_version(serving_root, model_name)
            if latest != evaluation["baseline"]:
                recheck = compare_with(
                    examples_dir,
                    evaluation["valid"],
                    latest,
                    blessing_tolerance,
                    EvalProtocol(**_protocol_args(evaluation["protocol"])),
                )
                _write_json(os.path.join(evaluation_dir, "recheck.json"), recheck)
                if not recheck["blessed"]:
                    progress.update(detail=f"not pushed: {latest} was pushed meanwhile and is better")
                    return ""
            try:
                pushed = push_locked(os.path.join(model_dir, "saved_model"), serving_root, model_name, canary=canary)
            except PushFailed as err:
                progress.update(detail=f"not pushed: {err}")
                raise
            _record_push(pushed, evaluation, model_dir, serving_root, model_name, canary)
        progress.update(detail=f"-> {pushed}")
        return pushed


def _record_push(pushed: str, evaluation: dict, model_dir: str, serving_root: str, model_name: str, canary: bool):
    """The history's line for this version (replaced, not repeated, when an unchanged model is pushed again)."""
    from pipeline import history
    from pipeline.data_statistics import STATISTICS_FILE

    statistics_path = os.path.join(pushed, "assets.extra", STATISTICS_FILE)
    statistics = _read_json(statistics_path) if os.path.exists(statistics_path) else {}
    training = _read_json(os.path.join(model_dir, "training.json"))
    history.append(serving_root, model_name, history.push_record(pushed, evaluation, training, statistics, canary))


def skip_push_stage() -> str:
    """The Evaluator did not bless the model: nothing is pushed. Returns ''."""
    with StageTimer("skip") as progress:
        progress.update(detail="the model was not blessed: nothing pushed")
        return ""


def _protocol_args(protocol: dict) -> dict:
    """EvalProtocol's arguments from the PROTOCOL_SETTINGS parameters."""
    return {
        "num_negatives": protocol["num_negatives"],
        "pool": protocol["negative_pool"],
        "full_ranking": protocol["full_ranking"],
    }


def report_stage(
    *,
    examples_dir: str,
    model_dir: str,
    evaluation_dir: str,
    pushed_to: str,
    report_dir: str,
    anomalies_dir: str = "",
    serving_root: str = "",
    model_name: str = "",
    markdown_path: str = "",
    html_path: str = "",
) -> dict:
    """Report: test metrics per domain, the data's accounting, the blessing and where the model went, and the
    page a person reads (pipeline.report_page: drift, λ/φ, history) as Markdown and HTML.

    Writes report_dir/metrics.json and report_dir/index.html when report_dir is given, and the page to
    markdown_path / html_path (Kubeflow's Markdown and HTML artifacts) when given. Returns the report."""
    with StageTimer("report"):
        evaluation = _read_json(os.path.join(evaluation_dir, EVALUATION_FILE))
        recheck_path = os.path.join(evaluation_dir, "recheck.json")
        reasons = evaluation["reasons"] + (
            _read_json(recheck_path)["reasons"] if os.path.exists(recheck_path) and not pushed_to else []
        )
        stats = _read_json(os.path.join(examples_dir, "stats.json"))
        training = _read_json(os.path.join(model_dir, "training.json"))
        report = {
            "domains": evaluation["test"]["domains"],
            "all": evaluation["test"]["all"],
            "data": {
                k: stats[k] for k in ("rows_read", "rows_accepted", "rows_rejected", "users", "items", "interactions")
            },
            "training": {"best_epoch": training["best_epoch"], "last_epoch": training["last_epoch"]},
            "blessed": evaluation["blessed"] and bool(pushed_to),
            "pushed_to": pushed_to or None,
            "blessing": {"baseline": evaluation["baseline"], "reasons": reasons, "valid": evaluation["valid"]},
            "protocol": evaluation.get("protocol", {}),
            "cache": {
                "transform": _read_json(os.path.join(examples_dir, STAGE_FILE))["cache_hit"],
                "train": _read_json(os.path.join(model_dir, STAGE_FILE))["cache_hit"],
            },
        }
        from pipeline import history
        from pipeline.report_page import render

        drift_path = os.path.join(anomalies_dir, DRIFT_FILE) if anomalies_dir else ""
        drift = _read_json(drift_path) if drift_path and os.path.exists(drift_path) else None
        records = history.read(serving_root, model_name) if serving_root and model_name else []
        text, page = render(report, evaluation, training, drift, records)
        outputs = [(markdown_path, text), (html_path, page)]
        if report_dir:
            _write_json(os.path.join(report_dir, "metrics.json"), report)
            outputs += [(os.path.join(report_dir, "report.md"), text), (os.path.join(report_dir, "index.html"), page)]
        for path, content in outputs:
            if path:
                os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
                with open(path, "w", encoding="utf-8") as handle:
                    handle.write(content)
        return report

"""The pipeline, defined with the Kubeflow Pipelines v2 SDK.

Components are containerized Python components on one image with the project baked in
(Dockerfile; `install_kfp_package=False`, so nothing is pip-installed at run time). Their bodies
only call pipeline.stages, with keywords; artifact names follow TFX (Examples, Schema,
ExampleAnomalies, Model, ModelEvaluation, ModelBlessing, PushedModel). The decisions are steps of
the graph: a Resolver finds the served model, the Evaluator outputs `blessed`, and the Pusher runs
under `dsl.If(blessed)`; the Report runs either way. The pipeline's parameters are derived from
pipeline.config (one definition each); Kubeflow settings come from pipeline.config.KubeflowConfig.
(No `from __future__ import annotations` here: KFP reads the annotations as types.)
"""

import inspect
import os
from collections import namedtuple
from typing import NamedTuple

from kfp import dsl, kubernetes
from kfp.dsl import HTML, Artifact, Dataset, Input, Markdown, Metrics, Model, Output

from pipeline.config import CACHING_ENV, IMAGE_ENV, RETRIES_ENV, KubeflowConfig, pipeline_parameters
from pipeline.stage_table import BY_KEY, STAGES
from pipeline.stages import DRIFT_SETTINGS

KUBEFLOW = KubeflowConfig(  # compile-time settings; pipeline.kubeflow.pipeline_module sets them
    image=os.environ.get(IMAGE_ENV, KubeflowConfig.image),
    enable_caching=os.environ.get(CACHING_ENV, "1") != "0",
    retry_failed_tasks=os.environ.get(RETRIES_ENV, "1") != "0",
)


def _component(func):
    return dsl.component(func, base_image=KUBEFLOW.image, install_kfp_package=False)


@_component
def import_schema(schema: Output[Artifact]):
    """ImportSchemaGen: the curated schemas/sequence_example.pbtxt."""
    from pipeline.stages import import_schema_stage

    import_schema_stage(schema_dir=schema.path)


@_component
def fingerprint_inputs(input_path: str) -> str:
    """InputFingerprint (never cached): what the input files are now, the Transform's cache key."""
    from pipeline.stages import fingerprint_stage

    return fingerprint_stage(input_path=input_path)


@_component
def transform_examples(
    input_path: str,
    input_fingerprint: str,
    input_format: str,
    max_len: int,
    min_events: int,
    min_item_count: int,
    domains: str,
    domain_names: str,
    cache_dir: str,
    examples: Output[Dataset],
):
    """ExampleGen + Transform: raw logs -> SequenceExamples, vocabulary, stats, quarantine. `input_fingerprint`
    is only read by Kubeflow's cache: new input files give a new key, so the Transform runs again."""
    from pipeline.stages import TRANSFORM_SETTINGS, transform_stage

    settings = {name: value for name, value in locals().items() if name in TRANSFORM_SETTINGS}
    stage = transform_stage(input_path=input_path, settings=settings, cache_dir=cache_dir, examples_dir=examples.path)
    examples.metadata.update({**stage, "input_fingerprint": input_fingerprint})


@_component
def validate_examples(
    examples: Input[Dataset],
    schema: Input[Artifact],
    max_rejected_fraction: float,
    baseline: str,
    drift_action: str,
    drift_max_domain_mix: float,
    drift_max_history_length: float,
    drift_max_multi_domain: float,
    drift_max_oov_rate: float,
    drift_max_new_labels: float,
    report_dir: str,
    anomalies: Output[Artifact],
):
    """ExampleValidator: stops the run with a readable report when examples break the schema, or when the data
    drifted from the served model's beyond the drift_max_* thresholds (drift_action='stop')."""
    from pipeline.stages import DRIFT_SETTINGS, validate_stage

    result = validate_stage(
        examples_dir=examples.path,
        schema_dir=schema.path,
        max_rejected_fraction=max_rejected_fraction,
        anomalies_dir=anomalies.path,
        report_dir=report_dir,
        baseline=baseline,
        drift={name: value for name, value in locals().items() if name in DRIFT_SETTINGS},
    )
    anomalies.metadata["examples"] = result["examples"]


@_component
def resolve_baseline(serving_root: str, model_name: str) -> str:
    """Resolver (never cached): the model served now (`stable`, else the latest version), '' when there is none."""
    from pipeline.stages import resolve_baseline_stage

    return resolve_baseline_stage(serving_root=serving_root, model_name=model_name)


@_component
def train_model(
    examples: Input[Dataset],
    anomalies: Input[Artifact],
    model_settings: str,
    warm_start: str,
    baseline: str,
    cache_dir: str,
    model: Output[Model],
):
    """Trainer: the Keras model (run_fn), early-stopped and selected on the valid split, exported."""
    from pipeline.stages import train_stage

    model.metadata.update(
        train_stage(
            examples_dir=examples.path,
            model_settings=model_settings,
            warm_start=warm_start,
            baseline=baseline,
            cache_dir=cache_dir,
            model_dir=model.path,
            anomalies_dir=anomalies.path,
        )
    )


@_component
def evaluate_model(
    examples: Input[Dataset],
    model: Input[Model],
    baseline: str,
    blessing_tolerance: float,
    num_negatives: int,
    negative_pool: str,
    full_ranking: bool,
    evaluation: Output[Metrics],
    blessing: Output[Artifact],
) -> NamedTuple("EvaluatorOutputs", [("blessed", bool)]):
    """Evaluator: per-domain HR/NDCG/MRR on test; blessing on valid against the resolved baseline."""
    from collections import namedtuple

    from pipeline.stages import PROTOCOL_SETTINGS, evaluate_stage

    protocol = {name: value for name, value in locals().items() if name in PROTOCOL_SETTINGS}
    result = evaluate_stage(
        examples_dir=examples.path,
        model_dir=model.path,
        baseline=baseline,
        blessing_tolerance=blessing_tolerance,
        protocol=protocol,
        evaluation_dir=blessing.path,
    )
    for domain, metrics in result["test"]["domains"].items():
        for name in ("HR@10", "NDCG@10", "MRR"):
            evaluation.log_metric(f"{domain}/{name}", metrics[name])
    blessing.metadata["blessed"] = result["blessed"]
    return namedtuple("EvaluatorOutputs", ["blessed"])(result["blessed"])


@_component
def push_model(
    model: Input[Model],
    blessing: Input[Artifact],
    examples: Input[Dataset],
    serving_root: str,
    model_name: str,
    blessing_tolerance: float,
    push_as_canary: bool,
    pushed_model: Output[Artifact],
) -> str:
    """Pusher: a new version under <serving_root>/<model_name>/ (blessing re-checked under the push lock)."""
    from pipeline.stages import push_stage

    pushed = push_stage(
        model_dir=model.path,
        evaluation_dir=blessing.path,
        examples_dir=examples.path,
        serving_root=serving_root,
        model_name=model_name,
        blessing_tolerance=blessing_tolerance,
        canary=push_as_canary,
    )
    pushed_model.metadata["pushed_to"] = pushed
    return pushed


@_component
def skip_push() -> str:
    """The Evaluator did not bless the model: nothing is pushed."""
    from pipeline.stages import skip_push_stage

    return skip_push_stage()


@_component
def write_report(
    examples: Input[Dataset],
    model: Input[Model],
    blessing: Input[Artifact],
    anomalies: Input[Artifact],
    pushed_to: str,
    serving_root: str,
    model_name: str,
    report_dir: str,
    report: Output[Artifact],
    page: Output[HTML],
    summary: Output[Markdown],
):
    """Report: test metrics, data accounting, blessing reasons and where the model went (report/metrics.json),
    and the page the Kubeflow run page renders (drift, λ/φ, history of pushes): `page` (HTML), `summary` (Markdown)."""
    from pipeline.stages import report_stage

    result = report_stage(
        examples_dir=examples.path,
        model_dir=model.path,
        evaluation_dir=blessing.path,
        pushed_to=pushed_to,
        report_dir=report_dir,
        anomalies_dir=anomalies.path,
        serving_root=serving_root,
        model_name=model_name,
        markdown_path=summary.path,
        html_path=page.path,
    )
    report.metadata.update({"pushed_to": pushed_to, **{k: v for k, v in result.items() if k in ("blessed", "all")}})


def _on_cluster(task, key: str, models_pvc=None):
    """Display name, resources, caching, retries and timeout from the stage table (pipeline/stage_table.py); the
    models volume where the stage uses it. Stages that read what the cache key cannot see are never cached."""
    stage = BY_KEY[key]
    assert task.name == stage.task, f"stage {key!r}: the component is {task.name}, the table says {stage.task}"
    task.set_display_name(stage.display)
    resources = stage.resources
    task.set_cpu_request(resources.cpu_request).set_cpu_limit(resources.cpu_limit)
    task.set_memory_request(resources.memory_request).set_memory_limit(resources.memory_limit)
    task.set_caching_options(KUBEFLOW.enable_caching and stage.cached)
    if stage.retries and KUBEFLOW.retry_failed_tasks:
        task.set_retry(num_retries=stage.retries, backoff_duration="30s", backoff_factor=2.0, backoff_max_duration="600s")
    kubernetes.set_timeout(task, stage.timeout_s)
    if stage.models_volume:
        kubernetes.mount_pvc(task, pvc_name=models_pvc, mount_path=KUBEFLOW.models_mount)
    return task


# Views of the stage table the tests and docs read, by Kubeflow task name.
USES_MODELS_VOLUME = tuple(s.task for s in STAGES if s.models_volume)
NEVER_CACHED = tuple(s.task for s in STAGES if not s.cached)


def _pipeline_body(*values):
    p = Parameters(*values)  # attribute access: a misspelt parameter fails the compile, not a run
    schema = _on_cluster(import_schema(), "schema")
    fingerprint = _on_cluster(
        fingerprint_inputs(input_path=p.input_path), "fingerprint"
    )
    transform = _on_cluster(
        transform_examples(
            input_path=p.input_path,
            input_fingerprint=fingerprint.output,
            input_format=p.input_format,
            max_len=p.max_len,
            min_events=p.min_events,
            min_item_count=p.min_item_count,
            domains=p.domains,
            domain_names=p.domain_names,
            cache_dir=p.cache_dir,
        ),
        "transform",
    )
    examples = transform.outputs["examples"]
    resolver = _on_cluster(
        resolve_baseline(serving_root=p.serving_root, model_name=p.model_name),
        "resolve",
        p.models_pvc,
    )
    validate = _on_cluster(
        validate_examples(
            examples=examples,
            schema=schema.outputs["schema"],
            max_rejected_fraction=p.max_rejected_fraction,
            baseline=resolver.output,
            **{name: getattr(p, name) for name in DRIFT_SETTINGS},
            report_dir=p.report_dir,
        ),
        "validate",
        p.models_pvc,
    )
    train = _on_cluster(
        train_model(
            examples=examples,
            anomalies=validate.outputs["anomalies"],
            model_settings=p.model_settings,
            warm_start=p.warm_start,
            baseline=resolver.output,
            cache_dir=p.cache_dir,
        ),
        "train",
        p.models_pvc,
    )
    evaluate = _on_cluster(
        evaluate_model(
            examples=examples,
            model=train.outputs["model"],
            baseline=resolver.output,
            blessing_tolerance=p.blessing_tolerance,
            num_negatives=p.num_negatives,
            negative_pool=p.negative_pool,
            full_ranking=p.full_ranking,
        ),
        "evaluate",
        p.models_pvc,
    )
    with dsl.If(evaluate.outputs["blessed"] == True, name="blessed"):  # noqa: E712 (a KFP condition, not a Python test)
        push = _on_cluster(
            push_model(
                model=train.outputs["model"],
                blessing=evaluate.outputs["blessing"],
                examples=examples,
                serving_root=p.serving_root,
                model_name=p.model_name,
                blessing_tolerance=p.blessing_tolerance,
                push_as_canary=p.push_as_canary,
            ),
            "push",
            p.models_pvc,
        )
    with dsl.Else(name="not-blessed"):
        skipped = _on_cluster(skip_push(), "skip")
    _on_cluster(
        write_report(
            examples=examples,
            model=train.outputs["model"],
            blessing=evaluate.outputs["blessing"],
            anomalies=validate.outputs["anomalies"],
            pushed_to=dsl.OneOf(push.outputs["Output"], skipped.output),
            serving_root=p.serving_root,
            model_name=p.model_name,
            report_dir=p.report_dir,
        ),
        "report",
        p.models_pvc,
    )


PARAMETERS = pipeline_parameters()
Parameters = namedtuple("Parameters", list(PARAMETERS))  # the pipeline's parameters, from pipeline.config
_pipeline_body.__signature__ = inspect.Signature(
    [
        inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=default, annotation=kind)
        for name, (kind, default) in PARAMETERS.items()
    ]
)
_pipeline_body.__annotations__ = {name: kind for name, (kind, _) in PARAMETERS.items()}
create_pipeline = dsl.pipeline(
    name="syncrec",
    description="SyNCRec: validate, transform, train, evaluate, bless and push a cross-domain sequential recommender.",
)(_pipeline_body)

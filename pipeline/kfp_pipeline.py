"""The pipeline, defined with the Kubeflow Pipelines v2 SDK.

Components are containerized Python components on one image with the project baked in
(Dockerfile; `install_kfp_package=False`, so nothing is pip-installed at run time). Their bodies
only call pipeline.stages; artifact names follow TFX (Examples, Schema, ExampleAnomalies, Model,
ModelEvaluation, ModelBlessing, PushedModel). Every per-run value is a pipeline parameter.
(No `from __future__ import annotations` here: KFP reads the annotations as types.)
"""

import os

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Metrics, Model, Output

IMAGE = os.environ.get("SYNCREC_IMAGE", "syncrec:latest")


def _component(func):
    return dsl.component(func, base_image=IMAGE, install_kfp_package=False)


@_component
def import_schema(schema: Output[Artifact]):
    """ImportSchemaGen: the curated schemas/sequence_example.pbtxt."""
    from pipeline.stages import import_schema_stage

    import_schema_stage(schema.path)


@_component
def transform_examples(input_path: str, input_format: str, max_len: int, min_events: int, min_item_count: int,
                       domains: str, domain_names: str, cache_dir: str, examples: Output[Dataset]):
    """ExampleGen + Transform: raw logs -> SequenceExamples, vocabulary, stats, quarantine."""
    from pipeline.stages import transform_stage

    stage = transform_stage(input_path, input_format, max_len, min_events, min_item_count, domains, domain_names, cache_dir, examples.path)
    examples.metadata.update(stage)


@_component
def validate_examples(examples: Input[Dataset], schema: Input[Artifact], max_rejected_fraction: float, report_dir: str,
                      anomalies: Output[Artifact]):
    """ExampleValidator: stops the run with a readable report when examples break the schema."""
    from pipeline.stages import validate_stage

    result = validate_stage(examples.path, schema.path, max_rejected_fraction, anomalies.path, report_dir)
    anomalies.metadata["examples"] = result["examples"]


@_component
def train_model(examples: Input[Dataset], anomalies: Input[Artifact], model_settings: str, warm_start: str,
                serving_root: str, model_name: str, cache_dir: str, model: Output[Model]):
    """Trainer: the Keras SyNCRec model (run_fn), selected on the valid split, exported."""
    from pipeline.stages import train_stage

    model.metadata.update(train_stage(examples.path, model_settings, warm_start, serving_root, model_name, cache_dir, model.path))


@_component
def evaluate_model(examples: Input[Dataset], model: Input[Model], serving_root: str, model_name: str, blessing_tolerance: float,
                   num_negatives: int, negative_pool: str, evaluation: Output[Metrics], blessing: Output[Artifact]):
    """Evaluator: per-domain HR/NDCG/MRR, blessing against the last pushed model."""
    from pipeline.stages import evaluate_stage

    result = evaluate_stage(examples.path, model.path, serving_root, model_name, blessing_tolerance, num_negatives, negative_pool, blessing.path)
    for domain, metrics in result["test"]["domains"].items():
        for name in ("HR@10", "NDCG@10", "MRR"):
            evaluation.log_metric(f"{domain}/{name}", metrics[name])
    blessing.metadata["blessed"] = result["blessed"]


@_component
def push_model(model: Input[Model], blessing: Input[Artifact], examples: Input[Dataset], serving_root: str, model_name: str,
               report_dir: str, pushed_model: Output[Artifact]):
    """Pusher: blessed models only, into <serving_root>/<model_name>/<version>/."""
    from pipeline.stages import push_stage

    pushed_model.metadata["pushed_to"] = push_stage(model.path, blessing.path, examples.path, serving_root, model_name, report_dir)


@dsl.pipeline(name="syncrec", description="SyNCRec: validate, transform, train, evaluate, bless and push a cross-domain sequential recommender.")
def create_pipeline(
    input_path: str = "data/amazon-sample/amazon_seq.txt",
    input_format: str = "syncrec",
    max_len: int = 50,
    min_events: int = 3,
    min_item_count: int = 1,
    domains: str = "",
    domain_names: str = "",
    model_settings: str = '{"batch_size": 128, "embed_dim": 64, "epochs": 5, "num_blocks": 1}',
    warm_start: str = "",
    num_negatives: int = 99,
    negative_pool: str = "domain",
    blessing_tolerance: float = 0.01,
    max_rejected_fraction: float = 0.5,
    model_name: str = "syncrec",
    serving_root: str = "/models",
    cache_dir: str = "",
    report_dir: str = "",
):
    schema = import_schema().set_display_name("ImportSchemaGen")
    transform = transform_examples(input_path=input_path, input_format=input_format, max_len=max_len, min_events=min_events,
                                   min_item_count=min_item_count, domains=domains, domain_names=domain_names, cache_dir=cache_dir)
    transform.set_display_name("Transform").set_cpu_limit("2").set_memory_limit("8G")
    validate = validate_examples(examples=transform.outputs["examples"], schema=schema.outputs["schema"],
                                 max_rejected_fraction=max_rejected_fraction, report_dir=report_dir).set_display_name("ExampleValidator")
    train = train_model(examples=transform.outputs["examples"], anomalies=validate.outputs["anomalies"], model_settings=model_settings,
                        warm_start=warm_start, serving_root=serving_root, model_name=model_name, cache_dir=cache_dir)
    train.set_display_name("Trainer").set_cpu_limit("4").set_memory_limit("16G")
    evaluate = evaluate_model(examples=transform.outputs["examples"], model=train.outputs["model"], serving_root=serving_root,
                              model_name=model_name, blessing_tolerance=blessing_tolerance, num_negatives=num_negatives,
                              negative_pool=negative_pool).set_display_name("Evaluator")
    push_model(model=train.outputs["model"], blessing=evaluate.outputs["blessing"], examples=transform.outputs["examples"],
               serving_root=serving_root, model_name=model_name, report_dir=report_dir).set_display_name("Pusher")

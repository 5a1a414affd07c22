"""The pipeline's stages in one table: adding a step is one row here plus its function and component.

Each row names the stage four ways, once: its key (progress events, run-local's cache folders, StageTimer),
its Kubeflow task name (the component function's name with dashes: KFP derives it), the display name a
person sees (the Kubeflow run page, run-local's progress lines), and how it runs on a cluster: container
resources, whether it mounts the models volume, whether Kubeflow may answer it from its cache, retries and
timeout. kfp_pipeline.py, progress.py and config.KubeflowConfig read it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Resources:
    """Kubernetes requests and limits of one component's container."""

    cpu_request: str
    cpu_limit: str
    memory_request: str
    memory_limit: str


SMALL = Resources("100m", "1", "256M", "1G")


@dataclass(frozen=True)
class Stage:
    key: str
    task: str
    display: str
    resources: Resources = SMALL
    models_volume: bool = False  # reads or writes the serving root (the models PVC on a cluster)
    cached: bool = True  # False: its answer depends on what a bucket or volume holds now, which the key never sees
    retries: int = 0  # with exponential backoff
    timeout_s: int = 600


STAGES = (
    Stage("fingerprint", "fingerprint-inputs", "InputFingerprint", cached=False),
    Stage("schema", "import-schema", "ImportSchemaGen"),
    Stage("transform", "transform-examples", "Transform", Resources("2", "4", "4G", "8G"), timeout_s=6 * 3600),
    Stage("resolve", "resolve-baseline", "Resolver", models_volume=True, cached=False),
    Stage(
        "validate", "validate-examples", "ExampleValidator", Resources("1", "2", "2G", "4G"), True, timeout_s=3600
    ),
    Stage("train", "train-model", "Trainer", Resources("4", "8", "8G", "16G"), True, retries=2, timeout_s=24 * 3600),
    Stage("evaluate", "evaluate-model", "Evaluator", Resources("2", "4", "4G", "8G"), True, timeout_s=3600),
    Stage("push", "push-model", "Pusher", Resources("500m", "2", "2G", "4G"), True, retries=3, timeout_s=1800),
    Stage("skip", "skip-push", "NotPushed"),
    Stage("report", "write-report", "Report", Resources("100m", "1", "512M", "2G"), True),
)
BY_KEY = {s.key: s for s in STAGES}
BY_TASK = {s.task: s for s in STAGES}

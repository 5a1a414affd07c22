"""Compile the pipeline, and submit or schedule it on a Kubeflow Pipelines endpoint (kfp.Client).

One source of the component image for all three verbs (`--image`, else $SYNCREC_IMAGE, else
KubeflowConfig.image). Multi-user Kubeflow (profiles) needs the run's namespace and a credential: a
bearer token read from a file (a projected service-account token, or one a person saved) or taken from
$KF_PIPELINES_TOKEN; it is passed to kfp.Client and never printed. Per-task caching is set when
compiling; nothing here overrides it (kfp.Client's enable_caching=True would turn caching back on for
the never-cached Resolver and InputFingerprint).
"""

from __future__ import annotations

import contextlib
import importlib
import os
import tempfile
from dataclasses import dataclass

from pipeline.config import (
    CACHING_ENV,
    IMAGE_ENV,
    RETRIES_ENV,
    KubeflowConfig,
    PipelineConfig,
    pipeline_arguments,
)

NAMESPACE_ENV, TOKEN_ENV, TOKEN_FILE_ENV = ("KF_PIPELINES_NAMESPACE", "KF_PIPELINES_TOKEN", "KF_PIPELINES_TOKEN_FILE")


@dataclass(frozen=True)
class Endpoint:
    """Where and as whom to reach Kubeflow Pipelines; `token` is never printed (repr hides it)."""

    host: str
    namespace: str | None = None
    token: str | None = None

    def __repr__(self) -> str:
        return f"Endpoint(host={self.host!r}, namespace={self.namespace!r}, token={'<set>' if self.token else None})"

    @classmethod
    def from_flags(cls, host: str, namespace: str | None = None, token_file: str | None = None) -> "Endpoint":
        """Flags first, then the environment; PipelineFailed naming the file when a token file cannot be read."""
        namespace = namespace or os.environ.get(NAMESPACE_ENV) or None
        token_file = token_file or os.environ.get(TOKEN_FILE_ENV)
        token = os.environ.get(TOKEN_ENV) or None
        if token_file:
            try:
                with open(token_file, encoding="utf-8") as handle:
                    token = handle.read().strip()
            except OSError as err:
                raise PipelineFailed(f"cannot read the token file {token_file}: {err.strerror}") from err
            if not token:
                raise PipelineFailed(f"the token file {token_file} is empty")
        return cls(host, namespace, token)


def resolve_image(image: str | None) -> str:
    """The component image: the flag, else $SYNCREC_IMAGE, else KubeflowConfig's default."""
    return image or os.environ.get(IMAGE_ENV) or KubeflowConfig.image


class PipelineFailed(Exception):
    """The run stopped or could not be sent; str() says where and why."""


@contextlib.contextmanager
def pipeline_module(image: str | None = None, enable_caching: bool = True, retries: bool = True):
    """pipeline.kfp_pipeline defined with these compile-time settings (they are read when the module is imported),
    and as it was afterwards.

    `retries=False` is for run-local: retrying a failed task is for a cluster, where a pod is preempted or its node
    lost; on one machine a failure is deterministic (a diverged training, a bad input), and kfp.local would retry it
    with the cluster's back-off, 90 s before the message."""
    from pipeline import kfp_pipeline

    loaded, image = kfp_pipeline.KUBEFLOW, resolve_image(image)
    if (loaded.image, loaded.enable_caching, loaded.retry_failed_tasks) == (image, enable_caching, retries):
        # Already defined so: a reload costs seconds where many modules are loaded (kfp inspects the call stack
        # for every task setting, and inspect.getmodule scans sys.modules), so it is done only for a change.
        yield kfp_pipeline
        return
    settings = {
        IMAGE_ENV: image,
        CACHING_ENV: "1" if enable_caching else "0",
        RETRIES_ENV: "1" if retries else "0",
    }
    saved = {key: os.environ.get(key) for key in settings}
    os.environ.update(settings)
    try:
        yield importlib.reload(kfp_pipeline)
    finally:
        for key, value in saved.items():
            os.environ.pop(key, None) if value is None else os.environ.__setitem__(key, value)
        importlib.reload(kfp_pipeline)


def compile_pipeline(output: str, image: str | None = None, enable_caching: bool = True) -> str:
    """Write the KFP spec with `resolve_image(image)` as the component image; caching off with enable_caching=False."""
    from kfp import compiler

    with pipeline_module(image, enable_caching) as module:
        compiler.Compiler().compile(module.create_pipeline, output)
    return output


def _redacted(text: str, endpoint: Endpoint) -> str:
    return text.replace(endpoint.token, "<token>") if endpoint.token else text


def client(endpoint: Endpoint | str):
    """A kfp.Client that has answered once; PipelineFailed naming the endpoint otherwise."""
    import kfp

    endpoint = Endpoint(endpoint) if isinstance(endpoint, str) else endpoint
    try:
        found = kfp.Client(
            host=endpoint.host, namespace=endpoint.namespace or "kubeflow", existing_token=endpoint.token
        )
        found.list_experiments(page_size=1, namespace=endpoint.namespace)
        return found
    except Exception as err:  # kfp raises many kinds (connection, auth, HTTP)
        detail = _redacted(f"{type(err).__name__}: {err}".splitlines()[0], endpoint)
        raise PipelineFailed(
            f"cannot reach Kubeflow Pipelines at {endpoint.host}: {detail}; check --endpoint, --namespace "
            f"(multi-user Kubeflow: your profile's namespace) and the token (--token-file or ${TOKEN_ENV})"
        ) from None


def _endpoint(endpoint: Endpoint | str) -> Endpoint:
    return Endpoint(endpoint) if isinstance(endpoint, str) else endpoint


def submit(
    config: PipelineConfig,
    endpoint: Endpoint | str,
    experiment: str,
    enable_caching: bool = True,
    image: str | None = None,
) -> str:
    """One run of the compiled pipeline with the config's parameters; returns the run id."""
    endpoint = _endpoint(endpoint)
    arguments = pipeline_arguments(config, local=False)  # checked before anything is sent
    kfp_client = client(endpoint)
    with tempfile.TemporaryDirectory() as tmp:
        package = compile_pipeline(os.path.join(tmp, "pipeline.yaml"), image, enable_caching=enable_caching)
        exp = _experiment(kfp_client, experiment, endpoint.namespace)
        run = kfp_client.create_run_from_pipeline_package(
            package,
            arguments=arguments,
            experiment_id=exp.experiment_id,
            namespace=endpoint.namespace,
            enable_caching=None if enable_caching else False,
        )
    return run.run_id


def normalise_cron(cron: str) -> str:
    """KFP wants 6 fields (seconds first); accept the usual 5-field form too."""
    fields = cron.split()
    if len(fields) == 5:
        fields = ["0"] + fields
    if len(fields) != 6:
        raise PipelineFailed(
            f"--cron {cron!r} must have 5 fields (min hour day month weekday) or 6 (with seconds first)"
        )
    return " ".join(fields)


def _experiment(kfp_client, name: str, namespace: str | None):
    """The experiment named `name` in the namespace, created when missing."""
    try:
        return kfp_client.get_experiment(experiment_name=name, namespace=namespace)
    except Exception:  # kfp raises ValueError or an ApiException when it is not found
        return kfp_client.create_experiment(name, namespace=namespace)


def schedule(
    config: PipelineConfig,
    endpoint: Endpoint | str,
    experiment: str,
    name: str,
    cron: str,
    enable_caching: bool = True,
    image: str | None = None,
    max_concurrency: int = 1,
    catchup: bool = False,
) -> str:
    """Create the recurring run (warm_start=latest), replacing one of the same name so a schedule can be changed.

    At most `max_concurrency` of its runs at once; missed runs (the cluster was down, the job paused) are
    not made up one by one unless `catchup` (a retrain reads all data anyway: one run is enough)."""
    cron = normalise_cron(cron)
    if not 1 <= max_concurrency <= 10:
        raise PipelineFailed(f"--max-concurrency must be in [1, 10] (got {max_concurrency})")
    endpoint = _endpoint(endpoint)
    params = dict(pipeline_arguments(config, local=False), warm_start="latest")
    kfp_client = client(endpoint)
    exp = _experiment(kfp_client, experiment, endpoint.namespace)
    listing = kfp_client.list_recurring_runs(
        experiment_id=exp.experiment_id, page_size=200, namespace=endpoint.namespace
    )
    for job in listing.recurring_runs or []:
        if job.display_name == name:
            kfp_client.delete_recurring_run(job.recurring_run_id)
    with tempfile.TemporaryDirectory() as tmp:
        package = compile_pipeline(os.path.join(tmp, "pipeline.yaml"), image, enable_caching=enable_caching)
        job = kfp_client.create_recurring_run(
            exp.experiment_id,
            name,
            cron_expression=cron,
            max_concurrency=max_concurrency,
            no_catchup=not catchup,
            pipeline_package_path=package,
            params=params,
            enable_caching=None if enable_caching else False,
        )
    return job.recurring_run_id

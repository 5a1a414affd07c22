"""Compile the pipeline, and submit or schedule it on a Kubeflow Pipelines endpoint (kfp.Client)."""

from __future__ import annotations

import importlib
import os
import tempfile

from pipeline.config import PipelineConfig, pipeline_arguments


class PipelineFailed(Exception):
    """The run stopped or could not be sent; str() says where and why."""


def compile_pipeline(output: str, image: str | None = None, enable_caching: bool = True) -> str:
    """Write the KFP spec; `image` (or $SYNCREC_IMAGE) is the component image; caching off with enable_caching=False."""
    from kfp import compiler

    from pipeline import kfp_pipeline

    saved = {k: os.environ.get(k) for k in ("SYNCREC_IMAGE", "SYNCREC_KFP_CACHING")}
    if image:
        os.environ["SYNCREC_IMAGE"] = image
    os.environ["SYNCREC_KFP_CACHING"] = "1" if enable_caching else "0"
    try:
        module = importlib.reload(kfp_pipeline)
        compiler.Compiler().compile(module.create_pipeline, output)
    finally:
        for key, value in saved.items():
            os.environ.pop(key, None) if value is None else os.environ.__setitem__(key, value)
        importlib.reload(kfp_pipeline)
    return output


def client(endpoint: str):
    """A kfp.Client that has answered once; PipelineFailed naming the endpoint otherwise."""
    import kfp

    try:
        found = kfp.Client(host=endpoint)
        found.list_experiments(page_size=1)
        return found
    except Exception as err:  # kfp raises many kinds (connection, auth, HTTP)
        raise PipelineFailed(
            f"cannot reach Kubeflow Pipelines at {endpoint}: {type(err).__name__}: {err}; "
            "check --endpoint and your credentials"
        ) from err


def submit(config: PipelineConfig, endpoint: str, experiment: str, enable_caching: bool = True) -> str:
    """One run of the compiled pipeline with the config's parameters; returns the run id."""
    kfp_client = client(endpoint)
    with tempfile.TemporaryDirectory() as tmp:
        package = compile_pipeline(os.path.join(tmp, "pipeline.yaml"), enable_caching=enable_caching)
        run = kfp_client.create_run_from_pipeline_package(
            package,
            arguments=pipeline_arguments(config, local=False),
            experiment_name=experiment,
            enable_caching=enable_caching,
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


def _experiment(kfp_client, name: str):
    """The experiment named `name`, created when missing."""
    try:
        return kfp_client.get_experiment(experiment_name=name)
    except Exception:  # kfp raises ValueError or an ApiException when it is not found
        return kfp_client.create_experiment(name)


def schedule(
    config: PipelineConfig, endpoint: str, experiment: str, name: str, cron: str, enable_caching: bool = True
) -> str:
    """Create the recurring run (warm_start=latest), replacing one of the same name so a schedule can be changed."""
    cron = normalise_cron(cron)
    kfp_client = client(endpoint)
    exp = _experiment(kfp_client, experiment)
    listing = kfp_client.list_recurring_runs(experiment_id=exp.experiment_id, page_size=200)
    for job in listing.recurring_runs or []:
        if job.display_name == name:
            kfp_client.delete_recurring_run(job.recurring_run_id)
    with tempfile.TemporaryDirectory() as tmp:
        package = compile_pipeline(os.path.join(tmp, "pipeline.yaml"), enable_caching=enable_caching)
        job = kfp_client.create_recurring_run(
            exp.experiment_id,
            name,
            cron_expression=cron,
            pipeline_package_path=package,
            params=dict(pipeline_arguments(config, local=False), warm_start="latest"),
            enable_caching=enable_caching,
        )
    return job.recurring_run_id

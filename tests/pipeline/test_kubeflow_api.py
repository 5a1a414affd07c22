"""submit and schedule against a fake Kubeflow Pipelines API: the request bodies the CLI sends."""

import json
import subprocess
import sys

import pytest

from pipeline.config import load_config, pipeline_arguments
from pipeline.kfp_pipeline import NEVER_CACHED, USES_MODELS_VOLUME
from pipeline.kubeflow import Endpoint, schedule, submit
from tests.pipeline.fake_kfp import FakeKubeflow


def spec_of(body: dict) -> tuple[dict, dict]:
    """(pipeline spec, kubernetes platform spec) of a run or recurring-run body."""
    spec = body["pipeline_spec"]
    if "pipeline_spec" in spec:  # kfp sends both documents of pipeline.yaml
        return spec["pipeline_spec"], spec.get("platform_spec", {})
    return spec, body.get("platform_spec", {})


def all_tasks(pipeline_spec: dict) -> dict:
    tasks = dict(pipeline_spec["root"]["dag"]["tasks"])
    for component in pipeline_spec["components"].values():
        tasks.update(component.get("dag", {}).get("tasks", {}))
    return tasks


def test_submit_sends_the_spec_the_parameters_and_the_experiment():
    config = load_config(None, ["epochs=3", "model_name=recs"], input="gs://bucket/logs/*.csv", format="raw")
    with FakeKubeflow() as fake:
        run_id = submit(config, fake.endpoint, "nightly-exp")
        experiment = next(iter(fake.experiments.values()))
        run = fake.runs[run_id]
    assert experiment["display_name"] == "nightly-exp" and run["experiment_id"] == experiment["experiment_id"]
    parameters = run["runtime_config"]["parameters"]
    assert parameters == pipeline_arguments(config, local=False)
    assert parameters["input_path"] == "gs://bucket/logs/*.csv" and parameters["serving_root"] == "/models"
    assert parameters["cache_dir"] == "" and json.loads(parameters["model_settings"])["epochs"] == 3
    pipeline_spec, platform = spec_of(run)
    assert {"train-model", "evaluate-model", "push-model", "write-report"} <= set(all_tasks(pipeline_spec))
    executors = (
        platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
        if "platforms" in platform
        else platform["kubernetes"]["deploymentSpec"]["executors"]
    )
    assert all("pvcMount" in executors[f"exec-{task}"] for task in USES_MODELS_VOLUME)
    caching = {n: t.get("cachingOptions", {}).get("enableCache", False) for n, t in all_tasks(pipeline_spec).items()}
    assert all(on for n, on in caching.items() if not n.startswith("condition") and n not in NEVER_CACHED)
    assert not any(caching[n] for n in NEVER_CACHED)  # kfp.Client's enable_caching=True would have overridden this


def test_submit_without_cache_turns_kubeflow_caching_off():
    with FakeKubeflow() as fake:
        run = fake.runs[submit(load_config(None, []), fake.endpoint, "syncrec", enable_caching=False)]
    assert not any(t.get("cachingOptions", {}).get("enableCache") for t in all_tasks(spec_of(run)[0]).values())


def test_schedule_creates_then_replaces_a_recurring_run_of_the_same_name():
    config = load_config(None, ["epochs=3"])
    with FakeKubeflow() as fake:
        first = schedule(config, fake.endpoint, "syncrec", "nightly", "0 3 * * *")
        second = schedule(config, fake.endpoint, "syncrec", "nightly", "30 4 * * 1")
        other = schedule(config, fake.endpoint, "syncrec", "weekly", "0 5 * * 0")
        jobs = dict(fake.recurring)
        deletes = [r["path"] for r in fake.requests if r["method"] == "DELETE"]
        experiments = list(fake.experiments.values())
    assert deletes == [f"/apis/v2beta1/recurringruns/{first}"]  # only the job of the same name is replaced
    assert set(jobs) == {second, other} and len(experiments) == 1  # the experiment is reused
    job = jobs[second]
    assert job["display_name"] == "nightly" and job["trigger"]["cron_schedule"]["cron"] == "0 30 4 * * 1"
    assert job["mode"] == "ENABLE" and job["experiment_id"] == experiments[0]["experiment_id"]
    assert job["runtime_config"]["parameters"]["warm_start"] == "latest"  # a schedule retrains from the served model


def test_cli_submit_and_schedule_against_the_fake_api():
    with FakeKubeflow() as fake:
        submitted = subprocess.run(
            [sys.executable, "-m", "pipeline", "submit", "--endpoint", fake.endpoint, "--set", "epochs=2"],
            capture_output=True,
            text=True,
            timeout=300,
        )
        scheduled = subprocess.run(
            [
                sys.executable,
                "-m",
                "pipeline",
                "schedule",
                "--endpoint",
                fake.endpoint,
                "--cron",
                "0 3 * * *",
                "--no-cache",
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
        runs, jobs = list(fake.runs), list(fake.recurring.values())
    assert submitted.returncode == 0 and f"submitted run {runs[0]}" in submitted.stdout, submitted.stderr[-2000:]
    assert (
        scheduled.returncode == 0
        and "scheduled recurring run" in scheduled.stdout
        and "(0 0 3 * * *)" in scheduled.stdout
    )
    assert not any(t.get("cachingOptions", {}).get("enableCache") for t in all_tasks(spec_of(jobs[0])[0]).values())


@pytest.mark.parametrize("bad", [["--set", "epochs=0"], ["--cron", "daily"]])
def test_bad_arguments_fail_before_anything_is_sent(bad):
    with FakeKubeflow() as fake:
        args = ["schedule", "--endpoint", fake.endpoint] + (bad if "--cron" in bad else ["--cron", "0 3 * * *"] + bad)
        result = subprocess.run([sys.executable, "-m", "pipeline", *args], capture_output=True, text=True, timeout=300)
        sent = [r for r in fake.requests if r["method"] != "GET"]
    assert result.returncode == 1 and "Traceback" not in result.stderr and not sent


def images_of(body: dict) -> set[str]:
    return {e["container"]["image"] for e in spec_of(body)[0]["deploymentSpec"]["executors"].values()}


def run_cli(*args, env=None):
    import os

    return subprocess.run(
        [sys.executable, "-m", "pipeline", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
    )


def test_submit_and_schedule_send_the_image_they_are_given():
    """Not syncrec:latest: a cluster pulls the image the user built and pushed."""
    with FakeKubeflow() as fake:
        submitted = run_cli("submit", "--endpoint", fake.endpoint, "--image", "registry.example/team/syncrec:v7")
        scheduled = run_cli(
            "schedule", "--endpoint", fake.endpoint, "--cron", "0 3 * * *", "--image", "registry.example/team/syncrec:v7"
        )
        from_env = run_cli("submit", "--endpoint", fake.endpoint, env={"SYNCREC_IMAGE": "registry.example/env:1"})
        runs, jobs = list(fake.runs.values()), list(fake.recurring.values())
    assert submitted.returncode == scheduled.returncode == from_env.returncode == 0, submitted.stderr[-2000:]
    assert images_of(runs[0]) == images_of(jobs[0]) == {"registry.example/team/syncrec:v7"}
    assert images_of(runs[1]) == {"registry.example/env:1"}


def test_schedule_bounds_concurrency_and_does_not_catch_up():
    with FakeKubeflow() as fake:
        schedule(load_config(None, []), fake.endpoint, "syncrec", "nightly", "0 3 * * *", max_concurrency=2)
        schedule(load_config(None, []), fake.endpoint, "syncrec", "weekly", "0 3 * * 0", catchup=True)
        jobs = {j["display_name"]: j for j in fake.recurring.values()}
    assert int(jobs["nightly"]["max_concurrency"]) == 2 and jobs["nightly"]["no_catchup"] is True
    assert int(jobs["weekly"]["max_concurrency"]) == 1 and not jobs["weekly"].get("no_catchup")
    caching = {n: t.get("cachingOptions", {}).get("enableCache", False) for n, t in all_tasks(spec_of(jobs["nightly"])[0]).items()}
    assert caching["transform-examples"] and not caching["resolve-baseline"] and not caching["fingerprint-inputs"]


def test_multi_user_kubeflow_needs_the_namespace_and_the_token_which_is_never_printed(tmp_path):
    token = "s3cret-token-value"
    token_file = tmp_path / "token"
    token_file.write_text(token + "\n")
    with FakeKubeflow(multi_user=True, token=token) as fake:
        anonymous = run_cli("submit", "--endpoint", fake.endpoint, "--namespace", "team-a")
        sent_anonymously = [r for r in fake.requests if r["method"] != "GET"]
        wrong = run_cli("submit", "--endpoint", fake.endpoint, "--namespace", "team-a", env={"KF_PIPELINES_TOKEN": "nope"})
        ok = run_cli("submit", "--endpoint", fake.endpoint, "--namespace", "team-a", "--token-file", str(token_file))
        by_env = run_cli(
            "schedule",
            "--endpoint",
            fake.endpoint,
            "--cron",
            "0 3 * * *",
            env={"KF_PIPELINES_NAMESPACE": "team-a", "KF_PIPELINES_TOKEN": token},
        )
        experiments = list(fake.experiments.values())
        runs, jobs = list(fake.runs.values()), list(fake.recurring.values())
        authorizations = {r["authorization"] for r in fake.requests if r["path"].endswith(("runs", "recurringruns"))}
    assert anonymous.returncode == 1 and "--namespace" in anonymous.stderr and not sent_anonymously
    assert wrong.returncode == 1 and "Traceback" not in wrong.stderr and "nope" not in wrong.stderr
    assert ok.returncode == 0 and by_env.returncode == 0, ok.stderr[-2000:] + by_env.stderr[-2000:]
    assert [e["namespace"] for e in experiments] == ["team-a"] and len(runs) == len(jobs) == 1
    assert runs[0]["experiment_id"] == jobs[0]["experiment_id"] == experiments[0]["experiment_id"]
    assert authorizations == {f"Bearer {token}"}
    for result in (anonymous, wrong, ok, by_env):
        assert token not in result.stdout + result.stderr
    assert token not in repr(Endpoint("http://x", "team-a", token))


def test_serving_root_off_the_models_volume_is_refused_before_anything_is_sent():
    with FakeKubeflow() as fake:
        result = run_cli("submit", "--endpoint", fake.endpoint, "--set", "serving_root=/tmp/models")
        sent = [r for r in fake.requests if r["method"] != "GET"]
    assert result.returncode == 1 and "not on the models volume" in result.stderr and not sent

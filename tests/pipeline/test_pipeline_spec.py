"""Pipeline construction, the golden pipeline.yaml, the Kubeflow platform spec, and configuration."""

import dataclasses
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipeline.config import (
    KubeflowConfig,
    PipelineConfig,
    load_config,
    pipeline_arguments,
    pipeline_parameters,
    runtime_fields,
)
from pipeline.kfp_pipeline import NEVER_CACHED, USES_MODELS_VOLUME
from pipeline.kubeflow import compile_pipeline, normalise_cron

REPO = Path(__file__).resolve().parents[2]


def normalise(text: str) -> str:
    text = re.sub(r"sdkVersion: kfp-[\d.]+", "sdkVersion: kfp-X", text)
    return re.sub(r"image: \S+", "image: IMAGE", text)


@pytest.fixture(scope="module")
def spec():
    pipeline_spec, platform = list(yaml.safe_load_all((REPO / "pipeline.yaml").read_text()))
    return pipeline_spec, platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]


def test_checked_in_pipeline_yaml_matches_the_code(tmp_path):
    fresh = compile_pipeline(str(tmp_path / "pipeline.yaml"), image="example.org/syncrec:test")
    assert normalise(Path(fresh).read_text()) == normalise((REPO / "pipeline.yaml").read_text()), (
        "pipeline.yaml is stale: run `python -m pipeline compile --output pipeline.yaml`"
    )


def test_decisions_are_steps_of_the_graph(spec):
    pipeline_spec, _ = spec
    tasks = pipeline_spec["root"]["dag"]["tasks"]
    assert set(tasks) == {
        "fingerprint-inputs",
        "import-schema",
        "transform-examples",
        "validate-examples",
        "resolve-baseline",
        "train-model",
        "evaluate-model",
        "condition-branches-1",
        "write-report",
    }
    assert set(tasks["train-model"]["dependentTasks"]) == {
        "transform-examples",
        "validate-examples",
        "resolve-baseline",
    }
    assert "resolve-baseline" in tasks["evaluate-model"]["dependentTasks"]
    branches = pipeline_spec["components"]["comp-condition-branches-1"]["dag"]["tasks"]
    conditions = {name: task["triggerPolicy"]["condition"] for name, task in branches.items()}
    assert any("blessed" in c and "== true" in c for c in conditions.values())  # the Pusher runs only when blessed
    pushed = [
        c
        for c in pipeline_spec["components"]
        if c.startswith("comp-condition-")
        and "push-model" in pipeline_spec["components"][c].get("dag", {}).get("tasks", {})
    ]
    assert pushed, "push-model must sit inside the dsl.If branch"
    assert (
        "Output" in pipeline_spec["components"]["comp-evaluate-model"]["outputDefinitions"]["parameters"]
        or "blessed" in pipeline_spec["components"]["comp-evaluate-model"]["outputDefinitions"]["parameters"]
    )


def test_the_report_renders_in_the_kubeflow_run_page_and_the_validator_sees_the_served_model(spec):
    pipeline_spec, _ = spec
    outputs = pipeline_spec["components"]["comp-write-report"]["outputDefinitions"]["artifacts"]
    kinds = {name: o["artifactType"]["schemaTitle"] for name, o in outputs.items()}
    assert kinds == {"report": "system.Artifact", "page": "system.HTML", "summary": "system.Markdown"}
    tasks = pipeline_spec["root"]["dag"]["tasks"]
    assert "resolve-baseline" in tasks["validate-examples"]["dependentTasks"]  # drift is checked against it
    drift = {n for n in tasks["validate-examples"]["inputs"]["parameters"] if n.startswith("drift_")}
    assert drift == {"drift_action", "drift_max_domain_mix", "drift_max_history_length", "drift_max_multi_domain",
                     "drift_max_oov_rate", "drift_max_new_labels"}


def test_the_stage_table_is_the_graph(spec):
    """Every task of the compiled pipeline has its row in pipeline/stage_table.py and every row is a task, under
    the display name the row gives; run-local's progress lines use the same names."""
    from pipeline.progress import STAGE_NAMES
    from pipeline.stage_table import STAGES

    pipeline_spec, _ = spec
    tasks = {
        **pipeline_spec["root"]["dag"]["tasks"],
        **{k: v for c in pipeline_spec["components"].values() for k, v in c.get("dag", {}).get("tasks", {}).items()},
    }
    tasks = {name: t for name, t in tasks.items() if not name.startswith("condition")}
    assert set(tasks) == {s.task for s in STAGES}
    assert {name: t["taskInfo"]["name"] for name, t in tasks.items()} == {s.task: s.display for s in STAGES}
    assert STAGE_NAMES == {s.key: s.display for s in STAGES}


def test_every_runtime_setting_is_a_pipeline_parameter_with_its_default(spec):
    pipeline_spec, _ = spec
    parameters = pipeline_spec["root"]["inputDefinitions"]["parameters"]
    assert set(parameters) == set(pipeline_parameters())
    for field in runtime_fields():
        expected = "/models" if field.name == "serving_root" else field.default
        assert parameters[field.name].get("defaultValue", "") == expected or (
            isinstance(expected, (int, float)) and parameters[field.name]["defaultValue"] == float(expected)
        ), field.name
    assert "pip install" not in (REPO / "pipeline.yaml").read_text()  # code is baked into the image


def test_models_volume_is_mounted_where_the_serving_root_is_used(spec):
    _, executors = spec
    for task in USES_MODELS_VOLUME:
        mounts = executors[f"exec-{task}"]["pvcMount"]
        assert mounts[0]["mountPath"] == KubeflowConfig().models_mount and "pvcNameParameter" in mounts[0], task
    assert all(
        "pvcMount" not in e for name, e in executors.items() if name.removeprefix("exec-") not in USES_MODELS_VOLUME
    )


def test_resources_retries_timeouts_and_caching(spec):
    pipeline_spec, executors = spec
    kubeflow = KubeflowConfig()
    containers = pipeline_spec["deploymentSpec"]["executors"]
    for task, resources in kubeflow.resources.items():
        got = containers[f"exec-{task}"]["container"]["resources"]
        assert got["cpuRequest"] == float(resources.cpu_request.removesuffix("m")) / (
            1000 if resources.cpu_request.endswith("m") else 1
        )
        assert "memoryLimit" in got and "cpuLimit" in got and "memoryRequest" in got
        assert int(executors[f"exec-{task}"]["activeDeadlineSeconds"]) == kubeflow.timeouts_s.get(
            task, kubeflow.default_timeout_s
        )
    tasks = {
        **pipeline_spec["root"]["dag"]["tasks"],
        **{k: v for c in pipeline_spec["components"].values() for k, v in c.get("dag", {}).get("tasks", {}).items()},
    }
    assert (
        tasks["train-model"]["retryPolicy"]["maxRetryCount"] == 2
        and tasks["push-model"]["retryPolicy"]["maxRetryCount"] == 3
    )
    assert all(
        t.get("cachingOptions", {}).get("enableCache")
        for name, t in tasks.items()
        if not name.startswith("condition") and name not in NEVER_CACHED
    )
    assert set(NEVER_CACHED) == {"fingerprint-inputs", "resolve-baseline"}
    assert not any(tasks[name].get("cachingOptions", {}).get("enableCache") for name in NEVER_CACHED)


def kfp_cache_key(pipeline_spec: dict, task: str, parameters: dict) -> str:
    """The part of Kubeflow's cache key that varies between runs of one spec: the executor (image, command,
    arguments) and the task's resolved input parameters. What a bucket or volume holds is not in it."""
    import hashlib
    import json

    executor = pipeline_spec["deploymentSpec"]["executors"][f"exec-{task}"]["container"]
    return hashlib.sha256(json.dumps([executor, sorted(parameters.items())]).encode()).hexdigest()


def transform_parameters(pipeline_spec: dict, pipeline_values: dict, task_outputs: dict) -> dict:
    """The Transform's input parameters as Kubeflow resolves them for one run."""
    inputs = pipeline_spec["root"]["dag"]["tasks"]["transform-examples"]["inputs"]["parameters"]
    resolved = {}
    for name, source in inputs.items():
        if "componentInputParameter" in source:
            resolved[name] = pipeline_values[source["componentInputParameter"]]
        else:
            upstream = source["taskOutputParameter"]
            resolved[name] = task_outputs[(upstream["producerTask"], upstream["outputParameterKey"])]
    return resolved


def test_a_scheduled_run_over_new_files_retrains_and_one_over_nothing_new_reuses_the_cache(spec, tmp_path):
    """Three scheduled runs over one input_path: nothing new (the cache serves the Transform), then a new file
    (its key changes, so the Transform and everything downstream of its new output run again)."""
    from pipeline.stages import fingerprint_stage

    pipeline_spec, _ = spec
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "day1.csv").write_text("user_id,item_id,domain,timestamp\nu,i,A,1\n")
    values = {**pipeline_arguments(load_config(None, [], input=str(logs), format="raw"), local=False)}

    def key():
        fingerprint = fingerprint_stage(input_path=values["input_path"])
        outputs = {("fingerprint-inputs", "Output"): fingerprint}
        return kfp_cache_key(pipeline_spec, "transform-examples", transform_parameters(pipeline_spec, values, outputs))

    first, again = key(), key()
    (logs / "day2.csv").write_text("user_id,item_id,domain,timestamp\nv,j,A,2\n")
    after_new_file = key()
    assert first == again and after_new_file != first
    (logs / "day2.csv").write_text("user_id,item_id,domain,timestamp\nv,j,A,3\n")  # rewritten with new content
    import os

    os.utime(logs / "day2.csv", (1e9, 2e9))
    assert key() != after_new_file
    parameters = pipeline_spec["root"]["dag"]["tasks"]["transform-examples"]["inputs"]["parameters"]
    assert parameters["input_fingerprint"]["taskOutputParameter"]["producerTask"] == "fingerprint-inputs"


def test_no_cache_compiles_caching_off(tmp_path):
    text = Path(compile_pipeline(str(tmp_path / "p.yaml"), enable_caching=False)).read_text()
    tasks = yaml.safe_load(text.split("\n---\n")[0])["root"]["dag"]["tasks"]
    assert "enableCache: true" not in text and all(
        not t.get("cachingOptions", {}).get("enableCache") for t in tasks.values()
    )


def test_config_layers_defaults_yaml_and_flags(tmp_path):
    (tmp_path / "c.yaml").write_text("max_len: 30\nmodel:\n  num_experts: 5\n  num_cross_experts: 3\nepochs: 4\n")
    config = load_config(
        str(tmp_path / "c.yaml"), ["epochs=2", "model.embed_dim=16", "blessing_tolerance=0.05"], root="x", input="a.csv"
    )
    assert (config.max_len, config.root, config.blessing_tolerance, config.input_path) == (30, "x", 0.05, "a.csv")
    assert config.model["epochs"] == 2 and config.model["num_experts"] == 5 and config.model["embed_dim"] == 16
    args = pipeline_arguments(config)
    assert set(args) == set(pipeline_parameters())
    assert '"num_experts": 5' in args["model_settings"] and args["serving_root"].endswith("x/serving")
    assert pipeline_arguments(config, local=False)["serving_root"] == "/models"


@pytest.mark.parametrize(
    "sets, message",
    [
        (["model.experts=3"], "unknown model setting"),
        (["epochs"], "key=value"),
        (["epochs=-1"], r"model\.epochs must be in \[1"),
        (["epochs=abc"], "model.epochs must be a whole number"),
        (["embed_dim=0"], r"model\.embed_dim must be in \[1"),
        (["dropout=2"], r"model\.dropout must be in \[0, 1\)"),
        (["blessing_tolerance=abc"], "blessing_tolerance must be a number"),
        (["num_negatives=-5"], r"num_negatives must be in \[1"),
        (["model_name=../../escape"], "model_name '../../escape' must be"),
        (['model_name=a"b\nc'], "model_name"),
        (["max_rejected_fraction=2"], r"max_rejected_fraction must be in \[0, 1\]"),
        (["input_format=xml"], "input_format must be one of"),
    ],
)
def test_every_bad_setting_fails_when_the_config_is_built(sets, message):
    with pytest.raises(ValueError, match=message):
        load_config(None, sets)


def test_all_problems_are_listed_in_one_message():
    with pytest.raises(ValueError) as err:
        load_config(None, ["epochs=0", "num_negatives=0", "model_name=a/b"])
    assert all(name in str(err.value) for name in ("epochs", "num_negatives", "model_name"))


def test_bad_yaml_is_one_clear_error(tmp_path):
    (tmp_path / "bad.yaml").write_text("- a\n- b\n")
    with pytest.raises(ValueError, match="mapping"):
        load_config(str(tmp_path / "bad.yaml"))


def test_settings_verb_lists_every_setting():
    result = subprocess.run([sys.executable, "-m", "pipeline", "settings"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0
    assert all(f.name in result.stdout for f in dataclasses.fields(PipelineConfig))


def test_cron_forms():
    assert normalise_cron("0 3 * * *") == "0 0 3 * * *"
    assert normalise_cron("0 0 3 * * 1") == "0 0 3 * * 1"
    with pytest.raises(Exception, match="5 fields"):
        normalise_cron("daily")


@pytest.mark.parametrize("verb", ["submit", "schedule"])
def test_unreachable_kubeflow_is_one_clear_error(verb):
    extra = ["--cron", "0 3 * * *"] if verb == "schedule" else []
    result = subprocess.run(
        [sys.executable, "-m", "pipeline", verb, "--endpoint", "http://127.0.0.1:9", *extra],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 1
    assert "cannot reach Kubeflow Pipelines at http://127.0.0.1:9" in result.stderr and "Traceback" not in result.stderr

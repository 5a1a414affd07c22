"""Pipeline construction, the golden pipeline.yaml, and configuration layering."""
import re
from pathlib import Path

import pytest
import yaml

from pipeline.__main__ import compile_pipeline, normalise_cron, pipeline_arguments
from pipeline.config import PipelineConfig, load_config

REPO = Path(__file__).resolve().parents[2]


def normalise(text: str) -> str:
    text = re.sub(r"sdkVersion: kfp-[\d.]+", "sdkVersion: kfp-X", text)
    return re.sub(r"image: \S+", "image: IMAGE", text)


def test_checked_in_pipeline_yaml_matches_the_code(tmp_path):
    fresh = compile_pipeline(str(tmp_path / "pipeline.yaml"), image="example.org/syncrec:test")
    assert normalise(Path(fresh).read_text()) == normalise((REPO / "pipeline.yaml").read_text()), \
        "pipeline.yaml is stale: run `python -m pipeline compile --output pipeline.yaml`"


def test_pipeline_structure_and_runtime_parameters():
    spec = yaml.safe_load((REPO / "pipeline.yaml").read_text())
    tasks = spec["root"]["dag"]["tasks"]
    assert set(tasks) == {"import-schema", "transform-examples", "validate-examples", "train-model", "evaluate-model", "push-model"}
    assert tasks["train-model"]["dependentTasks"] == ["transform-examples", "validate-examples"]
    assert set(tasks["push-model"]["dependentTasks"]) == {"evaluate-model", "train-model", "transform-examples"}
    parameters = spec["root"]["inputDefinitions"]["parameters"]
    for name in ("input_path", "input_format", "max_len", "model_settings", "warm_start", "blessing_tolerance", "num_negatives", "serving_root"):
        assert name in parameters
    assert "pip install" not in (REPO / "pipeline.yaml").read_text()  # code is baked into the image
    executors = spec["deploymentSpec"]["executors"]
    assert all(e["container"]["image"] == "syncrec:latest" for e in executors.values())
    assert executors["exec-train-model"]["container"]["resources"]["memoryLimit"] == 16.0


def test_config_layers_defaults_yaml_and_flags(tmp_path):
    (tmp_path / "c.yaml").write_text("max_len: 30\nmodel:\n  num_experts: 5\n  num_cross_experts: 3\nepochs: 4\n")
    config = load_config(str(tmp_path / "c.yaml"), ["epochs=2", "model.embed_dim=16", "blessing_tolerance=0.05"], root="x")
    assert (config.max_len, config.root, config.blessing_tolerance) == (30, "x", 0.05)
    assert config.model["epochs"] == 2 and config.model["num_experts"] == 5 and config.model["embed_dim"] == 16
    args = pipeline_arguments(config)
    assert '"num_experts": 5' in args["model_settings"] and args["serving_root"].endswith("x/serving")
    assert PipelineConfig().model["epochs"] == 5


def test_config_errors_name_the_fix(tmp_path):
    with pytest.raises(ValueError, match="unknown model setting"):
        load_config(None, ["model.experts=3"])
    with pytest.raises(ValueError, match="key=value"):
        load_config(None, ["epochs"])
    (tmp_path / "bad.yaml").write_text("- a\n- b\n")
    with pytest.raises(ValueError, match="mapping"):
        load_config(str(tmp_path / "bad.yaml"))


def test_cron_forms():
    assert normalise_cron("0 3 * * *") == "0 0 3 * * *"
    assert normalise_cron("0 0 3 * * 1") == "0 0 3 * * 1"
    with pytest.raises(Exception, match="5 fields"):
        normalise_cron("daily")


@pytest.mark.parametrize("verb", ["submit", "schedule"])
def test_unreachable_kubeflow_is_one_clear_error(verb):
    import subprocess
    import sys

    extra = ["--cron", "0 3 * * *"] if verb == "schedule" else []
    result = subprocess.run([sys.executable, "-m", "pipeline", verb, "--endpoint", "http://127.0.0.1:9", *extra],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 1
    assert "cannot reach Kubeflow Pipelines at http://127.0.0.1:9" in result.stderr and "Traceback" not in result.stderr

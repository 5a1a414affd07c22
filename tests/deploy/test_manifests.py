"""deploy/: every manifest checked field by field against the Kubernetes API models of the pinned
`kubernetes` client (no cluster is reachable here, so `kubectl apply --dry-run` cannot run), and
against what the pipeline writes (volume name, mount path, models.config, batching parameters)."""

from pathlib import Path

import kubernetes.client
import pytest
import yaml
from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from pipeline.config import KubeflowConfig, PipelineConfig
from pipeline.pusher import BATCHING_FILE, BATCHING_PARAMETERS, models_config

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
PRIMITIVES = {"str": str, "int": int, "bool": bool, "float": (int, float), "object": object, "datetime": str}


def check_fields(value, type_name: str, where: str) -> None:
    """Every key is a field of the Kubernetes model type, recursively, with a value of the right type."""
    if type_name.startswith("list["):
        assert isinstance(value, list), f"{where} must be a list"
        for index, item in enumerate(value):
            check_fields(item, type_name[5:-1], f"{where}[{index}]")
    elif type_name.startswith("dict("):
        assert isinstance(value, dict), f"{where} must be a mapping"
        for key, item in value.items():
            check_fields(item, type_name[5:-1].split(", ", 1)[1], f"{where}.{key}")
    elif type_name in PRIMITIVES:
        assert isinstance(value, PRIMITIVES[type_name]) and not (type_name == "int" and isinstance(value, bool)), (
            f"{where} must be {type_name}, got {value!r}"
        )
    else:
        klass = getattr(kubernetes.client, type_name)
        fields = {json_key: attr for attr, json_key in klass.attribute_map.items()}
        assert isinstance(value, dict), f"{where} must be a {type_name} mapping"
        for key, item in value.items():
            assert key in fields, f"{where}.{key} is not a field of {type_name}"
            check_fields(item, klass.openapi_types[fields[key]], f"{where}.{key}")


def documents():
    return [
        (path.name, doc)
        for path in sorted(DEPLOY.glob("*.yaml"))
        for doc in yaml.safe_load_all(path.read_text())
        if doc
    ]


def by_kind(kind: str) -> list[dict]:
    return [doc for _name, doc in documents() if doc["kind"] == kind]


@pytest.mark.parametrize(
    "name, doc",
    [d for d in documents() if d[1]["apiVersion"] in ("v1", "apps/v1")],
    ids=lambda value: value if isinstance(value, str) else value["kind"],
)
def test_kubernetes_manifests_match_the_api_models(name, doc):
    type_name = f"V1{doc['kind']}"
    check_fields(doc, type_name, f"{name}:{doc['kind']}")
    kubernetes.client.ApiClient()._ApiClient__deserialize(
        doc, type_name
    )  # required fields present (client-side validation)


def test_tf_serving_reads_the_volume_the_pipeline_pushes_to():
    (deployment,) = by_kind("Deployment")
    pod = deployment["spec"]["template"]["spec"]
    claims = {
        v["name"]: v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"] if "persistentVolumeClaim" in v
    }
    (pvc,) = by_kind("PersistentVolumeClaim")
    assert set(claims.values()) == {PipelineConfig().models_pvc} == {pvc["metadata"]["name"]}
    assert "ReadWriteMany" in pvc["spec"]["accessModes"]  # pipeline pods and serving pods on different nodes
    (container,) = pod["containers"]
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    root = KubeflowConfig().models_mount
    assert mounts[root]["readOnly"] and claims[mounts[root]["name"]]  # TF Serving only reads it
    args = container["args"]
    assert f"--model_config_file={root}/models.config" in args and "--enable_batching" in args
    assert f"--batching_parameters_file={root}/{BATCHING_FILE}" in args


def test_probes_ports_resources_and_prometheus():
    (deployment,) = by_kind("Deployment")
    pod = deployment["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert (
        ports == {"grpc": 8500, "rest": 8501}
        and "--port=8500" in container["args"]
        and "--rest_api_port=8501" in container["args"]
    )
    assert container["readinessProbe"]["httpGet"]["path"] == f"/v1/models/{PipelineConfig().model_name}"
    assert container["livenessProbe"]["tcpSocket"]["port"] == "grpc"
    assert set(container["resources"]["requests"]) == {"cpu", "memory"} and set(container["resources"]["limits"]) == {
        "cpu",
        "memory",
    }
    (service,) = by_kind("Service")
    assert {p["targetPort"] for p in service["spec"]["ports"]} == set(ports)
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"] == pod["metadata"]["labels"]
    (config_map,) = by_kind("ConfigMap")
    monitoring = config_map["data"]["monitoring.config"]
    path = pod["metadata"]["annotations"]["prometheus.io/path"]
    assert "enable: true" in monitoring and f'path: "{path}"' in monitoring
    assert "--monitoring_config_file=/etc/tfserving/monitoring.config" in container["args"]


def test_kserve_alternative_points_at_the_same_models():
    (service,) = by_kind("InferenceService")
    assert service["apiVersion"] == "serving.kserve.io/v1beta1"
    predictor = service["spec"]["predictor"]["tensorflow"]
    assert predictor["storageUri"] == f"pvc://{PipelineConfig().models_pvc}/{PipelineConfig().model_name}"
    assert f"--batching_parameters_file=/mnt/models/{BATCHING_FILE}" in predictor["args"]  # the Pusher writes it there
    check_fields(predictor["resources"], "V1ResourceRequirements", "kserve.resources")


def test_the_files_the_pusher_writes_parse_as_tf_serving_reads_them():
    config = text_format.Parse(models_config("syncrec"), model_server_config_pb2.ModelServerConfig())
    assert config.model_config_list.config[0].base_path == "/models/syncrec"
    documented = {
        "max_batch_size",
        "batch_timeout_micros",
        "max_enqueued_batches",
        "num_batch_threads",
        "pad_variable_length_inputs",
        "allowed_batch_sizes",
    }  # TF Serving's BatchingParameters
    keys = {line.split()[0].rstrip(":") for line in BATCHING_PARAMETERS.strip().splitlines()}
    assert keys <= documented
    labelled = text_format.Parse(models_config("syncrec", stable=3, canary=4), model_server_config_pb2.ModelServerConfig())
    model = labelled.model_config_list.config[0]
    assert dict(model.version_labels) == {"stable": 3, "canary": 4}
    assert list(model.model_version_policy.specific.versions) == [3, 4]  # both loaded, or a label points nowhere


def test_the_check_catches_misspelled_fields_and_wrong_types():
    with pytest.raises(AssertionError, match="replica is not a field of V1DeploymentSpec"):
        check_fields({"spec": {"replica": 2}}, "V1Deployment", "d")
    with pytest.raises(AssertionError, match="must be int"):
        check_fields({"spec": {"replicas": "two"}}, "V1Deployment", "d")


def test_no_manifest_reads_what_nothing_writes():
    """The TFJob read /models/examples, which no step writes; multi-worker training runs in the Trainer step."""
    assert not by_kind("TFJob")


def test_tf_serving_waits_for_the_first_push_then_starts_and_gets_time_to_load():
    (deployment,) = by_kind("Deployment")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["startupProbe"]["tcpSocket"]["port"] == "grpc"
    assert container["startupProbe"]["periodSeconds"] * container["startupProbe"]["failureThreshold"] >= 600
    assert "initialDelaySeconds" not in container["livenessProbe"]  # the startupProbe holds it off
    assert "--allow_version_labels_for_unavailable_models=true" in container["args"]
    (init,) = pod["initContainers"]
    assert {m["mountPath"]: m.get("readOnly", False) for m in init["volumeMounts"]}[KubeflowConfig().models_mount] is False
    (config_map,) = by_kind("ConfigMap")
    assert config_map["data"]["models.config"] == models_config(PipelineConfig().model_name)


def test_the_wait_script_writes_a_config_and_returns_once_a_version_is_pushed(tmp_path):
    import subprocess
    import time

    (config_map,) = by_kind("ConfigMap")
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "models.config").write_text(config_map["data"]["models.config"])
    script = config_map["data"]["wait-for-first-push.sh"].replace("/etc/tfserving", str(etc))
    (tmp_path / "wait.sh").write_text(script)
    models = tmp_path / "models"
    env = {"MODELS": str(models), "POLL_SECONDS": "0.2", "PATH": "/usr/bin:/bin"}
    waiting = subprocess.Popen(["sh", str(tmp_path / "wait.sh")], env=env, stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(1.0)
        assert waiting.poll() is None  # no version yet: it waits (the pod shows Init:0/1, it does not crash)
        assert (models / "models.config").read_text() == models_config("syncrec")
        (models / "syncrec" / ".staging-5").mkdir()  # a half-copied push is not a version
        time.sleep(0.6)
        assert waiting.poll() is None
        (models / "syncrec" / "5").mkdir()
        assert waiting.wait(timeout=120) == 0
    finally:
        waiting.kill()
    (models / "models.config").write_text("pushed")  # a config the Pusher wrote is never replaced
    assert subprocess.run(["sh", str(tmp_path / "wait.sh")], env=env, timeout=120).returncode == 0
    assert (models / "models.config").read_text() == "pushed"

"""The deployment files: serving/README.md's commands, the example configs and serving/k8s/.

Fast and offline (no server, no cluster, no Docker): every manifest parses and
holds what the README says; the config examples parse with TF Serving's protos
and this project's readers; every flag the production commands pass exists in
`tensorflow_model_server` 2.20.0, which only prints "unknown argument" for a
misspelled flag and starts without it.
"""

import json
import pathlib
import re
import shlex

import yaml
from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from keras_bert_kit.export.serving_ops import TF_SERVING_RELEASES, OpsCompatibility
from serving import config as config_files
from serving.batching import check_supported
from serving.server import parse_args

SERVING = pathlib.Path(__file__).resolve().parents[2] / "serving"
K8S = SERVING / "k8s"
README = SERVING / "README.md"
IMAGE = "tensorflow/serving:2.20.0"
CONFIG_FILES = ("models.config", "batching.config", "monitoring.config")

# The flags `tensorflow_model_server` defines: every `tensorflow::Flag("...")` in
# tensorflow_serving/model_servers/main.cc at tag 2.20.0 of github.com/tensorflow/serving
# (unchanged on master at 9d981c5c).
TF_SERVING_FLAGS = frozenset({
    "port", "grpc_socket_path", "rest_api_port", "rest_api_num_threads",
    "rest_api_timeout_in_ms", "rest_api_enable_cors_support", "enable_batching",
    "allow_version_labels_for_unavailable_models", "batching_parameters_file",
    "enable_per_model_batching_parameters", "model_config_file",
    "model_config_file_poll_wait_seconds", "model_name", "model_base_path",
    "num_load_threads", "num_unload_threads", "max_num_load_retries",
    "load_retry_interval_micros", "file_system_poll_wait_seconds", "flush_filesystem_caches",
    "tensorflow_session_parallelism", "tensorflow_session_config_file",
    "tensorflow_intra_op_parallelism", "tensorflow_inter_op_parallelism",
    "use_alts_credentials", "ssl_config_file", "platform_config_file",
    "per_process_gpu_memory_fraction", "saved_model_tags", "grpc_channel_arguments",
    "grpc_max_threads", "enable_model_warmup", "num_request_iterations_for_warmup",
    "version", "monitoring_config_file", "remove_unused_fields_from_bundle_metagraph",
    "prefer_tflite_model", "num_tflite_pools", "num_tflite_interpreters_per_pool",
    "enable_signature_method_name_check", "xla_cpu_compilation_enabled",
    "xla_gpu_compilation_enabled", "enable_profiler", "thread_pool_factory_config_file",
    "mixed_precision", "skip_initialize_tpu", "enable_grpc_healthcheck_service",
    "enable_serialization_as_tensor_content",
})

# TF Serving's REST paths (model_servers/http_rest_api_handler.cc).
MODEL_PATH = r"/v1/models/(?P<model>[^/:]+)(?:/versions/\d+|/labels/\w+)?"
PREDICT_URL = re.compile(rf"(?:localhost|127\.0\.0\.1):8501{MODEL_PATH}:predict")
GET_URL = re.compile(rf"(?:localhost|127\.0\.0\.1):8501{MODEL_PATH}(?:/metadata)?")


def unknown_flags(args):
    """The arguments that are not `--name=value` with a name tensorflow_model_server defines
    (TensorFlow's flag parser takes no separate value and ignores what it does not know)."""
    unknown = []
    for arg in args:
        match = re.fullmatch(r"--([a-z0-9_]+)=\S+", arg)
        if not match or match[1] not in TF_SERVING_FLAGS:
            unknown.append(arg)
    return unknown


def readme_commands():
    """The shell commands of the README's ```bash blocks, continuation lines joined."""
    blocks = re.findall(r"```bash\n(.*?)```", README.read_text(), flags=re.DOTALL)
    lines = "\n".join(blocks).replace("\\\n", " ").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def commands_starting(prefix):
    return [command for command in readme_commands() if command.startswith(prefix)]


def manifests():
    """{kind: document} of every YAML document under serving/k8s/ (one per kind)."""
    documents = [
        document
        for path in sorted(K8S.glob("*.yaml"))
        for document in yaml.safe_load_all(path.read_text())
    ]
    kinds = [document["kind"] for document in documents]
    assert len(kinds) == len(set(kinds)), kinds
    return {document["kind"]: document for document in documents}


def models_config():
    return text_format.Parse(
        (SERVING / "models.config").read_text(), model_server_config_pb2.ModelServerConfig()
    )


def container():
    (only,) = manifests()["Deployment"]["spec"]["template"]["spec"]["containers"]
    return only


def test_every_manifest_parses_with_a_current_api_version():
    by_kind = manifests()
    assert {kind: document["apiVersion"] for kind, document in by_kind.items()} == {
        "ConfigMap": "v1",
        "PersistentVolumeClaim": "v1",
        "Deployment": "apps/v1",
        "Service": "v1",
        "HorizontalPodAutoscaler": "autoscaling/v2",
        "Kustomization": "kustomize.config.k8s.io/v1beta1",
    }
    for kind, document in by_kind.items():
        if kind != "Kustomization":
            assert document["metadata"]["name"], kind
    listed = by_kind["Kustomization"]["resources"]
    assert sorted(listed) == sorted(
        path.name for path in K8S.glob("*.yaml") if path.name != "kustomization.yaml"
    )


def test_deployment_runs_tf_serving_with_the_configmap_and_the_export_volume():
    by_kind = manifests()
    pod = by_kind["Deployment"]["spec"]["template"]
    assert by_kind["Deployment"]["spec"]["selector"]["matchLabels"].items() <= (
        pod["metadata"]["labels"].items()
    )
    serving = container()
    assert serving["image"] == IMAGE
    assert serving["command"] == ["tensorflow_model_server"]
    assert unknown_flags(serving["args"]) == []
    flags = dict(arg[2:].split("=", 1) for arg in serving["args"])
    assert (flags["port"], flags["rest_api_port"]) == ("8500", "8501")
    ports = {port["name"]: port["containerPort"] for port in serving["ports"]}
    assert ports == {"grpc": 8500, "http": 8501}

    mounts = {m["name"]: m for m in serving["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    config_mount = next(m for m in mounts.values() if "configMap" in volumes[m["name"]])
    config_map = volumes[config_mount["name"]]["configMap"]
    assert config_map["name"] == by_kind["ConfigMap"]["metadata"]["name"]
    assert "subPath" not in config_mount  # a subPath mount never sees ConfigMap edits
    for flag, key in (("model_config_file", "models.config"),
                      ("batching_parameters_file", "batching.config"),
                      ("monitoring_config_file", "monitoring.config")):
        assert flags[flag] == f"{config_mount['mountPath']}/{key}"
        assert key in by_kind["ConfigMap"]["data"]
    assert flags["enable_batching"] == "true"
    assert int(flags["model_config_file_poll_wait_seconds"]) > 0

    export_mount = next(
        m for m in mounts.values() if "persistentVolumeClaim" in volumes[m["name"]]
    )
    claim = volumes[export_mount["name"]]["persistentVolumeClaim"]
    assert claim["claimName"] == by_kind["PersistentVolumeClaim"]["metadata"]["name"]
    assert export_mount["readOnly"] is True
    assert "ReadWriteMany" in by_kind["PersistentVolumeClaim"]["spec"]["accessModes"]
    for model in models_config().model_config_list.config:
        assert model.base_path.startswith(export_mount["mountPath"] + "/"), model.base_path

    for name in ("requests", "limits"):
        assert {"cpu", "memory"} <= serving["resources"][name].keys()


def test_probes_ask_the_model_status_endpoint_and_the_grpc_health_service():
    serving = container()
    served = {model.name for model in models_config().model_config_list.config}
    for probe in ("startupProbe", "readinessProbe"):
        get = serving[probe]["httpGet"]
        assert get["port"] == "http"
        match = re.fullmatch(MODEL_PATH, get["path"])
        assert match and match["model"] in served, get["path"]
    assert serving["livenessProbe"]["grpc"]["port"] == 8500
    assert "--enable_grpc_healthcheck_service=true" in serving["args"]
    assert serving["lifecycle"]["preStop"]["exec"]["command"][0] == "sleep"


def test_service_and_autoscaler_point_at_the_deployment():
    by_kind = manifests()
    deployment = by_kind["Deployment"]
    service = by_kind["Service"]["spec"]
    assert service["type"] == "ClusterIP"
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["selector"].items() <= pod_labels.items()
    ports = {p["name"]: p["containerPort"] for p in container()["ports"]}
    assert {p["targetPort"]: p["port"] for p in service["ports"]} == ports
    hpa = by_kind["HorizontalPodAutoscaler"]["spec"]
    assert hpa["scaleTargetRef"] == {
        "apiVersion": deployment["apiVersion"], "kind": "Deployment",
        "name": deployment["metadata"]["name"],
    }
    assert 1 <= hpa["minReplicas"] <= hpa["maxReplicas"]
    (metric,) = hpa["metrics"]
    assert metric["resource"]["name"] == "cpu"
    assert metric["resource"]["target"]["type"] == "Utilization"


def test_configmap_holds_the_example_config_files():
    data = manifests()["ConfigMap"]["data"]
    assert sorted(data) == sorted(CONFIG_FILES)
    for name in CONFIG_FILES:
        assert data[name] == (SERVING / name).read_text(), name


def test_models_config_parses_with_tf_serving_protos():
    config = models_config()
    models = {model.name: model for model in config.model_config_list.config}
    assert len(models) == 2
    assert {model.model_platform for model in models.values()} == {"tensorflow"}
    (labelled,) = [model for model in models.values() if model.version_labels]
    assert set(labelled.version_labels) == {"stable", "canary"}
    assert labelled.model_version_policy.WhichOneof("policy_choice") == "specific"
    served_versions = set(labelled.model_version_policy.specific.versions)
    assert set(labelled.version_labels.values()) <= served_versions
    # The project's reader takes it too, with its checks (absolute paths, platform, labels).
    read = config_files.read_model_config_file(SERVING / "models.config")
    assert [(m.name, m.base_path, m.labels) for m in read] == [
        (m.name, m.base_path, dict(m.version_labels)) for m in config.model_config_list.config
    ]


def test_batching_config_parses_and_the_readme_states_its_values():
    parameters = config_files.read_batching_parameters(SERVING / "batching.config")
    check_supported(parameters)  # the development server runs it too
    assert not parameters.pad_variable_length_inputs
    readme = README.read_text()
    for field in ("max_batch_size", "batch_timeout_micros", "max_enqueued_batches",
                  "num_batch_threads"):
        assert f"`{field}` {getattr(parameters, field)}" in readme, field


def test_monitoring_config_enables_the_path_the_docs_scrape():
    monitoring = config_files.read_monitoring_config(SERVING / "monitoring.config")
    assert monitoring.enable
    assert f"curl localhost:8501{monitoring.path}" in readme_commands()
    annotations = manifests()["Deployment"]["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/path"] == monitoring.path


def test_readme_container_command_names_only_tf_serving_flags():
    (command,) = commands_starting("docker run")
    words = shlex.split(command)
    image_at = words.index(IMAGE)
    args = words[image_at + 1:]
    assert args and unknown_flags(args) == []
    mounted = [w for w in words[:image_at] if w.endswith(":/models") or ":/models:" in w]
    assert mounted == ["$PWD/exports:/models:ro"]
    copied = shlex.split(commands_starting("cp serving/")[0])[1:-1]
    for arg in args:
        value = arg.split("=", 1)[1]
        if value.startswith("/models/"):
            assert f"serving/{value.removeprefix('/models/')}" in copied, arg


def test_unknown_flags_catches_misspellings_and_separate_values():
    assert unknown_flags(["--model_config_file=/m", "--enable_batching=true"]) == []
    assert unknown_flags(["--model_config=/m"]) == ["--model_config=/m"]
    assert unknown_flags(["--port", "8500"]) == ["--port", "8500"]
    assert unknown_flags(["--max_request_bytes=10"]) == ["--max_request_bytes=10"]


def test_readme_dev_server_commands_parse():
    commands = commands_starting("python -m serving.server")
    assert len(commands) >= 2
    for command in commands:
        options = parse_args(shlex.split(command)[3:])
        assert options.port == 8500 and options.rest_api_port == 8501, command


def test_readme_rest_examples_are_tf_serving_requests():
    metrics_path = config_files.read_monitoring_config(SERVING / "monitoring.config").path
    posts = gets = 0
    for command in commands_starting("curl"):
        words = shlex.split(command)
        if "-d" in words:
            body = json.loads(words[words.index("-d") + 1])
            assert ("instances" in body) != ("inputs" in body), command
            assert PREDICT_URL.fullmatch(words[-1]), command
            posts += 1
        elif not words[-1].endswith(metrics_path):
            assert GET_URL.fullmatch(words[-1]), command
            gets += 1
    assert posts >= 4 and gets >= 3


def test_readme_release_table_matches_the_export_op_table():
    text_in = OpsCompatibility.of(
        {"FastBertNormalize", "FastWordpieceTokenizeWithOffsets", "NormalizeUTF8"}, set()
    )
    bundles = {}
    for release, tf_text, _ in TF_SERVING_RELEASES:
        if release in text_in.releases:
            bundles.setdefault(tf_text, []).append(release)
    spans = ", ".join(
        f"TF Text {tf_text} in {releases[0]}" + (f"–{releases[-1]}" if len(releases) > 1 else "")
        for tf_text, releases in bundles.items()
    )
    row = f"| {text_in.describe_releases()} ({spans}) |"
    assert row in README.read_text()
    ids_only = OpsCompatibility.of(set(), set()).describe_releases()
    assert f"| every release, as far as ops go ({ids_only}) |" in README.read_text()


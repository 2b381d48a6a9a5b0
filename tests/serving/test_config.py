"""serving.config: TF Serving's config files, read with its protos."""

import os

import pytest
from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from serving import config, protos

KEY_PEM = (
    "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----\n"
)
CERT_PEM = "-----BEGIN CERTIFICATE-----\nMIIDazCCAlOgAwIBAgIUJ\n-----END CERTIFICATE-----\n"
CA_PEM = CERT_PEM.replace("MIID", "MIIC")


def write(tmp_path, text, name="file.config"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_built_descriptors_have_tf_servings_names_and_field_numbers():
    # The contract, copied from tensorflow/serving's .proto files: files written
    # for tensorflow_model_server parse here only if these match.
    session_bundle_config = {  # servables/tensorflow/session_bundle_config.proto
        "max_batch_size": (1, "google.protobuf.Int64Value"),
        "batch_timeout_micros": (2, "google.protobuf.Int64Value"),
        "max_enqueued_batches": (3, "google.protobuf.Int64Value"),
        "num_batch_threads": (4, "google.protobuf.Int64Value"),
        "thread_pool_name": (5, "google.protobuf.StringValue"),
        "allowed_batch_sizes": (6, "int64"),
        "pad_variable_length_inputs": (7, "bool"),
        "enable_large_batch_splitting": (8, "google.protobuf.BoolValue"),
        "max_execution_batch_size": (9, "google.protobuf.Int64Value"),
    }
    monitoring_config = {"prometheus_config": (1, "tensorflow.serving.PrometheusConfig")}
    prometheus_config = {"enable": (1, "bool"), "path": (2, "string")}
    ssl_config = {
        "server_key": (1, "string"),
        "server_cert": (2, "string"),
        "custom_ca": (3, "string"),
        "client_verify": (4, "bool"),
    }
    scalar_names = {3: "int64", 8: "bool", 9: "string"}

    def fields(message_class):
        return {
            field.name: (
                field.number,
                field.message_type.full_name if field.message_type else scalar_names[field.type],
            )
            for field in message_class.DESCRIPTOR.fields
        }

    assert (
        protos.BatchingParameters.DESCRIPTOR.full_name == "tensorflow.serving.BatchingParameters"
    )
    assert fields(protos.BatchingParameters) == session_bundle_config
    assert protos.BatchingParameters.DESCRIPTOR.fields_by_name["allowed_batch_sizes"].is_repeated
    assert protos.MonitoringConfig.DESCRIPTOR.full_name == "tensorflow.serving.MonitoringConfig"
    assert fields(protos.MonitoringConfig) == monitoring_config
    assert fields(protos.PrometheusConfig) == prometheus_config
    assert protos.SSLConfig.DESCRIPTOR.full_name == "tensorflow.serving.SSLConfig"
    assert fields(protos.SSLConfig) == ssl_config
    assert protos.SSLConfig.DESCRIPTOR.file.name == "tensorflow_serving/config/ssl_config.proto"


def test_built_messages_round_trip_through_the_wire_and_text_formats():
    message = protos.BatchingParameters(
        allowed_batch_sizes=[8, 32], pad_variable_length_inputs=True
    )
    message.max_batch_size.value = 32
    message.thread_pool_name.value = "pool"
    assert protos.BatchingParameters.FromString(message.SerializeToString()) == message
    assert (
        text_format.Parse(text_format.MessageToString(message), protos.BatchingParameters())
        == message
    )


MODELS_CONFIG = """
# Two models: a canary on a specific pair of versions, and the newest two.
model_config_list {
  config {
    name: "sentiment"
    base_path: "/models/sentiment"
    model_platform: "tensorflow"
    model_version_policy { specific { versions: 2 versions: 1 } }
    version_labels { key: "stable" value: 1 }
    version_labels { key: "canary" value: 2 }
  }
  config {
    name: "embedder"
    base_path: "/models//embedder/"
    model_platform: "tensorflow"
    model_version_policy { latest { num_versions: 2 } }
  }
  config {
    name: "ner"
    base_path: "file:///models/ner"
    model_type: TENSORFLOW
    model_version_policy { all {} }
  }
  config { name: "qa" base_path: "/models:v2/qa" model_platform: "tensorflow" }
}
"""


def test_model_config_file_reads_every_policy_label_and_path_form(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = write(tmp_path, MODELS_CONFIG, "models.config")
    assert config.read_model_config_file(path) == [
        config.ModelConfig(
            "sentiment",
            "/models/sentiment",
            "specific",
            versions=(1, 2),
            labels={"stable": 1, "canary": 2},
        ),
        config.ModelConfig("embedder", "/models/embedder", "latest", num_versions=2),
        config.ModelConfig("ner", "/models/ner", "all"),
        config.ModelConfig("qa", "/models:v2/qa", "latest", num_versions=1),
    ]


def test_model_configs_from_proto_reads_a_built_message_and_latest_zero_serves_one():
    message = model_server_config_pb2.ModelServerConfig()
    model = message.model_config_list.config.add(
        name="m", base_path="/m", model_platform="tensorflow"
    )
    model.model_version_policy.latest.num_versions = 0
    assert config.model_configs_from_proto(message) == [
        config.ModelConfig("m", "/m", "latest", num_versions=1)
    ]


def model_list(*bodies):
    """A config listing `bodies`; each gets model_platform "tensorflow" unless it sets one."""
    bodies = [
        body if "model_platform" in body or "model_type" in body
        else f'{body} model_platform: "tensorflow"'
        for body in bodies
    ]
    return (
        "model_config_list {\n" + "\n".join(f"  config {{ {body} }}" for body in bodies) + "\n}\n"
    )


@pytest.mark.parametrize(
    "text, problem",
    [
        (
            model_list('name: "a" base_path: "/a"', 'name: "a" base_path: "/b"'),
            "Illegal to list model a multiple",
        ),
        (model_list('base_path: "/a"'), "needs a non-empty name"),
        (model_list('name: "a"'), "needs a non-empty base_path"),
        (model_list('name: "a" base_path: "gs://bucket/a"'), "is a gs:// URI"),
        (model_list('name: "a" base_path: "exports/a"'),
         "Expected model a to have an absolute path or URI"),
        (model_list('name: "a" base_path: "/a" model_platform: ""'),
         "Illegal setting neither model_type nor model_platform"),
        (
            model_list('name: "a" base_path: "/a" model_platform: "tflite"'),
            "unsupported platform 'tflite'",
        ),
        (
            model_list(
                'name: "a" base_path: "/a" model_platform: "tensorflow" model_type: TENSORFLOW'
            ),
            "sets both model_type",
        ),
        (
            model_list('name: "a" base_path: "/a" model_type: OTHER'),
            "model_type OTHER is not supported",
        ),
        (
            model_list('name: "a" base_path: "/a" model_version_policy { specific {} }'),
            "at least one version",
        ),
        (
            model_list(
                'name: "a" base_path: "/a" model_version_policy { specific { versions: -3 } }'
            ),
            "versions must be >= 0",
        ),
        (
            model_list(
                'name: "a" base_path: "/a" model_version_policy { specific { versions: 1 } } '
                'version_labels { key: "canary" value: 2 }'
            ),
            "label 'canary' points to version 2, which the specific policy does not serve",
        ),
        (
            model_list('name: "a" base_path: "/a" version_labels { key: "" value: 2 }'),
            "non-empty name",
        ),
        (
            model_list('name: "a" base_path: "/a" version_labels { key: "x" value: -1 }'),
            "negative version -1",
        ),
        (
            model_list('name: "a" base_path: "/a" logging_config {}'),
            "logging_config (request logging)",
        ),
        ("custom_model_config {}", "custom_model_config is not supported"),
        ("", "lists no models"),
        ("model_config_list {}", "lists no models"),
        (
            'model_config_list {\n  config {\n    name: "a"\n    base_pth: "/a"\n  }\n}\n',
            "line 4, column 5: not a valid tensorflow.serving.ModelServerConfig text proto: "
            'Message type "tensorflow.serving.ModelConfig" has no field named "base_pth"',
        ),
        (
            'model_config_list { config { name: "a" base_path: "/a" } ',
            "line 1, column 56: not a valid tensorflow.serving.ModelServerConfig text proto: "
            'Expected "}"',
        ),
        (
            'model_config_list { config { name: "a" base_path: "/a" '
            "model_version_policy { latest { num_versions: -1 } } } }",
            "Value out of range: -1",
        ),
    ],
)
def test_model_config_file_errors_name_the_file_and_the_problem(tmp_path, text, problem):
    path = write(tmp_path, text, "models.config")
    with pytest.raises(ValueError) as error:
        config.read_model_config_file(path)
    assert str(error.value).startswith(str(path))
    assert problem in str(error.value)


def test_a_parse_error_on_a_huge_line_is_cut_short(tmp_path):
    path = write(
        tmp_path, 'model_config_list { config { name: "' + "a" * 100_000 + '" base_path: 1 } }'
    )
    with pytest.raises(ValueError, match="Expected string") as error:
        config.read_model_config_file(path)
    assert len(str(error.value)) < 1000


def test_unreadable_oversized_and_binary_files_are_value_errors(tmp_path):
    missing = tmp_path / "missing.config"
    with pytest.raises(ValueError, match=f"{missing}: cannot read the config file"):
        config.read_model_config_file(missing)
    big = tmp_path / "big.config"
    big.write_bytes(b"#" * (config.MAX_CONFIG_FILE_BYTES + 1))
    with pytest.raises(
        ValueError, match=f"{big}: larger than {config.MAX_CONFIG_FILE_BYTES} bytes"
    ):
        config.read_batching_parameters(big)
    binary = tmp_path / "saved_model.pb"
    binary.write_bytes(b"\x08\x96\x01\xff\xfe")
    with pytest.raises(ValueError, match=f"{binary}: not UTF-8 text"):
        config.read_monitoring_config(binary)


def test_batching_parameters_file_reads_tf_servings_format(tmp_path):
    path = write(
        tmp_path,
        """
        max_batch_size { value: 32 }
        batch_timeout_micros { value: 2000 }
        max_enqueued_batches { value: 64 }
        num_batch_threads { value: 3 }
        thread_pool_name { value: "model_server_batch_threads" }
        allowed_batch_sizes: 8
        allowed_batch_sizes: 16
        allowed_batch_sizes: 32
        pad_variable_length_inputs: true
        """,
    )
    parameters = config.read_batching_parameters(path)
    assert parameters == config.BatchingParameters(
        max_batch_size=32,
        batch_timeout_micros=2000,
        max_enqueued_batches=64,
        num_batch_threads=3,
        allowed_batch_sizes=(8, 16, 32),
        pad_variable_length_inputs=True,
        thread_pool_name="model_server_batch_threads",
    )
    assert parameters.execution_batch_size == 32


def test_unset_batching_fields_take_tf_servings_defaults(tmp_path):
    parameters = config.read_batching_parameters(write(tmp_path, "# all defaults\n"))
    # SharedBatchScheduler's QueueOptions and Options (shared_batch_scheduler.h).
    assert parameters.max_batch_size == 1000
    assert parameters.batch_timeout_micros == 0
    assert parameters.max_enqueued_batches == 10
    assert parameters.num_batch_threads == len(os.sched_getaffinity(0))
    assert parameters.thread_pool_name == "batch_threads"
    assert parameters.allowed_batch_sizes == ()
    assert not parameters.pad_variable_length_inputs
    assert not parameters.enable_large_batch_splitting
    assert parameters == config.BatchingParameters()


def test_large_batch_splitting_caps_each_run_at_max_execution_batch_size(tmp_path):
    path = write(
        tmp_path,
        "max_batch_size { value: 64 } enable_large_batch_splitting { value: true } "
        "max_execution_batch_size { value: 16 } allowed_batch_sizes: 4 allowed_batch_sizes: 16",
    )
    parameters = config.read_batching_parameters(path)
    assert parameters.enable_large_batch_splitting
    assert parameters.execution_batch_size == 16
    unsplit = config.read_batching_parameters(
        write(tmp_path, "max_execution_batch_size { value: 16 }")
    )
    assert unsplit.execution_batch_size == 1000


@pytest.mark.parametrize(
    "text, problem",
    [
        ("max_batch_size { value: 0 }", "max_batch_size must be positive; was 0"),
        ("num_batch_threads { value: -2 }", "num_batch_threads must be positive; was -2"),
        ("max_enqueued_batches { value: 0 }", "max_enqueued_batches must be positive"),
        ("batch_timeout_micros { value: -1 }", "batch_timeout_micros must be non-negative"),
        (
            "max_batch_size { value: 8 } "
            "allowed_batch_sizes: 4 allowed_batch_sizes: 2 allowed_batch_sizes: 8",
            "increasing",
        ),
        (
            "max_batch_size { value: 8 } allowed_batch_sizes: 0 allowed_batch_sizes: 8",
            "positive and increasing",
        ),
        (
            "max_batch_size { value: 8 } allowed_batch_sizes: 2 allowed_batch_sizes: 4",
            "Last entry in allowed_batch_sizes must match max_batch_size; "
            "last entry was 4; expected 8",
        ),
        (
            "max_batch_size { value: 8 } enable_large_batch_splitting { value: true } "
            "max_execution_batch_size { value: 16 }",
            "max_batch_size must be >= max_execution_batch_size",
        ),
        (
            "max_batch_size { value: 8 } enable_large_batch_splitting { value: true } "
            "max_execution_batch_size { value: 4 } allowed_batch_sizes: 8",
            "must match max_execution_batch_size",
        ),
        (
            "max_batch_size: 32",
            "line 1, column 17: not a valid tensorflow.serving.BatchingParameters text proto",
        ),
        (
            "max_batch_size { value: 32 }  # " + "x" * 10_000 + "\nnum_batch_threads: 4",
            "line 2, column 20",
        ),
        ("max_batch_size { value: 32 }\nbatch_size { value: 4 }", "line 2, column 1"),
    ],
)
def test_batching_parameters_errors_name_the_file_and_the_problem(tmp_path, text, problem):
    path = write(tmp_path, text, "batching.config")
    with pytest.raises(ValueError) as error:
        config.read_batching_parameters(path)
    assert str(error.value).startswith(str(path))
    assert problem in str(error.value)


def test_monitoring_config_file(tmp_path):
    enabled = write(tmp_path, 'prometheus_config {\n  enable: true,\n  path: "/metrics"\n}\n')
    assert config.read_monitoring_config(enabled) == config.MonitoringConfig(
        enable=True, path="/metrics"
    )
    default_path = write(tmp_path, "prometheus_config { enable: true }", "default.config")
    assert config.read_monitoring_config(default_path) == config.MonitoringConfig(
        enable=True, path="/monitoring/prometheus/metrics"
    )
    assert (
        config.read_monitoring_config(write(tmp_path, "", "empty.config"))
        == config.MonitoringConfig()
    )
    relative = write(
        tmp_path, 'prometheus_config { enable: true path: "metrics" }', "relative.config"
    )
    with pytest.raises(ValueError, match=f"{relative}: the Prometheus path must start with '/'"):
        config.read_monitoring_config(relative)
    typo = write(tmp_path, "prometheus_config { enabled: true }", "typo.config")
    with pytest.raises(ValueError, match=f'{typo}, line 1, column 21: .*no field named "enabled"'):
        config.read_monitoring_config(typo)


def ssl_text(**fields):
    return "".join(f"{name}: {text_format_value(value)}\n" for name, value in fields.items())


def text_format_value(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    return '"' + value.replace("\n", "\\n") + '"'


def test_ssl_config_file_holds_pem_contents(tmp_path):
    path = write(
        tmp_path,
        ssl_text(server_key=KEY_PEM, server_cert=CERT_PEM, custom_ca=CA_PEM, client_verify=True),
    )
    assert config.read_ssl_config(path) == config.SSLConfig(
        KEY_PEM, CERT_PEM, CA_PEM, client_verify=True
    )
    plain = write(tmp_path, ssl_text(server_key=KEY_PEM, server_cert=CERT_PEM), "plain.config")
    assert config.read_ssl_config(plain) == config.SSLConfig(KEY_PEM, CERT_PEM)


@pytest.mark.parametrize(
    "fields, problem",
    [
        (
            {"server_key": "/etc/tls/server.key", "server_cert": CERT_PEM},
            "server_key must hold PEM contents",
        ),
        (
            {"server_key": KEY_PEM},
            "server_cert must hold PEM contents (-----BEGIN ...), not a path; it is empty",
        ),
        (
            {"server_key": KEY_PEM, "server_cert": CERT_PEM, "custom_ca": "ca.pem"},
            "custom_ca must hold PEM",
        ),
        (
            {"server_key": KEY_PEM, "server_cert": CERT_PEM, "client_verify": True},
            "client_verify needs custom_ca",
        ),
    ],
)
def test_ssl_config_errors_name_the_file_and_the_problem(tmp_path, fields, problem):
    path = write(tmp_path, ssl_text(**fields), "ssl.config")
    with pytest.raises(ValueError) as error:
        config.read_ssl_config(path)
    assert str(error.value).startswith(str(path))
    assert problem in str(error.value)

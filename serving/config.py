"""The server's configuration: TF Serving's config files, read with TF Serving's protos.

`--model_config_file` (a `ModelServerConfig` text proto), `--batching_parameters_file`
(`BatchingParameters`), `--monitoring_config_file` (`MonitoringConfig`) and
`--ssl_config_file` (`SSLConfig`), each parsed by protobuf's text format
(as `tensorflow_model_server` parses them) into a plain frozen dataclass.
Every problem is a ValueError that names the file.

Where the behaviour comes from (tensorflow/serving, tensorflow/core):
- model configs: model_servers/server_core.cc (`GetPlatform`,
  `ValidateModelConfigList`), sources/storage_path/file_system_storage_path_source.cc
  (`latest` serves max(num_versions, 1) versions);
- batching defaults: servables/tensorflow/bundle_factory_util.h (only the fields
  that are set override) and tensorflow/core/kernels/batching_util/
  shared_batch_scheduler.h (`Options`, `QueueOptions`); batching checks:
  shared_batch_scheduler.h and batching/batching_session.cc;
- monitoring: model_servers/http_server.cc (empty path -> PrometheusExporter::kPrometheusPath);
- TLS: model_servers/server.cc (`BuildServerCredentials`).
"""

from __future__ import annotations

import dataclasses
import os
import re

from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from serving import protos

# Config files are a few lines; a bound keeps a wrong path (a model file, a
# device) from being read whole into memory.
MAX_CONFIG_FILE_BYTES = 10 * 1024 * 1024

_DETAIL_END_CHARS = 200

TENSORFLOW_PLATFORM = "tensorflow"
VERSION_POLICIES = ("latest", "all", "specific")
PROMETHEUS_PATH = "/monitoring/prometheus/metrics"


def _schedulable_cpus() -> int:
    """TensorFlow's `port::MaxParallelism()`: the CPUs this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """One served model: TF Serving's `ModelConfig`.

    `policy` is "latest" (the `num_versions` highest versions), "all", or
    "specific" (exactly `versions`); `labels` maps version labels to versions.
    """

    name: str
    base_path: str
    policy: str = "latest"
    num_versions: int = 1
    versions: tuple[int, ...] = ()
    labels: dict[str, int] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        if not self.name:
            raise ValueError("a model needs a non-empty name")
        if not self.base_path:
            raise ValueError(f"model {self.name!r} needs a non-empty base_path")
        if self.policy not in VERSION_POLICIES:
            raise ValueError(
                f"model {self.name!r}: version policy must be one of {VERSION_POLICIES}, "
                f"got {self.policy!r}"
            )
        if self.num_versions < 1:
            raise ValueError(
                f"model {self.name!r}: num_versions must be >= 1, got {self.num_versions}"
            )
        if self.policy == "specific" and not self.versions:
            raise ValueError(
                f"model {self.name!r}: a specific version policy needs at least one version"
            )
        if self.policy != "specific" and self.versions:
            raise ValueError(
                f"model {self.name!r}: versions are only given with the specific policy"
            )
        negative = [v for v in self.versions if v < 0]
        if negative:
            raise ValueError(f"model {self.name!r}: versions must be >= 0, got {negative}")
        for label, version in self.labels.items():
            if not label:
                raise ValueError(f"model {self.name!r}: a version label needs a non-empty name")
            if version < 0:
                raise ValueError(
                    f"model {self.name!r}: label {label!r} points to negative version {version}"
                )
            if self.policy == "specific" and version not in self.versions:
                raise ValueError(
                    f"model {self.name!r}: label {label!r} points to version {version}, "
                    f"which the specific policy does not serve (versions {list(self.versions)})"
                )


@dataclasses.dataclass(frozen=True)
class BatchingParameters:
    """Server-side batching: TF Serving's `BatchingParameters`, with its defaults.

    The defaults are what `tensorflow_model_server` uses for a field the file
    leaves unset: `SharedBatchScheduler::QueueOptions` (max_batch_size 1000,
    batch_timeout_micros 0, max_enqueued_batches 10, no large-batch splitting)
    and `SharedBatchScheduler::Options` (num_batch_threads = the schedulable
    CPUs, thread_pool_name "batch_threads"). `max_execution_batch_size` matters
    only with `enable_large_batch_splitting`; None means `max_batch_size`.
    """

    max_batch_size: int = 1000
    batch_timeout_micros: int = 0
    max_enqueued_batches: int = 10
    num_batch_threads: int = dataclasses.field(default_factory=_schedulable_cpus)
    allowed_batch_sizes: tuple[int, ...] = ()
    pad_variable_length_inputs: bool = False
    thread_pool_name: str = "batch_threads"
    enable_large_batch_splitting: bool = False
    max_execution_batch_size: int | None = None

    @property
    def execution_batch_size(self) -> int:
        """The largest batch one run gets (TF Serving's `max_execution_batch_size`)."""
        if self.enable_large_batch_splitting and self.max_execution_batch_size is not None:
            return self.max_execution_batch_size
        return self.max_batch_size

    def __post_init__(self):
        for name in ("max_batch_size", "max_enqueued_batches", "num_batch_threads"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive; was {getattr(self, name)}")
        if self.batch_timeout_micros < 0:
            raise ValueError(
                f"batch_timeout_micros must be non-negative; was {self.batch_timeout_micros}"
            )
        if self.max_execution_batch_size is not None and self.max_execution_batch_size < 1:
            raise ValueError(
                f"max_execution_batch_size must be positive; was {self.max_execution_batch_size}"
            )
        if self.enable_large_batch_splitting and self.execution_batch_size > self.max_batch_size:
            raise ValueError(
                "with enable_large_batch_splitting, max_batch_size must be >= "
                "max_execution_batch_size; "
                f"got {self.max_batch_size} < {self.execution_batch_size}"
            )
        sizes = self.allowed_batch_sizes
        if sizes:
            if sizes[0] < 1 or any(later <= earlier for earlier, later in zip(sizes, sizes[1:])):
                raise ValueError(
                    "allowed_batch_sizes entries must be positive and increasing; "
                    f"got {list(sizes)}"
                )
            if sizes[-1] != self.execution_batch_size:
                limit = (
                    "max_execution_batch_size"
                    if self.enable_large_batch_splitting
                    else "max_batch_size"
                )
                raise ValueError(
                    f"Last entry in allowed_batch_sizes must match {limit}; "
                    f"last entry was {sizes[-1]}; expected {self.execution_batch_size}"
                )


@dataclasses.dataclass(frozen=True)
class MonitoringConfig:
    """Prometheus metrics: served at `path` on the REST port when `enable`."""

    enable: bool = False
    path: str = PROMETHEUS_PATH

    def __post_init__(self):
        if not self.path.startswith("/"):
            raise ValueError(f"the Prometheus path must start with '/'; got {self.path!r}")


@dataclasses.dataclass(frozen=True)
class SSLConfig:
    """gRPC TLS: PEM contents (not paths), as in TF Serving's `SSLConfig`."""

    server_key: str
    server_cert: str
    custom_ca: str = ""
    client_verify: bool = False

    def __post_init__(self):
        pems = {"server_key": self.server_key, "server_cert": self.server_cert}
        if self.custom_ca:
            pems["custom_ca"] = self.custom_ca
        for name, value in pems.items():
            if "-----BEGIN " not in value:
                shown = "empty" if not value else f"starts {value[:40]!r}"
                raise ValueError(
                    f"{name} must hold PEM contents (-----BEGIN ...), not a path; it is {shown}"
                )
        if self.client_verify and not self.custom_ca:
            raise ValueError(
                "client_verify needs custom_ca: the CA that signs the client certificates"
            )


def _read_text_proto(path, message):
    """Parses the text proto at `path` into `message`, as TF Serving's ParseProtoTextFile."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as file:
            # Read one byte past the bound: the size of a special file (a
            # pipe, /dev/zero) says nothing about what reading it yields.
            data = file.read(MAX_CONFIG_FILE_BYTES + 1)
    except OSError as error:
        raise ValueError(
            f"{path}: cannot read the config file: {error.strerror or error}"
        ) from error
    if len(data) > MAX_CONFIG_FILE_BYTES:
        raise ValueError(f"{path}: larger than {MAX_CONFIG_FILE_BYTES} bytes; not a config file")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ValueError(
            f"{path}: not UTF-8 text (byte {error.start}); not a text proto"
        ) from error
    try:
        text_format.Parse(text, message)
    except text_format.ParseError as error:
        detail = re.sub(r"^\d+:\d+ : ", "", str(error))
        if len(detail) > 2 * _DETAIL_END_CHARS:
            # protobuf quotes the whole offending line; a one-line file can be megabytes.
            detail = f"{detail[:_DETAIL_END_CHARS]} ... {detail[-_DETAIL_END_CHARS:]}"
        raise ValueError(
            f"{path}, line {error.GetLine()}, column {error.GetColumn()}: "
            f"not a valid {message.DESCRIPTOR.full_name} text proto: {detail}"
        ) from error
    return message


def _build(source: str, factory, **fields):
    """Builds a config dataclass; its checks' ValueErrors name `source`."""
    try:
        return factory(**fields)
    except ValueError as error:
        raise ValueError(f"{source}: {error}") from error


def _platform(model: model_server_config_pb2.ModelConfig, source: str) -> str:
    """The model's platform, read as server_core.cc's GetPlatform reads it."""
    name = repr(model.name)
    if model.model_type != model_server_config_pb2.MODEL_TYPE_UNSPECIFIED:
        if model.model_platform:
            raise ValueError(
                f"{source}: model {name} sets both model_type (deprecated) and "
                "model_platform; set model_platform only"
            )
        if model.model_type != model_server_config_pb2.TENSORFLOW:
            type_name = model_server_config_pb2.ModelType.Name(model.model_type)
            raise ValueError(f"{source}: model {name}: model_type {type_name} is not supported")
        return TENSORFLOW_PLATFORM
    if not model.model_platform:
        # server_core.cc refuses it too; a config that loads here loads there.
        raise ValueError(
            f"{source}: model {name}: Illegal setting neither model_type nor model_platform "
            f'(set model_platform: "{TENSORFLOW_PLATFORM}")'
        )
    return model.model_platform


def _base_path(model: model_server_config_pb2.ModelConfig, source: str) -> str:
    if not model.base_path:
        raise ValueError(f"{source}: model {model.name!r} needs a non-empty base_path")
    # A URI is `scheme://...`, as TensorFlow's io::ParseURI reads one.
    uri = re.match(r"([a-zA-Z][a-zA-Z0-9+.-]*)://(.*)", model.base_path)
    if uri and uri[1] != "file":
        raise ValueError(
            f"{source}: model {model.name!r}: base_path {model.base_path!r} is a {uri[1]}:// URI; "
            "this server reads local directories only (tensorflow_model_server reads the URI)"
        )
    path = uri[2] if uri else model.base_path
    if not os.path.isabs(path):
        # server_core.cc refuses relative paths too; a config that loads here loads there.
        raise ValueError(
            f"{source}: Expected model {model.name} to have an absolute path or URI; "
            f"got {model.base_path!r}"
        )
    return os.path.normpath(path)


def _version_policy(model: model_server_config_pb2.ModelConfig) -> dict:
    policy = model.model_version_policy
    choice = policy.WhichOneof("policy_choice")
    if choice == "all":
        return {"policy": "all"}
    if choice == "specific":
        return {"policy": "specific", "versions": tuple(sorted(set(policy.specific.versions)))}
    # Unset, `latest {}` and `num_versions: 0` all serve one version
    # (file_system_storage_path_source.cc: max(num_versions, 1)).
    return {"policy": "latest", "num_versions": max(policy.latest.num_versions, 1)}


def model_configs_from_proto(
    config: model_server_config_pb2.ModelServerConfig, *, source: str = "ModelServerConfig"
) -> list[ModelConfig]:
    """The models of a `ModelServerConfig`, checked; errors name `source` (the file).

    Only `model_config_list` of "tensorflow" models is served. As in
    `tensorflow_model_server`, `model_platform` must be set and `base_path`
    must be absolute, so a config that loads here loads there.
    """
    kind = config.WhichOneof("config")
    if kind == "custom_model_config":
        raise ValueError(
            f"{source}: custom_model_config is not supported; list the models in model_config_list"
        )
    if kind is None or not config.model_config_list.config:
        raise ValueError(f"{source}: model_config_list lists no models")
    models = []
    seen = set()
    for model in config.model_config_list.config:
        if not model.name:
            raise ValueError(f"{source}: every model in model_config_list needs a non-empty name")
        if model.name in seen:
            raise ValueError(
                f"{source}: Illegal to list model {model.name} multiple times in config list"
            )
        seen.add(model.name)
        platform = _platform(model, source)
        if platform != TENSORFLOW_PLATFORM:
            raise ValueError(
                f"{source}: model {model.name!r} requests unsupported platform {platform!r}; "
                f"this server serves {TENSORFLOW_PLATFORM!r} SavedModels only"
            )
        if model.HasField("logging_config"):
            raise ValueError(
                f"{source}: model {model.name!r}: "
                "logging_config (request logging) is not supported"
            )
        models.append(
            _build(
                source,
                ModelConfig,
                name=model.name,
                base_path=_base_path(model, source),
                labels=dict(model.version_labels),
                **_version_policy(model),
            )
        )
    return models


def read_model_config_file(path) -> list[ModelConfig]:
    """The models of a `--model_config_file` (a `ModelServerConfig` text proto)."""
    config = _read_text_proto(path, model_server_config_pb2.ModelServerConfig())
    return model_configs_from_proto(config, source=os.fspath(path))


def _set_wrappers(message, names) -> dict:
    """The wrapper fields (`Int64Value`, ...) the message sets, unwrapped."""
    return {name: getattr(message, name).value for name in names if message.HasField(name)}


def read_batching_parameters(path) -> BatchingParameters:
    """A `--batching_parameters_file`: TF Serving's `BatchingParameters` text proto.

    E.g. `max_batch_size { value: 32 } batch_timeout_micros { value: 2000 }`;
    unset fields keep TF Serving's defaults (see `BatchingParameters`).
    """
    message = _read_text_proto(path, protos.BatchingParameters())
    fields = _set_wrappers(
        message,
        (
            "max_batch_size",
            "batch_timeout_micros",
            "max_enqueued_batches",
            "num_batch_threads",
            "thread_pool_name",
            "enable_large_batch_splitting",
            "max_execution_batch_size",
        ),
    )
    return _build(
        os.fspath(path),
        BatchingParameters,
        allowed_batch_sizes=tuple(message.allowed_batch_sizes),
        pad_variable_length_inputs=message.pad_variable_length_inputs,
        **fields,
    )


def read_monitoring_config(path) -> MonitoringConfig:
    """A `--monitoring_config_file`: `prometheus_config { enable: true, path: "/metrics" }`."""
    prometheus = _read_text_proto(path, protos.MonitoringConfig()).prometheus_config
    return _build(
        os.fspath(path),
        MonitoringConfig,
        enable=prometheus.enable,
        path=prometheus.path or PROMETHEUS_PATH,
    )


def read_ssl_config(path) -> SSLConfig:
    """A `--ssl_config_file`: `server_key`, `server_cert` (and `custom_ca`) as PEM contents."""
    message = _read_text_proto(path, protos.SSLConfig())
    return _build(
        os.fspath(path),
        SSLConfig,
        server_key=message.server_key,
        server_cert=message.server_cert,
        custom_ca=message.custom_ca,
        client_verify=message.client_verify,
    )

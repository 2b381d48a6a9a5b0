"""The server's configuration: TF Serving's config files, read with TF Serving's protos.

`--model_config_file` (a `ModelServerConfig` text proto), `--batching_parameters_file`
(`BatchingParameters`), `--monitoring_config_file` (`MonitoringConfig`) and
`--ssl_config_file` (`SSLConfig`), each read into a plain frozen dataclass.
"""

from __future__ import annotations

import dataclasses


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


@dataclasses.dataclass(frozen=True)
class BatchingParameters:
    """Server-side batching: TF Serving's `BatchingParameters` (its defaults)."""

    max_batch_size: int = 1000
    batch_timeout_micros: int = 0
    max_enqueued_batches: int = 100
    num_batch_threads: int = 4
    allowed_batch_sizes: tuple[int, ...] = ()
    pad_variable_length_inputs: bool = False


@dataclasses.dataclass(frozen=True)
class MonitoringConfig:
    """Prometheus metrics: served at `path` on the REST port when `enable`."""

    enable: bool = False
    path: str = "/monitoring/prometheus/metrics"


@dataclasses.dataclass(frozen=True)
class SSLConfig:
    """gRPC TLS: PEM contents (not paths), as in TF Serving's `SSLConfig`."""

    server_key: str
    server_cert: str
    custom_ca: str = ""
    client_verify: bool = False

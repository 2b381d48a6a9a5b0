"""A TF Serving-compatible model server, for development and tests.

    python -m serving.server --port 8500 --rest_api_port 8501 \\
        --model_name sentiment --model_base_path exports/sentiment

Flags are named as `tensorflow_model_server`'s, so a command carries over to
the production image (`tensorflow/serving:2.20.0`) on the same export
directory; serving/README.md lists them. Production scales out with more
replicas of the official server, not with this one.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import logging
import os
import signal
import sys
import threading

import grpc

from serving import config as config_files
from serving.config import ModelConfig
from serving.core import ServingCore
from serving.grpc_api import add_services
from training.settings import program_name

log = logging.getLogger("serving")

DEFAULT_MAX_REQUEST_BYTES = 64 * 1024 * 1024


@dataclasses.dataclass
class ServerOptions:
    """The server's settings; each field is the `tensorflow_model_server` flag of that name.

    `port=0` picks a free port. `rest_api_port=None` serves no REST API
    (the flag's 0, as in TF Serving); 0 here picks a free port.
    """

    port: int = 8500
    rest_api_port: int | None = None
    host: str = "127.0.0.1"
    model_name: str | None = None
    model_base_path: str | None = None
    model_config_file: str | None = None
    file_system_poll_wait_seconds: float = 1.0
    enable_batching: bool = False
    batching_parameters_file: str | None = None
    monitoring_config_file: str | None = None
    grpc_max_threads: int = max(16, 4 * (os.cpu_count() or 1))
    ssl_config_file: str | None = None
    ssl_cert_file: str | None = None
    ssl_key_file: str | None = None
    ssl_client_ca_file: str | None = None
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    grpc_channel_arguments: str = ""
    enable_model_warmup: bool = True
    max_num_load_retries: int = 5
    load_retry_interval_micros: int = 60_000_000


def model_configs(options: ServerOptions) -> list[ModelConfig]:
    """The models to serve: `--model_config_file`, or `--model_name` + `--model_base_path`."""
    if options.model_config_file:
        if options.model_base_path:
            raise ValueError(
                "Give either --model_config_file or --model_base_path, not both."
            )
        return config_files.read_model_config_file(options.model_config_file)
    if not options.model_base_path:
        raise ValueError("Give --model_base_path (with --model_name) or --model_config_file.")
    return [ModelConfig(
        name=options.model_name or "default",
        base_path=os.path.abspath(options.model_base_path),
    )]


def _read(path, what):
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as error:
        raise ValueError(f"Cannot read the {what} {path}: {error.strerror}.") from None


def server_credentials(options: ServerOptions):
    """gRPC TLS credentials from `--ssl_config_file` or the cert/key flags; None for plaintext."""
    if options.ssl_config_file:
        ssl = config_files.read_ssl_config(options.ssl_config_file)
        key, cert = ssl.server_key.encode(), ssl.server_cert.encode()
        ca = ssl.custom_ca.encode() or None
        client_verify = ssl.client_verify
    elif options.ssl_cert_file or options.ssl_key_file:
        if not (options.ssl_cert_file and options.ssl_key_file):
            raise ValueError("TLS needs both --ssl_cert_file and --ssl_key_file.")
        cert = _read(options.ssl_cert_file, "certificate")
        key = _read(options.ssl_key_file, "private key")
        ca = _read(options.ssl_client_ca_file, "client CA") if options.ssl_client_ca_file else None
        client_verify = ca is not None
    else:
        return None
    return grpc.ssl_server_credentials(
        [(key, cert)], root_certificates=ca, require_client_auth=client_verify
    )


def channel_arguments(text: str) -> list[tuple[str, object]]:
    """`--grpc_channel_arguments` ("key=value,key=value") as gRPC options."""
    arguments = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--grpc_channel_arguments: {item!r} is not key=value.")
        arguments.append((key, int(value) if value.lstrip("-").isdigit() else value))
    return arguments


class _OneLineDeserializationErrors(logging.Filter):
    """grpcio logs a traceback for every request whose bytes do not parse (it answers
    INTERNAL, as C++ gRPC does): one line each, so no client can flood the log."""

    def filter(self, record):
        if record.exc_info and "deserializing" in record.getMessage():
            record.exc_info = None
            record.msg = f"{record.getMessage()} (answered INTERNAL)"
            record.args = ()
        return True


logging.getLogger("grpc._common").addFilter(_OneLineDeserializationErrors())


class ModelServer:
    """The gRPC and REST servers over one `ServingCore`."""

    def __init__(self, options: ServerOptions):
        self.options = options
        if options.max_request_bytes <= 0:
            raise ValueError("max_request_bytes must be positive.")
        batching = None
        if options.enable_batching:
            batching = (
                config_files.read_batching_parameters(options.batching_parameters_file)
                if options.batching_parameters_file else config_files.BatchingParameters()
            )
        monitoring = (
            config_files.read_monitoring_config(options.monitoring_config_file)
            if options.monitoring_config_file else config_files.MonitoringConfig()
        )
        self.metrics = None
        if monitoring.enable:
            from serving.metrics import Metrics

            self.metrics = Metrics()
        self._metrics_path = monitoring.path if monitoring.enable else None
        self._credentials = server_credentials(options)
        self._channel_arguments = channel_arguments(options.grpc_channel_arguments)
        self.core = ServingCore(
            model_configs(options),
            poll_wait_seconds=options.file_system_poll_wait_seconds,
            batching=batching,
            metrics=self.metrics,
            enable_model_warmup=options.enable_model_warmup,
            max_num_load_retries=options.max_num_load_retries,
            load_retry_interval_seconds=options.load_retry_interval_micros / 1e6,
        )
        self._grpc = None
        self._rest = None
        self.grpc_port = None
        self.rest_port = None
        self._stopped = threading.Event()

    def start(self):
        """Loads the models, then opens the gRPC (and REST) ports."""
        self.core.start()
        try:
            self._start_grpc()
            if self.options.rest_api_port is not None:
                from serving.rest import RestServer

                self._rest = RestServer(
                    self.core, self.options.host, self.options.rest_api_port,
                    max_request_bytes=self.options.max_request_bytes,
                    metrics=self.metrics, metrics_path=self._metrics_path,
                )
                self._rest.start()
                self.rest_port = self._rest.port
        except BaseException:
            self.stop(grace=0)
            raise
        return self

    def _start_grpc(self):
        options = [
            ("grpc.max_receive_message_length", self.options.max_request_bytes),
            ("grpc.max_send_message_length", -1),
            ("grpc.so_reuseport", 0),
            *self._channel_arguments,
        ]
        self._grpc = grpc.server(
            concurrent.futures.ThreadPoolExecutor(
                max_workers=self.options.grpc_max_threads, thread_name_prefix="grpc"
            ),
            options=options,
        )
        add_services(self._grpc, self.core)
        address = f"{self.options.host}:{self.options.port}"
        if self._credentials is not None:
            port = self._grpc.add_secure_port(address, self._credentials)
        else:
            port = self._grpc.add_insecure_port(address)
        if port == 0:
            raise OSError(f"Cannot listen for gRPC on {address}.")
        self.grpc_port = port
        self._grpc.start()
        log.info("Running gRPC ModelServer at %s:%d ...", self.options.host, port)

    def stop(self, grace: float = 30.0):
        """Stops accepting, lets in-flight requests finish (up to `grace` s), unloads."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        if self._grpc is not None:
            self._grpc.stop(grace).wait(grace + 5)
        if self._rest is not None:
            self._rest.stop(grace)
        self.core.stop()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def parse_args(argv=None) -> ServerOptions:
    defaults = ServerOptions()
    parser = argparse.ArgumentParser(
        prog=program_name("serving.server"),
        description="A TF Serving-compatible model server (gRPC and REST) for development "
        "and tests. Flags are tensorflow_model_server's.",
    )
    parser.add_argument("--port", type=int, default=defaults.port, help="gRPC port.")
    parser.add_argument("--rest_api_port", type=int, default=0,
                        help="REST port; 0 (the default) serves no REST API.")
    parser.add_argument("--host", default=defaults.host,
                        help="Address to bind (default loopback only; 0.0.0.0 for all).")
    parser.add_argument("--model_name", default=None)
    parser.add_argument("--model_base_path", default=None)
    parser.add_argument("--model_config_file", default=None)
    parser.add_argument("--file_system_poll_wait_seconds", type=float,
                        default=defaults.file_system_poll_wait_seconds,
                        help="Seconds between polls of the base paths; 0 polls once.")
    parser.add_argument("--enable_batching", type=_boolean, nargs="?", const=True,
                        default=False)
    parser.add_argument("--batching_parameters_file", default=None)
    parser.add_argument("--monitoring_config_file", default=None)
    parser.add_argument("--grpc_max_threads", type=int, default=defaults.grpc_max_threads)
    parser.add_argument("--grpc_channel_arguments", default="")
    parser.add_argument("--ssl_config_file", default=None)
    parser.add_argument("--ssl_cert_file", default=None, help="PEM server certificate.")
    parser.add_argument("--ssl_key_file", default=None, help="PEM server private key.")
    parser.add_argument("--ssl_client_ca_file", default=None,
                        help="PEM CA; clients must present a certificate it signed.")
    parser.add_argument("--enable_model_warmup", type=_boolean, nargs="?", const=True,
                        default=True,
                        help="Replay assets.extra/tf_serving_warmup_requests before serving.")
    parser.add_argument("--max_num_load_retries", type=int,
                        default=defaults.max_num_load_retries)
    parser.add_argument("--load_retry_interval_micros", type=int,
                        default=defaults.load_retry_interval_micros)
    parser.add_argument("--max_request_bytes", type=int, default=defaults.max_request_bytes,
                        help="Largest request accepted (gRPC message or REST body).")
    args = parser.parse_args(argv)
    values = vars(args)
    values["rest_api_port"] = values["rest_api_port"] or None
    if not 0 <= values["port"] < 65536:
        parser.error("--port must be a port number (0: any free port).")
    return ServerOptions(**values)


def _boolean(text: str) -> bool:
    if text.lower() in ("true", "1", "yes"):
        return True
    if text.lower() in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        options = parse_args(argv)
        server = ModelServer(options)
        server.start()
    except (ValueError, OSError) as error:
        print(f"serving.server: {error}", file=sys.stderr)
        return 2
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    print(f"serving: gRPC on {options.host}:{server.grpc_port}"
          + (f", REST on {options.host}:{server.rest_port}" if server.rest_port else ""),
          flush=True)
    while not stop.wait(0.5):
        pass
    log.info("Shutting down: finishing the requests in flight.")
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

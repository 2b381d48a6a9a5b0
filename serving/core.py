"""`ServingCore`: the models a server serves, and TF Serving's API over them.

It does what TF Serving's ServerCore and AspiredVersionsManager do for a
file-system source: every `poll_wait_seconds` it lists each model's
`base_path`, picks the versions its `model_version_policy` asks for, loads
and warms up the new ones, and only then retires the ones no longer asked
for (availability preserving: a model never goes without a version while a
replacement loads). A retired version is unloaded once its in-flight
requests have finished. Requests are protos in, protos out, raising
`ServingError` with TF Serving's codes and messages; the gRPC and REST front
ends only translate.
"""

from __future__ import annotations

import logging
import os
import threading
import time

import grpc
import tensorflow as tf
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
)

from keras_bert_kit.export.saved_model import existing_versions

from serving.batching import BatchScheduler, check_supported
from serving.config import BatchingParameters, ModelConfig
from serving.errors import ServingError, from_tf_error, invalid_argument
from serving.servable import (
    AVAILABLE,
    END,
    LOADING,
    UNLOADING,
    ServableVersion,
    signature_name_of,
)

log = logging.getLogger("serving")

SIGNATURE_DEF = "signature_def"
# The APIs that run a signature (their metrics carry its name).
EXAMPLE_APIS = ("predict", "classify", "regress")


def wanted_versions(config: ModelConfig, present: list[int]) -> list[int]:
    """The versions `config`'s policy serves, out of those `present`."""
    if config.policy == "all":
        return list(present)
    if config.policy == "specific":
        return [v for v in present if v in config.versions]
    return present[-config.num_versions:] if present else []


class _Model:
    """One configured model: its loaded versions and every version's state."""

    def __init__(self, config: ModelConfig):
        self.config = config
        self.available: dict[int, ServableVersion] = {}
        # version -> (state name, grpc.StatusCode, message): GetModelStatus' view.
        self.states: dict[int, tuple[str, grpc.StatusCode, str]] = {}
        # path -> (failed attempts, time of the last): TF Serving's load retries.
        self.failures: dict[str, tuple[int, float]] = {}


class ServingCore:
    """Loads, serves and retires the versions of `models` (a list of `ModelConfig`)."""

    def __init__(
        self,
        models: list[ModelConfig],
        *,
        poll_wait_seconds: float = 1.0,
        batching: BatchingParameters | None = None,
        metrics=None,
        enable_model_warmup: bool = True,
        max_num_load_retries: int = 5,
        load_retry_interval_seconds: float = 60.0,
    ):
        names = [config.name for config in models]
        if not models:
            raise ValueError("ServingCore needs at least one model to serve.")
        if len(set(names)) != len(names) or not all(names):
            raise ValueError(f"Model names must be unique and non-empty; got {names}.")
        if batching is not None:
            check_supported(batching)
        self._models = {config.name: _Model(config) for config in models}
        self._poll_wait = float(poll_wait_seconds)
        self._batching = batching
        self._metrics = metrics
        self._warmup = enable_model_warmup
        self._max_retries = max_num_load_retries
        self._retry_interval = load_retry_interval_seconds
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._poller = None
        self._retiring: list[threading.Thread] = []

    # -- lifetime ---------------------------------------------------------------------

    def start(self):
        """Loads the versions present now (warmed up), then polls in the background."""
        self.poll()
        if self._poll_wait > 0:
            self._poller = threading.Thread(
                target=self._poll_loop, name="serving-poller", daemon=True
            )
            self._poller.start()
        return self

    def stop(self, timeout: float | None = 60.0):
        """Stops polling and unloads every version once its in-flight requests finish."""
        self._stopping.set()
        if self._poller is not None:
            self._poller.join(timeout)
        with self._lock:
            versions = [
                (model, servable) for model in self._models.values()
                for servable in model.available.values()
            ]
            for model in self._models.values():
                model.available.clear()
        for model, servable in versions:
            self._unload(model, servable)
        for thread in list(self._retiring):
            thread.join(timeout)

    def _poll_loop(self):
        while not self._stopping.wait(self._poll_wait):
            try:
                self.poll()
            except Exception:  # a bad poll must never stop future polls
                log.exception("Polling the model base paths failed")

    def poll(self):
        """One pass of the file-system source over every model's base path."""
        for model in self._models.values():
            if self._stopping.is_set():
                return
            config = model.config
            wanted = wanted_versions(config, existing_versions(config.base_path))
            if not wanted and not model.available:
                log.warning(
                    "No versions of servable %s found under base path %s",
                    config.name, config.base_path,
                )
            for version in wanted:
                path = os.path.join(config.base_path, str(version))
                if version not in model.available and self._may_load(model, path):
                    self._load(model, version, path)
            with self._lock:
                # Availability preserving: an old version keeps serving until a
                # wanted one is up (a new version that fails to load retires nothing).
                replaced = not wanted or any(v in model.available for v in wanted)
                retired = [
                    model.available.pop(version) for version in list(model.available)
                    if version not in wanted and replaced
                ]
            for servable in retired:
                self._retire(model, servable)

    def _may_load(self, model: _Model, path: str) -> bool:
        """False while a failed version waits for its retry, or has used up its retries."""
        attempts, last = model.failures.get(path, (0, 0.0))
        if attempts == 0:
            return True
        return (attempts <= self._max_retries
                and time.monotonic() - last >= self._retry_interval)

    def _load(self, model: _Model, version: int, path: str):
        self._set_state(model, version, LOADING)
        log.info("Loading servable version {name: %s version: %d}", model.config.name, version)
        try:
            servable = ServableVersion(
                model.config.name, version, path, batcher_factory=self._batcher_factory()
            )
        except Exception as error:
            self._failed(model, version, path, error)
            return
        try:
            records = servable.warm_up() if self._warmup else 0
        except Exception as error:
            servable.unload()
            self._failed(model, version, path, error)
            return
        with self._lock:
            model.available[version] = servable
            model.failures.pop(path, None)
        self._set_state(model, version, AVAILABLE)
        log.info(
            "Successfully loaded servable version {name: %s version: %d} "
            "(%d warmup records)", model.config.name, version, records,
        )

    def _failed(self, model, version, path, error):
        attempts, _ = model.failures.get(path, (0, 0.0))
        model.failures[path] = (attempts + 1, time.monotonic())
        if isinstance(error, tf.errors.OpError):
            error = from_tf_error(error)
        if isinstance(error, ServingError):
            code, message = error.code, error.message
        else:
            code, message = grpc.StatusCode.UNKNOWN, str(error)
        log.error("Loading servable {name: %s version: %d} failed: %s",
                  model.config.name, version, message)
        self._set_state(model, version, END, code, message)

    def _unload(self, model: _Model, servable: ServableVersion):
        """UNLOADING, then END once its requests in flight are done and its session is freed."""
        self._set_state(model, servable.version, UNLOADING)
        servable.unload()
        self._set_state(model, servable.version, END)
        log.info("Unloaded servable version {name: %s version: %d}",
                 model.config.name, servable.version)

    def _retire(self, model: _Model, servable: ServableVersion):
        """Unloads `servable` in the background (polling goes on meanwhile)."""
        thread = threading.Thread(
            target=self._unload, args=(model, servable), name="serving-unload", daemon=True
        )
        self._retiring = [t for t in self._retiring if t.is_alive()] + [thread]
        thread.start()

    def _set_state(self, model, version, state, code=grpc.StatusCode.OK, message=""):
        with self._lock:
            model.states[version] = (state, code, message)

    def _batcher_factory(self):
        if self._batching is None:
            return None
        parameters = self._batching
        return lambda run, name: BatchScheduler(run, parameters, name)

    # -- routing ----------------------------------------------------------------------

    def _servable(self, model_spec) -> ServableVersion:
        """The version `model_spec` asks for, acquired (the caller releases it)."""
        name = model_spec.name
        if not name:
            raise invalid_argument("ModelSpec has no name specified.")
        choice = model_spec.WhichOneof("version_choice")
        with self._lock:
            model = self._models.get(name)
            if choice == "version_label":
                label = model_spec.version_label
                version = model.config.labels.get(label) if model else None
                if version is None:
                    raise invalid_argument(f"Unrecognized servable version label: {label}")
                choice = "version"
            else:
                version = model_spec.version.value
            available = model.available if model else {}
            if choice == "version":
                servable = available.get(version)
                request = f"Specific({name}, {version})"
            else:
                servable = available[max(available)] if available else None
                request = f"Latest({name})"
            if servable is None:
                raise ServingError(
                    grpc.StatusCode.NOT_FOUND, f"Servable not found for request: {request}"
                )
            servable.acquire()
            return servable

    def _call(self, api: str, request, method, entrypoint=None):
        """`method(servable, request)` on the version `request` asks for, metrics recorded."""
        started = time.perf_counter()
        version, code = None, grpc.StatusCode.OK
        try:
            if api in ("get_model_metadata", "get_model_status"):
                if not request.HasField("model_spec"):
                    raise invalid_argument("Missing ModelSpec")
            if api == "get_model_metadata":
                _check_metadata_fields(request)
            if method is None:  # GetModelStatus needs no loaded version
                return self._model_status(request)
            servable = self._servable(request.model_spec)
            version = servable.version
            try:
                return method(servable, request)
            finally:
                servable.release()
        except ServingError as error:
            code = error.code
            raise
        except Exception as error:
            code = grpc.StatusCode.INTERNAL
            log.exception("%s failed", api)
            raise ServingError(code, f"Internal error: {type(error).__name__}: {error}") from None
        finally:
            if self._metrics is not None:
                spec = request.model_spec
                self._metrics.observe(
                    model=spec.name, version=version,
                    signature=signature_name_of(spec) if api in EXAMPLE_APIS else "",
                    api=api, code=code, seconds=time.perf_counter() - started,
                    entrypoint=entrypoint,
                )

    # -- the TF Serving API -----------------------------------------------------------
    # `entrypoint` ("GRPC" or "REST") labels the metrics.

    def predict(self, request, *, entrypoint=None):
        return self._call("predict", request, ServableVersion.predict, entrypoint)

    def classify(self, request, *, entrypoint=None):
        return self._call("classify", request, ServableVersion.classify, entrypoint)

    def regress(self, request, *, entrypoint=None):
        return self._call("regress", request, ServableVersion.regress, entrypoint)

    def get_model_metadata(self, request, *, entrypoint=None):
        return self._call("get_model_metadata", request, _metadata, entrypoint)

    def get_model_status(self, request, *, entrypoint=None):
        return self._call("get_model_status", request, None, entrypoint)

    def _model_status(self, request):
        spec = request.model_spec
        name = spec.name
        with self._lock:
            model = self._models.get(name)
            states = dict(model.states) if model else {}
            if spec.WhichOneof("version_choice") == "version_label" and model:
                label_version = model.config.labels.get(spec.version_label)
                if label_version is None:
                    raise invalid_argument(
                        f"Unrecognized servable version label: {spec.version_label}"
                    )
                spec_version = label_version
            elif spec.HasField("version"):
                spec_version = spec.version.value
            else:
                spec_version = None
        if spec_version is not None:
            if spec_version not in states:
                raise ServingError(
                    grpc.StatusCode.NOT_FOUND,
                    f"Could not find version {spec_version} of model {name}",
                )
            states = {spec_version: states[spec_version]}
        if not states:
            raise ServingError(
                grpc.StatusCode.NOT_FOUND, f"Could not find any versions of model {name}"
            )
        response = get_model_status_pb2.GetModelStatusResponse()
        for version in sorted(states, reverse=True):  # newest first, as TF Serving lists them
            state, code, message = states[version]
            entry = response.model_version_status.add(version=version)
            entry.state = get_model_status_pb2.ModelVersionStatus.State.Value(state)
            entry.status.error_code = code.value[0]
            entry.status.error_message = message
        return response

    def signature_defs(self, model_spec) -> dict:
        """{name: SignatureDef} of the version `model_spec` asks for (no metrics recorded).

        For front ends that read a signature before building a request (the
        REST API takes each input's dtype from it).
        """
        servable = self._servable(model_spec)
        servable.release()
        return servable.signature_defs  # read-only protos, kept after an unload



def _check_metadata_fields(request):
    if not request.metadata_field:
        raise invalid_argument("GetModelMetadataRequest must specify at least one metadata_field")
    for field in request.metadata_field:
        if field != SIGNATURE_DEF:
            raise invalid_argument(f"Metadata field {field} is not supported")


def _metadata(servable: ServableVersion, request):
    response = get_model_metadata_pb2.GetModelMetadataResponse()
    response.model_spec.name = servable.name
    response.model_spec.version.value = servable.version
    signature_map = get_model_metadata_pb2.SignatureDefMap()
    for name, signature in servable.signature_defs.items():
        signature_map.signature_def[name].CopyFrom(signature)
    response.metadata[SIGNATURE_DEF].Pack(signature_map)
    return response

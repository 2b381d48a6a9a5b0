"""Serving under load: the project's model server over loopback gRPC, with and without batching.

The model
---------
serving_throughput.py's MiniLM-L6 Rotten Tomatoes classifier
(`fine_tuned_classifier`: the cached `classifier.keras`, `--classifier`),
exported twice with `keras_bert_kit.export.export_saved_model` as versions 1
and 2 (the same weights: a re-export) under `--work-dir` (cached: a rerun
reuses them). The server runs as a child process, `python -m serving.server
--port 0 --model_name sentiment --model_base_path BASE`, so that it shares no
GIL with the clients; its port comes from the "serving: gRPC on HOST:PORT"
line it prints.

What is timed
-------------
16 clients x 500 requests, closed loop (a client sends its next request when
its answer is back). Every request is ONE Rotten Tomatoes test snippet
(client c's request i is snippet (500 c + i) mod 2,509) as a text-in
`PredictRequest` to `serving_default`, 60 s deadline, each client with its
own channel: the project's `serving.client.ServingClient` (`predict([text])`,
no retries, so that every failure counts) where serving/client.py exists,
else (or with `--client stub`) tensorflow-serving-api's raw
`PredictionServiceStub` with a hand-built request. The clients are threads
of `--client-processes` (2)
spawned processes, so that 16 clients are not serialised by one GIL. Each
client sends one untimed request, then all start together. Throughput is the
requests over the wall time from the first start to the last answer; p50 and
p99 are the per-request latencies the clients saw; errors are requests that
got any status but OK (target 0); every answer's label is checked against
the in-process SavedModel's for the same snippet. CPU seconds of the server
and of the client processes are read from the kernel for each run.

Three ways to serve the same 8,000 requests:

* unbatched: the server without batching (each request runs on its own);
* batched: `--enable_batching` with the `--batching_parameters_file` printed
  in the results (max_batch_size 32, batch_timeout_micros 2000,
  num_batch_threads 2, max_enqueued_batches 100; `--max-batch-size`,
  `--batch-timeout-micros`, `--num-batch-threads` change it);
* ceiling: the same 8,000 single-snippet calls straight into the SavedModel
  in-process (`tf.saved_model.load(...).signatures["serving_default"]`,
  16 threads, no gRPC, no server), and for reference the 8,000 snippets in
  batches of 32 on one thread (what batching could reach at best).

Target (PASS / FALL SHORT): batched >= 2x the unbatched throughput at <= 1.5x
its p50.

Version swap
------------
A fresh batched server on version 1 only; the 16 clients start, and
`--swap-after` seconds later version 2 is copied into the base directory
under a hidden name and renamed into place (`os.rename`, so the server, polling
every second, never sees half a version). The server loads and warms up
version 2, then answers with it and unloads version 1. Each client sends its
500 requests and keeps sending until version 1 is unloaded (GetModelStatus
END), so the swap always happens under load. Reported: failed requests
(target 0), answers per version, when the first answer of version 2 and the
last of version 1 came (seconds after the rename), and latencies.

    .venv/bin/python bench/serving_load.py            # full run (`make bench-serving-load`)
    .venv/bin/python bench/serving_load.py --quick    # smoke run: measures nothing

Progress goes to stderr, the results to stdout. Run the full benchmark on an
otherwise idle machine: the load average is printed for every run.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

# Only light imports here: the client processes are spawned and import this
# module; TensorFlow, Keras and the model come in where they are used.
import grpc  # noqa: E402
import numpy as np  # noqa: E402

# bench/ is sys.path[0] when this file is run as a script.
from _results import BenchReport, ratio_chart  # noqa: E402
from _timing import usable_cores  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# `serving` is a top-level directory of the repository, not an installed package.
sys.path.insert(1, ROOT)
MODEL_NAME = "sentiment"
CLIENTS = 16
REQUESTS_PER_CLIENT = 500
REQUEST_DEADLINE_SECONDS = 60.0
SERVER_START_SECONDS = 180.0
# Two batch threads: one batch forms while the other runs (on 2 cores they beat one
# thread with 5 ms: 1.81x vs 1.57x the unbatched throughput, in two busy runs).
BATCHING = dict(max_batch_size=32, batch_timeout_micros=2000, num_batch_threads=2,
                max_enqueued_batches=100)
REFERENCE_BATCH_SIZE = 32
TARGET_THROUGHPUT_RATIO = 2.0
TARGET_P50_RATIO = 1.5
TARGET_ERRORS = 0
DT_STRING = 7  # tensorflow.DataType.DT_STRING


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def verdict(met: bool) -> str:
    return "PASS" if met else "FALL SHORT"


# === The server as a child process ================================================


class ServerProcess:
    """`python -m serving.server --port 0 FLAGS...` in a child process; `start()` waits for
    its ports.

    Its stdout is read for the "serving: gRPC on HOST:PORT[, REST on HOST:PORT]"
    line; stderr (the server's log) goes to `log_path`.
    """

    def __init__(self, flags: list[str], log_path: str):
        self.command = [sys.executable, "-m", "serving.server", "--port", "0", *flags]
        self.log_path = log_path
        self.process = None
        self.grpc_port = None
        self.rest_port = None
        self._cpu_at_start = 0.0

    def start(self, timeout: float = SERVER_START_SECONDS) -> ServerProcess:
        env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="2")
        with open(self.log_path, "w", encoding="utf-8") as server_log:
            self.process = subprocess.Popen(self.command, cwd=ROOT, env=env, text=True,
                                            stdout=subprocess.PIPE, stderr=server_log)
        lines = queue.Queue()

        def read_stdout():
            for line in self.process.stdout:
                lines.put(line)
            lines.put(None)

        threading.Thread(target=read_stdout, daemon=True).start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                break
            if line is None:
                break
            if line.startswith("serving: gRPC on "):
                for part in line[len("serving: "):].strip().split(", "):
                    kind, _, address = part.partition(" on ")
                    port = int(address.rsplit(":", 1)[1])
                    if kind == "gRPC":
                        self.grpc_port = port
                    elif kind == "REST":
                        self.rest_port = port
                self._cpu_at_start = self.cpu_seconds()
                return self
        self.stop()
        raise RuntimeError(f"the server did not start within {timeout:.0f} s; its log: "
                           f"{self.log_tail()}")

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def cpu_seconds(self) -> float:
        """User + system CPU seconds of the server process so far (its threads included)."""
        try:
            with open(f"/proc/{self.process.pid}/stat", encoding="ascii") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            return float("nan")
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def cpu_seconds_since_start(self) -> float:
        return self.cpu_seconds() - self._cpu_at_start

    def log_tail(self, chars: int = 3000) -> str:
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as f:
                return f.read()[-chars:]
        except OSError:
            return ""

    def stop(self, grace: float = 60.0) -> int | None:
        """SIGTERM (the server finishes what is in flight), then SIGKILL after `grace` s."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(grace)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        return self.process.returncode

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.stop()


# === Requests =====================================================================


def text_request(texts: list[str], model_name: str = MODEL_NAME):
    """A text-in `PredictRequest` for `serving_default`, built from the protos by hand."""
    from tensorflow_serving.apis import predict_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.name = model_name
    request.model_spec.signature_name = "serving_default"
    tensor = request.inputs["text"]
    tensor.dtype = DT_STRING
    tensor.tensor_shape.dim.add(size=len(texts))
    tensor.string_val.extend(text.encode("utf-8") for text in texts)
    return request


def version_states(address: str, timeout: float = 10.0) -> dict[int, str]:
    """{version: state name} from GetModelStatus."""
    from tensorflow_serving.apis import get_model_status_pb2, model_service_pb2_grpc

    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = MODEL_NAME
    with grpc.insecure_channel(address) as channel:
        reply = model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(
            request, timeout=timeout)
    states = get_model_status_pb2.ModelVersionStatus.State
    return {status.version: states.Name(status.state) for status in reply.model_version_status}


def first_int32(proto) -> int:
    """The first value of an int32 TensorProto (packed in tensor_content or in int_val)."""
    if proto.tensor_content:
        return int(np.frombuffer(proto.tensor_content[:4], "<i4")[0])
    return int(proto.int_val[0])


# === Clients: threads of spawned processes ========================================

# One answered (or failed) request: client, index in its list, wall-clock start
# (time.time(), comparable across processes), latency, version, status, label id.
RECORD_FIELDS = ("client", "index", "start", "seconds", "version", "code", "label_id")


class StubClient:
    """tensorflow-serving-api's raw `PredictionServiceStub`, a hand-built request per text."""

    description = "raw tensorflow-serving-api PredictionServiceStub"

    def __init__(self, address: str):
        from tensorflow_serving.apis import prediction_service_pb2_grpc

        self.channel = grpc.insecure_channel(address)
        self.stub = prediction_service_pb2_grpc.PredictionServiceStub(self.channel)

    def predict(self, text: str) -> tuple[int, int]:
        """(the version that answered, the label id) for one text."""
        reply = self.stub.Predict(text_request([text]), timeout=REQUEST_DEADLINE_SECONDS)
        return reply.model_spec.version.value, first_int32(reply.outputs["label_id"])

    def close(self):
        self.channel.close()


class ProjectClient:
    """The project's `serving.client.ServingClient`, without retries: every failure counts."""

    description = "serving.client.ServingClient (retries=0)"

    def __init__(self, address: str):
        from serving.client import ServingClient

        self.client = ServingClient(address, MODEL_NAME, deadline=REQUEST_DEADLINE_SECONDS,
                                    retries=0)

    def predict(self, text: str) -> tuple[int, int]:
        outputs = self.client.predict([text])
        return int(outputs.version), int(outputs["label_id"][0])

    def close(self):
        self.client.close()


CLIENT_KINDS = {"serving-client": ProjectClient, "stub": StubClient}


def status_name(error: Exception) -> str:
    """The gRPC status of a failed call (grpc.RpcError or the client's error), else its type."""
    code = getattr(error, "code", None)
    code = code() if callable(code) else code
    return code.name if isinstance(code, grpc.StatusCode) else f"CLIENT {type(error).__name__}"


def client_process(address: str, kind: str, work: dict[int, list[str]], minimum: int, ready, go,
                   stop, results) -> None:
    """Runs one thread per client in `work` ({client: its texts}); puts its records on `results`.

    Each client (a `CLIENT_KINDS[kind]`, its own channel) sends one untimed
    request, reports ready, waits for `go`, then sends its texts in order
    (from the start again if `stop` is not yet set after `minimum` requests).
    """
    records, lock = [], threading.Lock()
    warm = threading.Barrier(len(work) + 1)

    def client(client_id, texts):
        connection = CLIENT_KINDS[kind](address)
        try:
            try:
                connection.predict(texts[0])
            finally:
                warm.wait()
            go.wait()
            mine, index = [], 0
            while index < minimum or not stop.is_set():
                text = texts[index % len(texts)]
                started_wall, started = time.time(), time.perf_counter()
                try:
                    version, label_id = connection.predict(text)
                    code = "OK"
                except Exception as error:  # noqa: BLE001 (every failure is counted by status)
                    code, version, label_id = status_name(error), -1, -1
                mine.append((client_id, index, started_wall, time.perf_counter() - started,
                             version, code, label_id))
                index += 1
        finally:
            connection.close()
        with lock:
            records.extend(mine)

    threads = [threading.Thread(target=client, args=item) for item in work.items()]
    for thread in threads:
        thread.start()
    warm.wait()
    ready.put(os.getpid())
    cpu_start = time.process_time()
    for thread in threads:
        thread.join()
    results.put((records, time.process_time() - cpu_start))


def client_texts(texts: list[str], clients: int, requests: int) -> dict[int, list[str]]:
    """Client c's requests: snippets (requests * c + i) mod len(texts), i < requests."""
    return {c: [texts[(requests * c + i) % len(texts)] for i in range(requests)]
            for c in range(clients)}


def run_clients(address: str, kind: str, work: dict[int, list[str]], processes: int,
                during=None) -> dict:
    """The clients in `work` against `address`, spread over `processes` spawned processes.

    `during(go_time, stop)`, if given, runs in a thread once the clients start;
    the clients then keep sending past their quota until it sets `stop`.
    Returns the records and the clients' CPU seconds.
    """
    context = multiprocessing.get_context("spawn")
    ready, results = context.Queue(), context.Queue()
    go, stop = context.Event(), context.Event()
    if during is None:
        stop.set()
    minimum = len(next(iter(work.values())))
    shares = [dict(list(work.items())[i::processes]) for i in range(processes)]
    children = [context.Process(target=client_process, daemon=True,
                                args=(address, kind, share, minimum, ready, go, stop, results))
                for share in shares if share]
    for child in children:
        child.start()
    try:
        for _ in children:
            ready.get(timeout=SERVER_START_SECONDS)
        go_time = time.time()
        go.set()
        helper = None
        if during is not None:
            helper = threading.Thread(target=during, args=(go_time, stop))
            helper.start()
        records, client_cpu = [], 0.0
        for _ in children:
            part, cpu = results.get(timeout=3600)
            records.extend(part)
            client_cpu += cpu
        if helper is not None:
            helper.join()
    finally:
        stop.set()
        go.set()
        for child in children:
            child.join(30)
            if child.is_alive():
                child.kill()
    return {"records": records, "client_cpu_seconds": client_cpu, "go_time": go_time}


# === Figures ======================================================================


def summary(records: list[tuple], reference_labels: dict[tuple[int, int], int] | None,
            texts_per_client: int) -> dict:
    """Throughput, latency percentiles, errors and label agreement of a run's records."""
    columns = dict(zip(RECORD_FIELDS, map(np.asarray, zip(*records))))
    ok = columns["code"] == "OK"
    ends = columns["start"] + columns["seconds"]
    wall = float(ends.max() - columns["start"].min())
    latency_ms = columns["seconds"] * 1000
    codes = {str(code): int(count) for code, count in
             zip(*np.unique(columns["code"], return_counts=True))}
    result = {
        "requests": len(records), "wall_s": wall, "requests_per_s": len(records) / wall,
        "p50_ms": float(np.percentile(latency_ms, 50)),
        "p99_ms": float(np.percentile(latency_ms, 99)),
        "max_ms": float(latency_ms.max()), "errors": int((~ok).sum()), "codes": codes,
    }
    if reference_labels is not None:
        agree = [label == reference_labels[(c, i % texts_per_client)]
                 for c, i, label, good in zip(columns["client"], columns["index"],
                                              columns["label_id"], ok) if good]
        result["label_agreement"] = float(np.mean(agree)) if agree else float("nan")
    return result


def served(server: ServerProcess, kind: str, work, processes: int, reference_labels,
           during=None) -> dict:
    load_start = os.getloadavg()[0]
    run = run_clients(server.address, kind, work, processes, during)
    result = summary(run["records"], reference_labels, len(next(iter(work.values()))))
    result.update(load_average_start=load_start, load_average_end=os.getloadavg()[0],
                  server_cpu_s=server.cpu_seconds_since_start(),
                  client_cpu_s=run["client_cpu_seconds"])
    result["server_cpu_ms_per_request"] = 1000 * result["server_cpu_s"] / result["requests"]
    result["_records"], result["_go_time"] = run["records"], run["go_time"]
    return result


# === In-process ceiling ===========================================================


def in_process(export_dir: str, work: dict[int, list[str]]) -> tuple[dict, dict, dict]:
    """The requests straight into the SavedModel: one thread per client, single snippets;
    then the same snippets in batches of `REFERENCE_BATCH_SIZE` on one thread.

    Returns (the single-snippet summary, the batched reference, {(client, index): label id}).
    """
    import tensorflow as tf
    import tensorflow_text  # noqa: F401  (registers the TF Text ops the export uses)

    serve = tf.saved_model.load(export_dir).signatures["serving_default"]
    load_start = os.getloadavg()[0]
    records, lock = [], threading.Lock()
    warm = threading.Barrier(len(work) + 1)
    go = threading.Event()

    def client(client_id, texts):
        serve(text=tf.constant(texts[:1]))["label_id"].numpy()
        warm.wait()
        go.wait()
        mine = []
        for index, text in enumerate(texts):
            started_wall, started = time.time(), time.perf_counter()
            label = int(serve(text=tf.constant([text]))["label_id"].numpy()[0])
            mine.append((client_id, index, started_wall, time.perf_counter() - started,
                         0, "OK", label))
        with lock:
            records.extend(mine)

    threads = [threading.Thread(target=client, args=item) for item in work.items()]
    for thread in threads:
        thread.start()
    warm.wait()
    cpu_start = time.process_time()
    go.set()
    for thread in threads:
        thread.join()
    cpu = time.process_time() - cpu_start
    labels = {(client, index): label for client, index, *_, label in records}
    single = summary(records, None, 0)
    single.update(load_average_start=load_start, load_average_end=os.getloadavg()[0],
                  server_cpu_s=cpu, server_cpu_ms_per_request=1000 * cpu / len(records))

    snippets = [text for texts in work.values() for text in texts]
    batches = [snippets[i:i + REFERENCE_BATCH_SIZE]
               for i in range(0, len(snippets), REFERENCE_BATCH_SIZE)]
    serve(text=tf.constant(batches[0]))["label_id"].numpy()
    cpu_start, started = time.process_time(), time.perf_counter()
    batched_labels = np.concatenate([serve(text=tf.constant(batch))["label_id"].numpy()
                                     for batch in batches])
    wall = time.perf_counter() - started
    cpu = time.process_time() - cpu_start
    single_labels = np.asarray([labels[(c, i)] for c, texts in work.items()
                                for i in range(len(texts))])
    batched = {"requests": len(snippets), "wall_s": wall, "requests_per_s": len(snippets) / wall,
               "batches": len(batches), "errors": 0, "server_cpu_s": cpu,
               "server_cpu_ms_per_request": 1000 * cpu / len(snippets),
               "label_agreement": float(np.mean(batched_labels == single_labels))}
    return single, batched, labels


# === Exports and base directories =================================================


def exported_versions(work_dir: str, classifier_path: str | None, quick: bool) -> str:
    """A directory with versions 1 and 2 of the classifier (cached unless --quick)."""
    exports = os.path.join(work_dir, "quick_exports" if quick else "exports")
    if quick:
        shutil.rmtree(exports, ignore_errors=True)
    if all(os.path.isfile(os.path.join(exports, str(v), "saved_model.pb")) for v in (1, 2)):
        log(f"exports: reusing {exports}/1 and /2")
        return exports
    from serving_throughput import fine_tuned_classifier  # imports keras-hub, torch, ...

    from keras_bert_kit.datasets import load_rotten_tomatoes
    from keras_bert_kit.export import export_saved_model

    train = load_rotten_tomatoes("train")
    if quick and not (classifier_path and os.path.exists(classifier_path)):
        train = train.subset(range(256))
    classifier = fine_tuned_classifier(classifier_path, train, quick)
    shutil.rmtree(exports, ignore_errors=True)
    for version in (1, 2):
        log(f"exports: version {version} (export_saved_model)")
        export_saved_model(classifier, exports, version)
    return exports


def copy_version(exports: str, base: str, version: int) -> float:
    """Copies `exports/<version>` into `base` under a hidden name, then renames it into
    place; returns the time.time() of the rename."""
    staging = os.path.join(base, f".{version}.copying")
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(os.path.join(exports, str(version)), staging)
    os.rename(staging, os.path.join(base, str(version)))
    return time.time()


def fresh_base(work_dir: str, exports: str) -> str:
    """`WORK_DIR/base/sentiment` holding version 1 only."""
    base = os.path.join(work_dir, "base", MODEL_NAME)
    shutil.rmtree(base, ignore_errors=True)
    os.makedirs(base)
    copy_version(exports, base, 1)
    return base


def model_flags(base: str) -> list[str]:
    return ["--model_name", MODEL_NAME, "--model_base_path", base]


def batching_file(path: str, parameters: dict) -> str:
    """`parameters` written as TF Serving's `BatchingParameters` text proto at `path`."""
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(f"{name} {{ value: {value} }}\n" for name, value in parameters.items())
    return path


# === The version swap =============================================================


def swap_under_load(exports: str, base: str, swap_after: float, give_up_after: float):
    """A `during` for `run_clients`: renames version 2 in after `swap_after` s, then sets
    `stop` once the server reports version 1 unloaded (END), or after `give_up_after` s."""
    events = {}

    def during(go_time, stop):
        time.sleep(max(0.0, go_time + swap_after - time.time()))
        events["rename"] = copy_version(exports, base, 2)
        log(f"  swap: version 2 renamed into place {events['rename'] - go_time:.1f} s into the load")
        deadline = time.monotonic() + give_up_after
        address = events["address"]
        while time.monotonic() < deadline:
            try:
                states = version_states(address)
            except grpc.RpcError as error:
                events.setdefault("status_errors", []).append(error.code().name)
                states = {}
            if states.get(2) == "AVAILABLE" and "available" not in events:
                events["available"] = time.time()
            if states.get(1) == "END":
                events["unloaded"] = time.time()
                break
            time.sleep(0.1)
        events["states"] = states
        stop.set()

    return during, events


def swap_figures(result: dict, events: dict) -> dict:
    records = result["_records"]
    rename = events["rename"]
    ok = [r for r in records if r[5] == "OK"]
    by_version = {}
    for record in ok:
        by_version[int(record[4])] = by_version.get(int(record[4]), 0) + 1
    answered = lambda r: r[2] + r[3]  # noqa: E731
    first_v2 = min((answered(r) for r in ok if r[4] == 2), default=None)
    last_v1 = max((answered(r) for r in ok if r[4] == 1), default=None)
    window = [r[3] * 1000 for r in records if rename <= r[2] <= rename + 10]
    return {
        "failed_requests": result["errors"], "answers_per_version": by_version,
        "rename_after_start_s": rename - result["_go_time"],
        "version_2_available_after_rename_s": events["available"] - rename
        if "available" in events else None,
        "version_1_unloaded_after_rename_s": events["unloaded"] - rename
        if "unloaded" in events else None,
        "first_version_2_answer_after_rename_s": first_v2 - rename if first_v2 else None,
        "last_version_1_answer_after_rename_s": last_v1 - rename if last_v1 else None,
        "version_1_answers_after_first_version_2": sum(
            1 for r in ok if r[4] == 1 and first_v2 is not None and answered(r) > first_v2),
        "p99_ms_first_10_s_after_rename": float(np.percentile(window, 99)) if window else None,
        "max_ms_first_10_s_after_rename": float(max(window)) if window else None,
        "final_states": events.get("states"), "status_errors": events.get("status_errors", []),
    }


# === Main =========================================================================


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 16 clients x 3 requests; checks that it works, "
                        "measures nothing")
    parser.add_argument("--work-dir", default=os.path.join("runs", "serving_load"),
                        help="exports, base directory, server logs (default runs/serving_load)")
    parser.add_argument("--classifier", metavar="PATH",
                        default=os.path.join("runs", "serving_throughput", "classifier.keras"),
                        help="serving_throughput.py's fine-tuned classifier (.keras): loaded "
                        "when it exists, else fine-tuned and saved there (default "
                        "runs/serving_throughput/classifier.keras)")
    parser.add_argument("--clients", type=int, default=CLIENTS)
    parser.add_argument("--requests", type=int, default=REQUESTS_PER_CLIENT,
                        help="requests per client (default 500)")
    parser.add_argument("--client-processes", type=int, default=2,
                        help="spawned processes the client threads are spread over (default 2)")
    parser.add_argument("--client", choices=sorted(CLIENT_KINDS), default="serving-client",
                        help="serving.client.ServingClient (the default) or "
                        "tensorflow-serving-api's raw stub")
    parser.add_argument("--max-batch-size", type=int, default=BATCHING["max_batch_size"])
    parser.add_argument("--batch-timeout-micros", type=int,
                        default=BATCHING["batch_timeout_micros"])
    parser.add_argument("--num-batch-threads", type=int, default=BATCHING["num_batch_threads"])
    parser.add_argument("--swap-after", type=float, default=3.0,
                        help="seconds into the swap run when version 2 is renamed in (default 3)")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    return parser.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    requests = 3 if args.quick else args.requests
    work_dir = os.path.abspath(args.work_dir)
    os.makedirs(work_dir, exist_ok=True)
    cores = usable_cores()
    meta = {"quick": args.quick, "cores": cores, "clients": args.clients,
            "client": CLIENT_KINDS[args.client].description,
            "requests_per_client": requests, "client_processes": args.client_processes,
            "load_average_start": os.getloadavg()[0]}
    if meta["load_average_start"] > 0.5 * cores:
        log(f"warning: load average {meta['load_average_start']:.2f} on {cores} CPU(s); "
            "the machine is busy and the timings will be noisy")

    from keras_bert_kit.datasets import load_rotten_tomatoes

    texts = list(load_rotten_tomatoes("test").texts)
    work = client_texts(texts, args.clients, requests)
    exports = exported_versions(work_dir, os.path.abspath(args.classifier), args.quick)
    parameters = dict(BATCHING, max_batch_size=args.max_batch_size,
                      batch_timeout_micros=args.batch_timeout_micros,
                      num_batch_threads=args.num_batch_threads)
    batched_flags = ["--enable_batching", "--batching_parameters_file",
                     batching_file(os.path.join(work_dir, "batching.config"), parameters)]
    meta["batching_parameters"] = parameters

    log(f"ceiling: {args.clients} threads x {requests} single snippets, in-process")
    ceiling, reference, labels = in_process(os.path.join(exports, "1"), work)
    runs = {"in-process SavedModel, 16 threads": ceiling}
    for name, flags in (("server, unbatched", []), ("server, batched", batched_flags)):
        log(f"{name}: {args.clients} clients x {requests} requests over gRPC")
        server = ServerProcess([*model_flags(fresh_base(work_dir, exports)), *flags],
                               os.path.join(work_dir, f"server_{name.split()[-1]}.log"))
        with server:
            runs[name] = served(server, args.client, work, args.client_processes, labels)
            runs[name]["server_exit_code"] = server.stop()
        log(f"  {runs[name]['requests_per_s']:.1f} requests/s, p50 "
            f"{runs[name]['p50_ms']:.1f} ms, {runs[name]['errors']} errors")

    log("version swap: batched server, version 2 renamed in under load")
    base = fresh_base(work_dir, exports)
    server = ServerProcess([*model_flags(base), *batched_flags,
                            "--file_system_poll_wait_seconds", "1"],
                           os.path.join(work_dir, "server_swap.log"))
    during, events = swap_under_load(exports, base, args.swap_after, give_up_after=300)
    with server:
        events["address"] = server.address
        swap_run = served(server, args.client, work, args.client_processes, labels, during)
        swap_run["server_exit_code"] = server.stop()
    runs["server, batched, version swap"] = swap_run
    swap = swap_figures(swap_run, events)
    meta["load_average_end"] = os.getloadavg()[0]
    out = BenchReport("serving_load", quick=args.quick, description=__doc__.splitlines()[0])
    results = report(out, meta, runs, reference, swap)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(results, f, indent=2)
        print(f"\nWrote {args.json}")
    out.write()
    return results


def agreement(fraction: float | None) -> str:
    return "-" if fraction is None else f"{100 * fraction:.2f}%"


def report(out: BenchReport, meta: dict, runs: dict, reference: dict, swap: dict) -> dict:
    quick = "  [QUICK: not a measurement]" if meta["quick"] else ""
    out.note(f"{meta['cores']} usable CPU(s); load average at start "
             f"{meta['load_average_start']:.2f}, at end {meta['load_average_end']:.2f}{quick}\n"
             f"{meta['clients']} clients x {meta['requests_per_client']} requests, one Rotten "
             f"Tomatoes test snippet each, text-in serving_default; clients: threads of "
             f"{meta['client_processes']} spawned processes, each a {meta['client']} with its "
             "own channel; the server a child process (python -m serving.server)\n"
             "batching parameters: " + ", ".join(
                 f"{name} {value}" for name, value in meta["batching_parameters"].items()))
    rows = []
    for name, r in runs.items():
        client_cpu = r.get("client_cpu_s")
        rows.append([name, str(r["requests"]), f"{r['requests_per_s']:.1f}",
                     f"{r['p50_ms']:.1f}", f"{r['p99_ms']:.1f}", f"{r['max_ms']:.0f}",
                     str(r["errors"]), agreement(r.get("label_agreement")),
                     f"{r['server_cpu_ms_per_request']:.1f}",
                     "-" if client_cpu is None else f"{client_cpu:.1f}",
                     f"{r['load_average_start']:.1f}/{r['load_average_end']:.1f}"])
    rows.append([f"in-process SavedModel, batches of {REFERENCE_BATCH_SIZE}, 1 thread",
                 str(reference["requests"]), f"{reference['requests_per_s']:.1f}", "-", "-", "-",
                 "0", agreement(reference["label_agreement"]),
                 f"{reference['server_cpu_ms_per_request']:.1f}", "-", "-"])
    print()
    out.table(["engine", "requests", "req/s", "p50 ms", "p99 ms", "max ms", "errors",
               "same label", "server CPU ms/req", "client CPU s", "load start/end"], rows)
    for name, r in runs.items():
        if r["errors"]:
            out.note(f"{name}: statuses {r['codes']}")
    out.note("(same label: answers whose label equals the in-process single-snippet call's for "
             "that snippet; server CPU: the server process's user+system time per request, for "
             "the in-process rows the benchmark process's)")

    unbatched, batched = runs["server, unbatched"], runs["server, batched"]
    ceiling = runs["in-process SavedModel, 16 threads"]
    throughput_ratio = batched["requests_per_s"] / unbatched["requests_per_s"]
    p50_ratio = batched["p50_ms"] / unbatched["p50_ms"]
    errors = sum(r["errors"] for r in runs.values())
    out.note("\nRatios (this run)\n"
             f"  unbatched server: {unbatched['requests_per_s'] / ceiling['requests_per_s']:.2f}x "
             f"the in-process single-snippet ceiling\n"
             f"  batched server: {batched['requests_per_s'] / ceiling['requests_per_s']:.2f}x "
             f"the in-process single-snippet ceiling, "
             f"{batched['requests_per_s'] / reference['requests_per_s']:.2f}x in-process "
             f"batches of {REFERENCE_BATCH_SIZE}")

    print()
    after = lambda key: "never" if swap[key] is None else f"{swap[key]:+.2f} s"  # noqa: E731
    out.table(["figure", "value"], [
        ["requests sent", str(runs["server, batched, version swap"]["requests"])],
        ["failed requests", str(swap["failed_requests"])],
        ["answers by version", ", ".join(f"v{v}: {n}" for v, n in
                                         sorted(swap["answers_per_version"].items()))],
        ["rename, after the load started", f"{swap['rename_after_start_s']:.2f} s"],
        ["version 2 AVAILABLE, after the rename", after("version_2_available_after_rename_s")],
        ["first version 2 answer, after the rename",
         after("first_version_2_answer_after_rename_s")],
        ["last version 1 answer, after the rename", after("last_version_1_answer_after_rename_s")],
        ["version 1 answers after the first version 2 answer",
         str(swap["version_1_answers_after_first_version_2"])],
        ["version 1 unloaded (END), after the rename", after("version_1_unloaded_after_rename_s")],
        ["p99 / max latency, requests sent in the 10 s after the rename",
         f"{swap['p99_ms_first_10_s_after_rename'] or float('nan'):.1f} / "
         f"{swap['max_ms_first_10_s_after_rename'] or float('nan'):.1f} ms"],
        ["final version states", str(swap["final_states"])],
    ], title="Version swap under the batched load")

    switched = swap["first_version_2_answer_after_rename_s"] is not None
    targets = {
        "batched_vs_unbatched_throughput": throughput_ratio,
        "batched_vs_unbatched_p50": p50_ratio,
        "errors": errors,
        "swap_failed_requests": swap["failed_requests"],
        "swap_switched": switched,
    }
    out.note("\nTargets" + (" (quick run: not a measurement)" if meta["quick"] else "") + "\n"
             f"  batched throughput: {throughput_ratio:.2f}x unbatched "
             f"({verdict(throughput_ratio >= TARGET_THROUGHPUT_RATIO)}: target >= "
             f"{TARGET_THROUGHPUT_RATIO}x)\n"
             f"  batched p50: {p50_ratio:.2f}x unbatched "
             f"({verdict(p50_ratio <= TARGET_P50_RATIO)}: target <= {TARGET_P50_RATIO}x)\n"
             f"  errors under load: {errors} ({verdict(errors <= TARGET_ERRORS)}: target "
             f"{TARGET_ERRORS})\n"
             f"  version swap: {swap['failed_requests']} failed requests, answers "
             f"{'switched' if switched else 'never switched'} to version 2 "
             f"({verdict(swap['failed_requests'] <= TARGET_ERRORS and switched)}: target 0 "
             "failed, switched)")
    out.chart("throughput", ratio_chart(
        "Requests/s over the in-process single-snippet ceiling (16 threads)",
        {name: r["requests_per_s"] / ceiling["requests_per_s"] for name, r in runs.items()}
        | {f"in-process SavedModel, batches of {REFERENCE_BATCH_SIZE}, 1 thread":
           reference["requests_per_s"] / ceiling["requests_per_s"]},
        xlabel="requests/s over the in-process single-snippet ceiling"))
    public = {name: {k: v for k, v in r.items() if not k.startswith("_")}
              for name, r in runs.items()}
    return dict(meta=meta, runs=public, in_process_batched=reference, swap=swap,
                targets=targets)


if __name__ == "__main__":
    main()

"""Server-side batching: concurrent requests merged into one model run.

`BatchScheduler` follows TF Serving's `BasicBatchScheduler` wrapped by its
batching session (tensorflow_serving/batching/batching_session.cc, and
tensorflow/core/kernels/batching_util/shared_batch_scheduler.h):

- A request ("task") joins the open batch of its queue; a task that does not
  fit in the open batch's remaining room closes it and opens a new one, unless
  `max_enqueued_batches` batches are already waiting (UNAVAILABLE).
- A batch is ready when it is closed, holds `max_batch_size` rows, or
  `batch_timeout_micros` have passed since its first task arrived. Each of
  the `num_batch_threads` threads runs the oldest ready batch. With a timeout
  of 0 a batch is ready at once, so requests merge only while every thread is
  busy: that is TF Serving's behaviour too.
- A merged batch is padded up to the next `allowed_batch_sizes` entry by
  repeating its last row; the padding rows are dropped from the outputs.

Differences from TF Serving, each so that one caller never affects another:
TF Serving keeps one queue per signature and fails a whole batch whose tasks
have different non-batch shapes; here tasks merge only with tasks of the same
input names, dtypes and non-batch shapes (one queue for each such key). TF
Serving fails every task of a batch whose run fails; here each task of a
failed merged batch is rerun alone, so only the task that causes the error
gets it. An output without the batch's row count as its leading dimension is
given whole to every caller (TF Serving rejects such outputs).
`pad_variable_length_inputs` is not supported: TF Serving returns outputs at
the padded length, which is not what the caller would get unbatched.
"""

from __future__ import annotations

import bisect
import collections
import threading
import time
from typing import Callable

import grpc
import numpy as np

from serving.config import BatchingParameters
from serving.errors import ServingError, invalid_argument

Tensors = dict[str, np.ndarray]


class _Task:
    """One caller's request: its inputs, and the answer it waits for."""

    __slots__ = ("inputs", "rows", "done", "outputs", "error")

    def __init__(self, inputs: Tensors, rows: int):
        self.inputs = inputs
        self.rows = rows
        self.done = threading.Event()
        self.outputs: Tensors | None = None
        self.error: BaseException | None = None

    def finish(self, outputs: Tensors | None = None, error: BaseException | None = None):
        self.outputs = outputs
        self.error = error
        self.done.set()


class _Batch:
    __slots__ = ("tasks", "rows", "opened")

    def __init__(self, opened: float):
        self.tasks: list[_Task] = []
        self.rows = 0
        self.opened = opened


def _merge_key(inputs: Tensors) -> tuple:
    """Tasks merge only when their inputs agree on everything but dim 0.

    Text arrays of different item lengths (`<U5`, `<U9`) concatenate to the
    wider one, so only their kind is part of the key.
    """
    return tuple(
        (name, array.dtype.kind if array.dtype.kind in "OSU" else array.dtype.str, array.shape[1:])
        for name, array in sorted(inputs.items())
    )


def _validated_inputs(inputs: Tensors) -> tuple[Tensors, int]:
    """The inputs as arrays and their common dim 0 (TF Serving's messages)."""
    if not inputs:
        raise invalid_argument("Batching Run() must have at least one input tensor")
    arrays = {name: np.asarray(value) for name, value in inputs.items()}
    rows = None
    for array in arrays.values():
        if array.ndim == 0:
            raise invalid_argument("Batching Run() input tensors must have at least one dimension")
        if rows is None:
            rows = array.shape[0]
        elif array.shape[0] != rows:
            raise invalid_argument("Batching Run() input tensors must have equal 0th-dimension size")
    return arrays, rows


def check_supported(parameters: BatchingParameters):
    """ValueError for the settings this scheduler does not implement.

    The dataclass checks the values themselves (positive sizes, increasing
    `allowed_batch_sizes`...); this names what TF Serving has and we do not.
    """
    if parameters.pad_variable_length_inputs:
        raise ValueError(
            "pad_variable_length_inputs is unsupported: padded outputs would not have the shapes "
            "each request gets unbatched. Requests with different shapes are batched separately."
        )
    if parameters.enable_large_batch_splitting:
        raise ValueError(
            "enable_large_batch_splitting is unsupported: a request larger than max_batch_size "
            "gets INVALID_ARGUMENT, as with TF Serving's default."
        )


class BatchScheduler:
    """Merges concurrent `submit` calls into batched calls of `run`.

    `run(inputs) -> outputs` maps input names to arrays whose dim 0 is the
    batch, and returns output arrays. `submit(inputs)` blocks until the
    caller's own rows of every output come back (an output not batched on
    dim 0 comes back whole), or raises what `run` raised for this caller.
    """

    def __init__(
        self,
        run: Callable[[Tensors], Tensors],
        parameters: BatchingParameters,
        name: str,
    ):
        check_supported(parameters)
        self._run = run
        self._parameters = parameters
        self._name = name
        self._max_rows = parameters.max_batch_size
        self._timeout = parameters.batch_timeout_micros / 1e6
        self._allowed_sizes = tuple(parameters.allowed_batch_sizes)
        self._queues: dict[tuple, collections.deque[_Batch]] = {}
        self._lock = threading.Lock()
        self._work = threading.Condition(self._lock)
        self._closed = False
        self._threads = [
            threading.Thread(target=self._serve, name=f"{name}_batch_{index}", daemon=True)
            for index in range(parameters.num_batch_threads)
        ]
        for thread in self._threads:
            thread.start()

    @property
    def name(self) -> str:
        return self._name

    @property
    def queued_tasks(self) -> int:
        """Tasks waiting for a batch thread (not counting those being run)."""
        with self._lock:
            return sum(len(batch.tasks) for queue in self._queues.values() for batch in queue)

    def submit(self, inputs: Tensors) -> Tensors:
        arrays, rows = _validated_inputs(inputs)
        if rows > self._max_rows:
            raise invalid_argument(
                f"Task size {rows} is larger than maximum input batch size {self._max_rows}"
            )
        task = _Task(arrays, rows)
        key = _merge_key(arrays)
        with self._lock:
            if self._closed:
                raise ServingError(
                    grpc.StatusCode.UNAVAILABLE, f"Batch scheduler {self._name} is closed"
                )
            queue = self._queues.get(key)
            if queue is None:
                queue = self._queues[key] = collections.deque()
            if not queue or queue[-1].rows + rows > self._max_rows:
                if len(queue) >= self._parameters.max_enqueued_batches:
                    raise ServingError(
                        grpc.StatusCode.UNAVAILABLE,
                        "The batch scheduling queue to which this task was submitted is full; "
                        f"currently {len(queue)} batches enqueued and max_enqueued_batches is "
                        f"{self._parameters.max_enqueued_batches}",
                    )
                queue.append(_Batch(time.monotonic()))
            batch = queue[-1]
            batch.tasks.append(task)
            batch.rows += rows
            self._work.notify()
        task.done.wait()
        if task.error is not None:
            raise task.error
        return task.outputs

    def close(self, timeout: float = 60.0):
        """Stops accepting tasks, runs every queued one, joins the threads.

        Waits at most `timeout` seconds in all for the threads; idempotent.
        """
        with self._lock:
            self._closed = True
            self._work.notify_all()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(max(0.0, deadline - time.monotonic()))

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    # Worker side.

    def _take_ready_batch(self) -> tuple[_Batch | None, float | None]:
        """The oldest ready batch (removed from its queue), else how long to wait.

        Called with the lock held. The wait is None when nothing is queued.
        """
        now = time.monotonic()
        oldest_key, oldest_batch = None, None
        next_ready = None
        for key, queue in self._queues.items():
            front = queue[0]
            ready_at = front.opened + self._timeout
            if len(queue) > 1 or front.rows >= self._max_rows or self._closed or ready_at <= now:
                if oldest_batch is None or front.opened < oldest_batch.opened:
                    oldest_key, oldest_batch = key, front
            elif next_ready is None or ready_at < next_ready:
                next_ready = ready_at
        if oldest_batch is not None:
            queue = self._queues[oldest_key]
            queue.popleft()
            if not queue:
                del self._queues[oldest_key]
            return oldest_batch, None
        return None, None if next_ready is None else next_ready - now

    def _serve(self):
        while True:
            with self._lock:
                while True:
                    batch, wait = self._take_ready_batch()
                    if batch is not None:
                        break
                    if self._closed and not self._queues:
                        return
                    self._work.wait(wait)
                if self._queues:
                    # More work may be ready: hand it to another idle thread.
                    self._work.notify()
            self._process(batch.tasks)

    def _process(self, tasks: list[_Task]):
        try:
            try:
                self._answer(tasks, self._run_batch(tasks))
            except BaseException as error:  # the caller's thread re-raises it
                if len(tasks) == 1:
                    tasks[0].finish(error=error)
                else:
                    # Only the task that breaks the run may fail: rerun each alone.
                    for task in tasks:
                        self._process([task])
        finally:
            for task in tasks:
                if not task.done.is_set():
                    task.finish(error=ServingError(
                        grpc.StatusCode.INTERNAL, f"Batch scheduler {self._name} dropped the task"
                    ))

    def _padded_rows(self, rows: int) -> int:
        index = bisect.bisect_left(self._allowed_sizes, rows)
        return self._allowed_sizes[index] if index < len(self._allowed_sizes) else rows

    def _run_batch(self, tasks: list[_Task]) -> tuple[Tensors, int]:
        """Runs the merged, padded batch: its outputs and its padded row count."""
        rows = sum(task.rows for task in tasks)
        padding = self._padded_rows(rows) - rows if rows else 0
        if len(tasks) == 1 and not padding:
            return self._run(tasks[0].inputs), rows
        merged = {}
        for name in tasks[0].inputs:
            parts = [task.inputs[name] for task in tasks]
            if padding:
                filler = next(part for part in reversed(parts) if len(part))[-1:]
                parts.append(np.repeat(filler, padding, axis=0))
            merged[name] = np.concatenate(parts, axis=0)
        return self._run(merged), rows + padding

    @staticmethod
    def _answer(tasks: list[_Task], result: tuple[Tensors, int]):
        outputs, rows = result
        if len(tasks) == 1 and tasks[0].rows == rows:
            tasks[0].finish(outputs=outputs)
            return
        batched = {
            name: np.ndim(value) >= 1 and np.shape(value)[0] == rows for name, value in outputs.items()
        }
        answers = []
        start = 0
        for task in tasks:
            stop = start + task.rows
            answers.append({
                name: value[start:stop] if batched[name] else value for name, value in outputs.items()
            })
            start = stop
        # Every answer is built before any caller wakes, so a failure above
        # leaves all tasks unanswered for the rerun.
        for task, answer in zip(tasks, answers):
            task.finish(outputs=answer)

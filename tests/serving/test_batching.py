"""BatchScheduler: merging, splitting, padding, limits, failure isolation, shutdown."""

import concurrent.futures
import threading
import time

import grpc
import numpy as np
import pytest

from serving.batching import BatchScheduler
from serving.config import BatchingParameters
from serving.errors import ServingError

WAIT = 10.0  # bound on every wait in these tests (seconds)


class RecordingModel:
    """`run` for the scheduler: doubles `ids`, sums them, records every call's inputs."""

    def __init__(self, release: threading.Event | None = None):
        self.calls = []
        self.entered = threading.Event()
        self.release = release
        self._lock = threading.Lock()

    def __call__(self, inputs):
        with self._lock:
            self.calls.append({name: value.copy() for name, value in inputs.items()})
        self.entered.set()
        if self.release is not None:
            assert self.release.wait(WAIT)
        ids = inputs["ids"]
        if (ids < 0).any():
            raise ValueError(f"negative id {ids.min()}")
        if (ids == 999).any():
            raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, "id 999 out of vocabulary")
        return {"doubled": ids * 2, "total": np.int64(ids.sum()), "table": np.arange(3)}


def scheduler_for(model, name="test", **parameters):
    return BatchScheduler(model, BatchingParameters(**parameters), name=name)


@pytest.fixture
def pool():
    with concurrent.futures.ThreadPoolExecutor(max_workers=16) as executor:
        yield executor


def rows_of(task_index, rows, width=2):
    return np.arange(rows * width, dtype=np.int64).reshape(rows, width) + 100 * task_index


def wait_until(condition):
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.005)


def test_concurrent_callers_get_their_own_rows_from_one_merged_run(pool):
    sizes = [1, 3, 2, 1, 2, 3, 1, 2]
    model = RecordingModel()
    # The batch closes when full (all rows), long before its timeout.
    scheduler = scheduler_for(model, max_batch_size=sum(sizes), batch_timeout_micros=WAIT * 1e6,
                              num_batch_threads=2)
    try:
        futures = [pool.submit(scheduler.submit, {"ids": rows_of(i, n)}) for i, n in enumerate(sizes)]
        for i, (future, n) in enumerate(zip(futures, sizes)):
            outputs = future.result(WAIT)
            np.testing.assert_array_equal(outputs["doubled"], rows_of(i, n) * 2)
            # Outputs without the batch's leading dim come back whole.
            np.testing.assert_array_equal(outputs["table"], np.arange(3))
            assert outputs["total"] == model.calls[0]["ids"].sum()
        assert len(model.calls) == 1
        assert model.calls[0]["ids"].shape == (sum(sizes), 2)
    finally:
        scheduler.close(WAIT)


def test_tasks_arriving_within_the_timeout_merge(pool):
    model = RecordingModel()
    scheduler = scheduler_for(model, max_batch_size=100, batch_timeout_micros=1_000_000)
    try:
        first = pool.submit(scheduler.submit, {"ids": rows_of(0, 1)})
        second = pool.submit(scheduler.submit, {"ids": rows_of(1, 2)})
        np.testing.assert_array_equal(first.result(WAIT)["doubled"], rows_of(0, 1) * 2)
        np.testing.assert_array_equal(second.result(WAIT)["doubled"], rows_of(1, 2) * 2)
        assert [call["ids"].shape[0] for call in model.calls] == [3]
    finally:
        scheduler.close(WAIT)


def test_merged_batches_never_exceed_max_batch_size(pool):
    sizes = [3, 1, 2, 3, 2, 1, 3, 3, 1, 2]
    release = threading.Event()
    model = RecordingModel(release)
    scheduler = scheduler_for(model, max_batch_size=4, batch_timeout_micros=WAIT * 1e6 * 10, num_batch_threads=1)
    try:
        futures = [pool.submit(scheduler.submit, {"ids": rows_of(0, 4)})]
        assert model.entered.wait(WAIT)
        # Everything else queues behind the blocked run; closing runs the last open batch.
        futures += [pool.submit(scheduler.submit, {"ids": rows_of(i, n)}) for i, n in enumerate(sizes, 1)]
        wait_until(lambda: scheduler.queued_tasks == len(sizes))
        release.set()
        scheduler.close(WAIT)
        for i, (future, n) in enumerate(zip(futures, [4] + sizes)):
            np.testing.assert_array_equal(future.result(WAIT)["doubled"], rows_of(i, n) * 2)
        run_sizes = [call["ids"].shape[0] for call in model.calls]
        assert max(run_sizes) == 4
        assert sum(run_sizes) == 4 + sum(sizes)
        # A batch closes only when the next task does not fit in it.
        assert all(earlier + later > 4 for earlier, later in zip(run_sizes[1:], run_sizes[2:]))
    finally:
        release.set()
        scheduler.close(WAIT)


def test_allowed_batch_sizes_pad_with_the_last_row_and_drop_the_padding():
    model = RecordingModel()
    scheduler = scheduler_for(model, max_batch_size=8, allowed_batch_sizes=(2, 4, 8))
    try:
        ids = rows_of(0, 3)
        outputs = scheduler.submit({"ids": ids})
        np.testing.assert_array_equal(outputs["doubled"], ids * 2)
        (call,) = model.calls
        np.testing.assert_array_equal(call["ids"], np.concatenate([ids, ids[-1:]]))
        # A non-batched output is what the padded run returned.
        assert outputs["total"] == call["ids"].sum()
    finally:
        scheduler.close(WAIT)


def test_inputs_of_different_shapes_or_dtypes_are_never_merged(pool):
    model = RecordingModel()
    # Each kind fills its own batch of two; kinds merged together would overflow it.
    scheduler = scheduler_for(model, max_batch_size=2, batch_timeout_micros=WAIT * 1e6)
    kinds = [rows_of(0, 1, width=5), rows_of(0, 1, width=7), rows_of(0, 1, width=5).astype(np.int32)]
    inputs = [kind + offset for offset in (0, 1) for kind in kinds]
    try:
        futures = [pool.submit(scheduler.submit, {"ids": ids}) for ids in inputs]
        for ids, future in zip(inputs, futures):
            doubled = future.result(WAIT)["doubled"]
            np.testing.assert_array_equal(doubled, ids * 2)
            assert doubled.dtype == ids.dtype
        assert len(model.calls) == 3
        assert sorted((call["ids"].shape, call["ids"].dtype.str) for call in model.calls) == sorted(
            ((2, kind.shape[1]), kind.dtype.str) for kind in kinds
        )
    finally:
        scheduler.close(WAIT)


def test_invalid_tasks_get_tf_servings_invalid_argument():
    scheduler = scheduler_for(RecordingModel(), max_batch_size=4)
    try:
        with pytest.raises(ServingError, match="Task size 5 is larger than maximum input batch size 4") as error:
            scheduler.submit({"ids": rows_of(0, 5)})
        assert error.value.code == grpc.StatusCode.INVALID_ARGUMENT
        for inputs, message in [
            ({"ids": rows_of(0, 2), "mask": rows_of(0, 3)}, "must have equal 0th-dimension size"),
            ({"ids": np.int64(3)}, "must have at least one dimension"),
            ({}, "must have at least one input tensor"),
        ]:
            with pytest.raises(ServingError, match=message) as error:
                scheduler.submit(inputs)
            assert error.value.code == grpc.StatusCode.INVALID_ARGUMENT
        np.testing.assert_array_equal(scheduler.submit({"ids": rows_of(0, 4)})["doubled"], rows_of(0, 4) * 2)
    finally:
        scheduler.close(WAIT)


def test_a_full_queue_answers_unavailable(pool):
    release = threading.Event()
    model = RecordingModel(release)
    scheduler = scheduler_for(model, max_batch_size=2, max_enqueued_batches=1, num_batch_threads=1)
    try:
        running = pool.submit(scheduler.submit, {"ids": rows_of(0, 2)})
        assert model.entered.wait(WAIT)
        # The only thread is busy; one batch may wait, and these two don't fit in one.
        waiting = [pool.submit(scheduler.submit, {"ids": rows_of(i, n)}) for i, n in ((1, 2), (2, 1))]
        rejected, _ = concurrent.futures.wait(waiting, WAIT, return_when=concurrent.futures.FIRST_COMPLETED)
        assert len(rejected) == 1
        (rejected,) = rejected
        error = rejected.exception(0)
        assert error.code == grpc.StatusCode.UNAVAILABLE
        assert error.message.startswith("The batch scheduling queue to which this task was submitted is full")
        release.set()
        running.result(WAIT)
        (accepted,) = [f for f in waiting if f is not rejected]
        assert accepted.result(WAIT)["doubled"].shape[1] == 2
    finally:
        release.set()
        scheduler.close(WAIT)


def test_a_failing_task_fails_only_its_own_caller(pool):
    model = RecordingModel()
    inputs = [rows_of(0, 2), rows_of(1, 1) * -1, rows_of(2, 1), rows_of(3, 2) * 0 + 999, rows_of(4, 1)]
    scheduler = scheduler_for(model, max_batch_size=7, batch_timeout_micros=WAIT * 1e6)
    try:
        futures = [pool.submit(scheduler.submit, {"ids": ids}) for ids in inputs]
        with pytest.raises(ValueError, match="negative id"):
            futures[1].result(WAIT)
        with pytest.raises(ServingError, match="id 999 out of vocabulary") as error:
            futures[3].result(WAIT)
        assert error.value.code == grpc.StatusCode.INVALID_ARGUMENT
        for index in (0, 2, 4):
            np.testing.assert_array_equal(futures[index].result(WAIT)["doubled"], inputs[index] * 2)
        # One merged run, then each task alone.
        run_sizes = [call["ids"].shape[0] for call in model.calls]
        assert run_sizes[0] == 7 and sorted(run_sizes[1:]) == [1, 1, 1, 2, 2]
    finally:
        scheduler.close(WAIT)


def test_an_exception_reaches_the_caller_unchanged():
    class VocabularyError(Exception):
        pass

    raised = VocabularyError("bad id")

    def run(inputs):
        raise raised

    scheduler = BatchScheduler(run, BatchingParameters(), name="failing")
    try:
        with pytest.raises(VocabularyError) as error:
            scheduler.submit({"ids": rows_of(0, 1)})
        assert error.value is raised
    finally:
        scheduler.close(WAIT)


def test_close_finishes_queued_work_then_rejects(pool):
    release = threading.Event()
    model = RecordingModel(release)
    # The queued task would wait for its long timeout unless closing runs it.
    scheduler = scheduler_for(model, name="closing", max_batch_size=8, batch_timeout_micros=WAIT * 1e6 * 10,
                              num_batch_threads=1)
    try:
        running = pool.submit(scheduler.submit, {"ids": rows_of(0, 8)})
        assert model.entered.wait(WAIT)
        queued = pool.submit(scheduler.submit, {"ids": rows_of(1, 3)})
        wait_until(lambda: scheduler.queued_tasks == 1)
        started = time.monotonic()
        closing = pool.submit(scheduler.close, WAIT)
        release.set()
        closing.result(WAIT)
        assert time.monotonic() - started < WAIT / 2
        np.testing.assert_array_equal(running.result(WAIT)["doubled"], rows_of(0, 8) * 2)
        np.testing.assert_array_equal(queued.result(WAIT)["doubled"], rows_of(1, 3) * 2)
        assert not [thread for thread in threading.enumerate() if thread.name.startswith("closing_batch")]
        with pytest.raises(ServingError, match="closed") as error:
            scheduler.submit({"ids": rows_of(2, 1)})
        assert error.value.code == grpc.StatusCode.UNAVAILABLE
    finally:
        release.set()
        scheduler.close(WAIT)


@pytest.mark.parametrize(
    "parameters, message",
    [
        (dict(pad_variable_length_inputs=True), "pad_variable_length_inputs is unsupported"),
        (dict(enable_large_batch_splitting=True), "enable_large_batch_splitting is unsupported"),
    ],
)
def test_unsupported_parameters_are_rejected_at_construction(parameters, message):
    with pytest.raises(ValueError, match=message):
        scheduler_for(RecordingModel(), **parameters)


def test_text_inputs_of_different_item_lengths_merge(pool):
    calls = []

    def run(inputs):
        calls.append(inputs["text"])
        return {"length": np.char.str_len(inputs["text"])}

    scheduler = BatchScheduler(run, BatchingParameters(max_batch_size=3, batch_timeout_micros=int(WAIT * 1e6)),
                               name="text")
    texts = [np.array(["a"]), np.array(["a gripping, funny film"]), np.array(["so-so"])]
    try:
        futures = [pool.submit(scheduler.submit, {"text": text}) for text in texts]
        for text, future in zip(texts, futures):
            np.testing.assert_array_equal(future.result(WAIT)["length"], [len(text[0])])
        (merged,) = calls
        assert sorted(merged) == sorted(text[0] for text in texts)
    finally:
        scheduler.close(WAIT)

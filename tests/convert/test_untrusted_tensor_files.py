"""Crafted weight files against the readers: every defect of issue 17 in tensor_files.

The files are written here (torch-format pickles built opcode by opcode, see
`fuzz_tensor_files`), and all of them are read in ONE child process under a
512 MB address-space cap and a 90 s timeout (`tests.isolation`), so that a
segfault, a hang or a blow-up fails its test instead of the suite. Each read
also runs under `guarded`: it fails if it allocates over 64 MB or takes over
10 s, however it ends (a memory bomb that happens to raise MemoryError inside
the reader is still a memory bomb).
"""

import io
import json
import os
import zipfile

import numpy as np
import pytest

from keras_bert_kit.convert.tensor_files import write_safetensors
from tests.convert.fuzz_tensor_files import (
    EMPTY_ORDERED_DICT,
    op_get,
    op_global,
    op_int,
    op_put,
    op_str,
    op_tuple,
    rebuild_tensor,
    safetensors_bytes,
    state_dict_pickle,
    storage_pid,
    torch_zip,
)
from tests.isolation import assert_raises, run_cases, run_fuzz

SETUP = """
import collections, time, tracemalloc
from keras_bert_kit.convert import tensor_files
from keras_bert_kit.convert.tensor_files import read_model_weights, read_pytorch_bin, read_safetensors

def guarded(read, path, max_mb=64, max_seconds=10):
    tracemalloc.start()
    start = time.monotonic()
    try:
        result = read(path)
        return sorted((k, type(v).__name__, getattr(v, "shape", None)) for k, v in
                      (result[0] if isinstance(result, tuple) else result).items())
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        if peak > max_mb * 2**20 or time.monotonic() - start > max_seconds:
            raise MemoryError(f"the read took {peak >> 20} MB, {time.monotonic() - start:.1f} s")

def mutated():
    objects = [("collections.OrderedDict", collections.OrderedDict), *vars(tensor_files).items()]
    return [name for name, value in objects if "kbk_pwned" in getattr(value, "__dict__", {})]
"""


def _float_storage(key, numel):
    return storage_pid("FloatStorage", key, numel)


def _pytorch_bin_files():
    """{case: (file bytes, expected CheckpointFormatError message fragment)}."""
    files = {}
    # 1. A built tensor, reached through the memo, handed over as a storage: as the
    # (array, type name) pair the old reader unpacked, and as a bare array.
    for case, rows, leak in (("oob_leak", 64, 4000), ("oob_far", 1024, 1024 * 1023)):
        table = rebuild_tensor(_float_storage("0", rows * rows), 0, (rows, rows), (rows, 1))
        fake = op_tuple(op_get(0), op_str("FloatStorage"))
        files[case] = (
            torch_zip(state_dict_pickle([("table", table), ("leak", rebuild_tensor(
                fake, rows - 1, (leak,), (1,)))]), {"0": bytes(4 * rows * rows)}),
            "not from one of the archive's storages",
        )
    table = rebuild_tensor(_float_storage("0", 16), 0, (4, 4), (4, 1))
    files["array_as_storage"] = (
        torch_zip(state_dict_pickle([("table", table), ("leak", rebuild_tensor(
            op_get(0), 0, (16,), (1,)))]), {"0": bytes(4 * 16)}),
        "rebuilt from a built tensor",
    )
    # 2. Memory bombs: stride-0 views of one float, a storage inflating to 256 MB,
    # a memo index of 2**24, and a persistent id whose repr doubles per level.
    for case, size, stride in (("stride0", (2**26,), (0,)), ("stride0_2d", (2**13,) * 2, (0, 0))):
        files[case] = (
            torch_zip(state_dict_pickle([("bomb", rebuild_tensor(
                _float_storage("0", 1), 0, size, stride))]), {"0": bytes(4)}),
            "repeats elements",
        )
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("archive/data.pkl", state_dict_pickle([("bomb", rebuild_tensor(
            _float_storage("0", 2**26), 0, (2**26,), (1,)))]))
        with archive.open("archive/data/0", "w", force_zip64=True) as entry:
            for _ in range(256):
                entry.write(bytes(2**20))
    files["zip_bomb"] = (buffer.getvalue(), "holds 268435456 bytes; at most")
    # The pickles below stand alone in a zip: no storages needed.
    for case, index in (("memo_bomb", 2**24 + 1), ("memo_bomb_2_26", 2**26 + 5)):
        files[case] = (torch_zip(b"\x80\x02}" + op_put(index) + b".", {}), "memo index")
    doubling = op_str("storage") + op_put(0)
    for level in range(1, 40):
        doubling += op_get(level - 1) + op_get(level - 1) + b"\x86" + op_put(level)
    files["repr_doubling"] = (torch_zip(b"\x80\x02" + doubling + b"Q.", {}), "tuples nest")
    # 3. BUILD on an allowed global (the old reader's own function), and an
    # OrderedDict whose `items` BUILD replaced to hide non-tensors from the check.
    files["build_function"] = (
        torch_zip(b"\x80\x02" + op_global("torch._utils", "_rebuild_tensor_v2")
                  + b"}" + op_str("kbk_pwned") + b"\x88sb.", {}),
        "BUILD of the global torch._utils._rebuild_tensor_v2",
    )
    files["build_items"] = (
        torch_zip(b"\x80\x02" + EMPTY_ORDERED_DICT + b"(" + op_str("x") + op_int(5) + b"u}"
                  + op_str("items") + op_global("collections", "OrderedDict") + b"sb.", {}),
        "expected a dict of named tensors",
    )
    return files


def _safetensors_files():
    """{case: (file bytes, fragments of the expected message besides the file name)}."""
    f32 = {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}
    body = bytes(8)
    return {
        "header_list": (safetensors_bytes([1, 2], b""), ("not a JSON object",)),
        "entry_number": (safetensors_bytes({"a": 5}, b""), ("tensor 'a'", "not an object")),
        "no_offsets": (safetensors_bytes({"a": {"dtype": "F32", "shape": [2]}}, body),
                       ("tensor 'a'", "field 'data_offsets'")),
        "one_offset": (safetensors_bytes({"a": dict(f32, data_offsets=[0])}, body),
                       ("tensor 'a'", "field 'data_offsets'")),
        "shape_number": (safetensors_bytes({"a": dict(f32, shape=5)}, body),
                         ("tensor 'a'", "field 'shape'")),
        "shape_overflow": (safetensors_bytes({"a": dict(f32, shape=[2**70])}, body),
                           ("tensor 'a'", "field 'shape'")),
        "dtype_list": (safetensors_bytes({"a": dict(f32, dtype=[])}, body),
                       ("tensor 'a'", "field 'dtype'")),
        "metadata_numbers": (safetensors_bytes({"__metadata__": {"a": 1}}, b""),
                             ("'__metadata__'",)),
        "nested": (safetensors_bytes(b'{"a":' + b"[" * 100_000 + b"]" * 100_000 + b"}", b""),
                   ("nested too deeply",)),
        "overlap": (safetensors_bytes({"a": f32, "b": f32}, body), ("tensor 'b'", "overlaps")),
        "gap": (safetensors_bytes({"a": dict(f32, shape=[1], data_offsets=[4, 8])}, body),
                ("tensor 'a'", "leaves a gap")),
        "trailing": (safetensors_bytes({"a": f32}, body + b"tail"), ("cover 8 bytes",)),
    }


def _shard_dirs(root):
    """{case: (model directory, expected message fragment or None for a clean load)}."""
    outside = root / "outside"
    outside.mkdir()
    write_safetensors({"a": np.ones(2, "float32")}, outside / "secret.safetensors")
    cases = {
        "dotdot": {"a": "../outside/secret.safetensors"},
        "absolute": {"a": str(outside / "secret.safetensors")},
        "symlink_out": {"a": "model-1.safetensors"},
        "symlink_in": {"a": "model-1.safetensors"},
        "not_strings": {"a": 5},
        "twice": {"a": "model-1.safetensors", "b": "model-2.safetensors"},
        "index_list": None,
    }
    expected = {
        "dotdot": "not a plain file name",
        "absolute": "not a plain file name",
        "symlink_out": "outside the model directory",
        "symlink_in": None,
        "not_strings": "field 'weight_map'",
        "twice": "tensor 'a' is in both model-1.safetensors and model-2.safetensors",
        "index_list": "field 'weight_map'",
    }
    dirs = {}
    for case, weight_map in cases.items():
        directory = root / case
        directory.mkdir()
        index = [weight_map] if weight_map is None else {"weight_map": weight_map}
        (directory / "model.safetensors.index.json").write_text(json.dumps(index))
        dirs[case] = (directory, expected[case])
    os.symlink(outside / "secret.safetensors", root / "symlink_out" / "model-1.safetensors")
    write_safetensors({"a": np.ones(2, "float32")}, root / "symlink_in" / "real.safetensors")
    os.symlink("real.safetensors", root / "symlink_in" / "model-1.safetensors")
    for shard in ("model-1.safetensors", "model-2.safetensors"):
        write_safetensors({"a": np.ones(2, "float32")}, root / "twice" / shard)
    return dirs


@pytest.fixture(scope="module")
def crafted(tmp_path_factory):
    """{case: (Outcome, path, expected fragments)} of reading every crafted file once."""
    root = tmp_path_factory.mktemp("crafted")
    expected, cases = {}, {}
    for case, (data, fragments) in _safetensors_files().items():
        path = root / f"{case}.safetensors"
        path.write_bytes(data)
        expected[case] = (path, fragments)
        cases[case] = f"guarded(read_safetensors, {str(path)!r})"
    (root / "shards").mkdir()
    for case, (directory, fragment) in _shard_dirs(root / "shards").items():
        expected[case] = (directory, (fragment,) if fragment else None)
        cases[case] = f"guarded(read_model_weights, {str(directory)!r})"
    # Last, the cases that crash or hang the old reader (each takes the rest down with it).
    for case, (data, fragment) in _pytorch_bin_files().items():
        path = root / f"{case}.bin"
        path.write_bytes(data)
        expected[case] = (path, (fragment,))
        cases[case] = f"guarded(read_pytorch_bin, {str(path)!r})"
        if case.startswith("build"):
            cases[f"{case}_mutated"] = "mutated()"
    outcomes = run_cases(SETUP, cases, memory_mb=512, timeout=90)
    return {case: (outcomes[case], *expected.get(case, (None, None))) for case in cases}


def _assert_refused(crafted, *cases):
    for case in cases:
        outcome, path, fragments = crafted[case]
        assert_raises(outcome, "CheckpointFormatError", str(path), *fragments)


def test_a_built_tensor_is_no_storage_and_views_stay_in_their_storage(crafted):
    _assert_refused(crafted, "oob_leak", "oob_far", "array_as_storage")


def test_stride_zero_views_cannot_expand_one_value(crafted):
    _assert_refused(crafted, "stride0", "stride0_2d")


def test_a_compressed_storage_cannot_inflate_past_the_budget(crafted):
    _assert_refused(crafted, "zip_bomb")


def test_memo_indices_cannot_grow_the_memo(crafted):
    _assert_refused(crafted, "memo_bomb", "memo_bomb_2_26")


def test_messages_never_repr_the_pickles_objects(crafted):
    _assert_refused(crafted, "repr_doubling")
    assert len(crafted["repr_doubling"][0].message) < 1000


def test_build_cannot_mutate_the_package_or_hide_non_tensors(crafted):
    _assert_refused(crafted, "build_function", "build_items")
    for case in ("build_function_mutated", "build_items_mutated"):
        outcome = crafted[case][0]
        assert outcome.status == "ok" and outcome.value == "[]", outcome


def test_malformed_safetensors_headers_name_the_file_and_field(crafted):
    _assert_refused(crafted, "header_list", "entry_number", "no_offsets", "one_offset",
                    "shape_number", "shape_overflow", "dtype_list", "metadata_numbers", "nested")


def test_safetensors_byte_ranges_must_tile_the_body(crafted):
    _assert_refused(crafted, "overlap", "gap", "trailing")


def test_the_reference_library_refuses_the_same_headers():
    from safetensors import SafetensorError
    from safetensors.numpy import load

    for case, (data, _) in _safetensors_files().items():
        with pytest.raises(SafetensorError):
            load(data)


@pytest.mark.parametrize("target", ["pytorch_bin", "safetensors"])
def test_fuzzed_files_load_or_raise_the_format_error(target):
    report = run_fuzz("tests.convert.fuzz_tensor_files", target, max_examples=150,
                      memory_mb=512, timeout=90)
    assert report.failure is None and report.cases == 150, report.failure


def test_shards_are_plain_files_inside_the_model_directory(crafted):
    _assert_refused(crafted, "dotdot", "absolute", "symlink_out", "not_strings", "index_list",
                    "twice")
    outcome = crafted["symlink_in"][0]
    assert outcome.status == "ok" and "'a', 'ndarray', (2,)" in outcome.value, outcome


# -- writing ---------------------------------------------------------------------------


def test_a_planted_partial_symlink_is_not_written_through(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    target = tmp_path / "model.safetensors"
    os.symlink(victim, tmp_path / "model.safetensors.partial")
    write_safetensors({"a": np.arange(3, dtype="float32")}, target)
    assert victim.read_text() == "keep me"
    assert os.path.islink(tmp_path / "model.safetensors.partial")
    assert not os.path.islink(target) and target.stat().st_mode & 0o777 == 0o666 & ~_umask()
    np.testing.assert_array_equal(np.frombuffer(target.read_bytes()[-12:], "<f4"), [0, 1, 2])


def _umask():
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def test_a_failed_write_leaves_no_temporary_file(tmp_path):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "child").write_text("x")
    with pytest.raises(OSError):
        write_safetensors({"a": np.ones(2, "float32")}, tmp_path / "taken")
    assert sorted(os.listdir(tmp_path)) == ["taken"]


def test_tensors_are_checked_before_any_file_is_created(tmp_path):
    for tensors, message in (
        ({"a": np.ones(2, "float32"), 5: np.ones(1, "float32")}, "names must be strings"),
        ({"a": np.ones(2, "float32"), "b": np.array([object()])}, "'b' has dtype object"),
        ({"__metadata__": np.ones(1, "float32")}, "other than '__metadata__'"),
    ):
        with pytest.raises(ValueError, match=message):
            write_safetensors(tensors, tmp_path / "model.safetensors")
        assert os.listdir(tmp_path) == []

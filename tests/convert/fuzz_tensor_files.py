"""Fuzz targets for the two weight-file readers, and torch-free builders of their formats.

`FUZZ_TARGETS` (run by `tests.isolation.run_fuzz`; see
`test_untrusted_tensor_files.py` and `bench/`):

- `pytorch_bin`: random bytes, random pickles in a valid torch zip, and valid
  state-dict archives (built here with pickle opcodes, as torch writes them)
  mutated in their tensors' sizes, strides, offsets and declared element
  counts, in the pickle's bytes, in the storage entries and the compression,
  and in the zip's bytes.
- `safetensors`: random bytes, and valid files mutated in their header's
  fields (random JSON values, dropped fields, shifted ranges), header bytes,
  length prefix and body. Every file the reader loads must load the same in
  the reference `safetensors` package, and every file the reference loads must
  load here too, unless it uses what this reader refuses on purpose (a dtype
  it does not convert, rank over 32, shapes numpy cannot allocate).

A case loads cleanly (and what comes back must be a dict of str -> numpy
array within the reader's allocation budget) or raises `CheckpointFormatError`.
"""

from __future__ import annotations

import io
import json
import os
import struct
import tempfile
import zipfile

import numpy as np
from hypothesis import strategies as st

from keras_bert_kit.errors import CheckpointFormatError
from tests.isolation import FuzzTarget

# -- building torch zip archives without torch --------------------------------------


def op_str(text: str) -> bytes:
    raw = text.encode("utf-8")
    return b"X" + struct.pack("<I", len(raw)) + raw


def op_int(value: int) -> bytes:
    if 0 <= value < 256:
        return b"K" + bytes([value])
    if 0 <= value < 65536:
        return b"M" + struct.pack("<H", value)
    if -(2**31) <= value < 2**31:
        return b"J" + struct.pack("<i", value)
    raw = value.to_bytes((value.bit_length() + 8) // 8, "little", signed=True)
    return b"\x8a" + bytes([len(raw)]) + raw


def op_global(module: str, name: str) -> bytes:
    return b"c" + f"{module}\n{name}\n".encode()


def op_tuple(*parts: bytes) -> bytes:
    return b"(" + b"".join(parts) + b"t"


def op_put(index: int) -> bytes:
    return b"q" + bytes([index]) if index < 256 else b"r" + struct.pack("<I", index)


def op_get(index: int) -> bytes:
    return b"h" + bytes([index]) if index < 256 else b"j" + struct.pack("<I", index)


EMPTY_ORDERED_DICT = op_global("collections", "OrderedDict") + b")R"


def storage_pid(storage_type: str, key: str, numel: int) -> bytes:
    """torch's persistent id of one storage, as BINPERSID pushes it."""
    return (
        op_tuple(op_str("storage"), op_global("torch", storage_type), op_str(key),
                 op_str("cpu"), op_int(numel))
        + b"Q"
    )


def rebuild_tensor(storage: bytes, offset: int, size, stride) -> bytes:
    """`_rebuild_tensor_v2(storage, offset, size, stride, False, OrderedDict())`."""
    return (
        op_global("torch._utils", "_rebuild_tensor_v2")
        + op_tuple(storage, op_int(offset), op_tuple(*map(op_int, size)),
                   op_tuple(*map(op_int, stride)), b"\x89", EMPTY_ORDERED_DICT)
        + b"R"
    )


def state_dict_pickle(items: list[tuple[str, bytes]], *, ordered=False) -> bytes:
    """A protocol-2 pickle of a dict {name: object}, each object given as its opcodes."""
    body = b"".join(op_str(name) + value + op_put(i) for i, (name, value) in enumerate(items))
    head = EMPTY_ORDERED_DICT if ordered else b"}"
    return b"\x80\x02" + head + (b"(" + body + b"u" if items else b"") + b"."


def torch_zip(pickled: bytes, storages: dict[str, bytes], *, prefix="archive",
              compression=zipfile.ZIP_STORED) -> bytes:
    """A torch zip archive holding `pickled` as data.pkl and each storage as data/<key>."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        archive.writestr(f"{prefix}/data.pkl", pickled)
        archive.writestr(f"{prefix}/byteorder", b"little")
        for key, data in storages.items():
            archive.writestr(f"{prefix}/data/{key}", data)
        archive.writestr(f"{prefix}/version", b"3\n")
    return buffer.getvalue()


def safetensors_bytes(header, body: bytes) -> bytes:
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + body


# -- strategies ----------------------------------------------------------------------

_TORCH_TYPES = {"FloatStorage": 4, "HalfStorage": 2, "BFloat16Storage": 2, "LongStorage": 8,
                "ByteStorage": 1, "BoolStorage": 1, "DoubleStorage": 8}
_SAFETENSORS_TYPES = {"F32": 4, "F16": 2, "BF16": 2, "I64": 8, "U8": 1, "BOOL": 1, "F64": 8,
                      "I8": 1, "I32": 4, "U16": 2}
_REFUSED_HERE = {"U16"}  # dtypes this reader does not convert
_NOT_IN_REFERENCE = {"BF16"}  # safetensors.numpy has no bfloat16

_small = st.integers(0, 6)
_edge_ints = st.sampled_from([-1, 0, 1, 2, 255, 2**31 - 1, 2**31, 2**40, 2**62, 2**63])
_dim = st.one_of(_small, _edge_ints)
_json_value = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=8),
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(st.text(max_size=6), children, max_size=3),
    max_leaves=8,
)


@st.composite
def _byte_mutations(draw, data: bytes) -> bytes:
    """`data` with a few random byte flips, insertions, deletions or duplicated ranges."""
    data = bytearray(data)
    for _ in range(draw(st.integers(0, 4))):
        if not data:
            data += draw(st.binary(min_size=1, max_size=8))
            continue
        at = draw(st.integers(0, len(data) - 1))
        kind = draw(st.sampled_from(["flip", "set", "insert", "delete", "duplicate"]))
        if kind == "flip":
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set":
            data[at] = draw(st.integers(0, 255))
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        else:
            end = min(len(data), at + draw(st.integers(1, 16)))
            chunk = data[at:end]
            if kind == "delete":
                del data[at:end]
            else:
                data[end:end] = chunk
    return bytes(data)


@st.composite
def _tensor_view(draw, numel: int | None):
    """(offset, size, stride) of a view: usually a valid one of `numel` elements, or of
    a storage sized to fit it when `numel` is None; sometimes anything."""
    if draw(st.integers(0, 3)):
        size = [draw(_small) for _ in range(draw(st.integers(0, 3)))]
        count = int(np.prod(size))
        if numel is not None and count > numel:
            size = [numel]
        stride, step = [], 1
        for n in reversed(size):
            stride.insert(0, step)
            step *= max(n, 1)
        return draw(st.integers(0, 2)), size, stride
    rank = draw(st.integers(0, 4))
    return draw(_dim), [draw(_dim) for _ in range(rank)], [draw(_dim) for _ in range(rank)]


def _rarely(draw, one_in: int) -> bool:
    return draw(st.integers(1, one_in)) == 1


@st.composite
def pytorch_bin_files(draw) -> bytes:
    kind = draw(st.sampled_from(["random", "random pickle"] + ["state dict"] * 4))
    if kind == "random":
        return draw(st.binary(max_size=300))
    if kind == "random pickle":
        return torch_zip(b"\x80\x02" + draw(st.binary(max_size=200)), {})
    storages, declared, items = {}, {}, []
    for i in range(draw(st.integers(0, 3))):
        if declared and _rarely(draw, 4):  # another view of an earlier storage (tied weights)
            key = draw(st.sampled_from(sorted(declared)))
            storage_type, numel = declared[key]
            offset, size, stride = draw(_tensor_view(numel))
        else:
            key, storage_type = str(i), draw(st.sampled_from(sorted(_TORCH_TYPES)))
            offset, size, stride = draw(_tensor_view(None))
            numel = draw(_small) if _rarely(draw, 4) else offset + int(np.prod(size)) + draw(
                st.integers(0, 2))
            numel = max(0, min(numel, 64))
            data = draw(st.binary(min_size=numel * _TORCH_TYPES[storage_type],
                                  max_size=numel * _TORCH_TYPES[storage_type]))
            if _rarely(draw, 20):
                data = data[: draw(st.integers(0, len(data)))] + draw(st.binary(max_size=4))
            storages[key], declared[key] = data, (storage_type, numel)
            if _rarely(draw, 20):
                numel = draw(_dim)
        value = rebuild_tensor(storage_pid(storage_type, key, numel), offset, size, stride)
        if items and _rarely(draw, 8):
            value = op_get(draw(st.integers(0, len(items))))  # reuse a memoized object
        if _rarely(draw, 6):
            value = op_global("torch._utils", "_rebuild_parameter") + op_tuple(
                value, b"\x89", EMPTY_ORDERED_DICT) + b"R"
        items.append((f"t{i}", value))
    pickled = state_dict_pickle(items, ordered=draw(st.booleans()))
    pickled = draw(_byte_mutations(pickled)) if _rarely(draw, 4) else pickled
    archive = torch_zip(pickled, storages, compression=draw(
        st.sampled_from([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])))
    return draw(_byte_mutations(archive)) if _rarely(draw, 5) else archive


def _int_list(value) -> bool:
    return isinstance(value, list) and all(type(item) is int for item in value)


@st.composite
def safetensors_files(draw) -> bytes:
    kind = draw(st.sampled_from(["random", "random header"] + ["tensors"] * 4))
    if kind == "random":
        return draw(st.binary(max_size=200))
    if kind == "random header":
        return safetensors_bytes(json.dumps(draw(_json_value)).encode(), draw(st.binary(max_size=16)))
    header, body = {}, b""
    for i in range(draw(st.integers(0, 3))):
        dtype = draw(st.sampled_from(sorted(_SAFETENSORS_TYPES)))
        shape = [draw(_small) for _ in range(draw(st.integers(0, 3)))]
        nbytes = int(np.prod(shape)) * _SAFETENSORS_TYPES[dtype]
        header[f"t{i}"] = {"dtype": dtype, "shape": shape,
                           "data_offsets": [len(body), len(body) + nbytes]}
        body += draw(st.binary(min_size=nbytes, max_size=nbytes))
    if draw(st.booleans()):
        header["__metadata__"] = {"format": "pt"}
    for _ in range(draw(st.integers(0, 2))):
        if not header:
            break
        entry = header[draw(st.sampled_from(sorted(header)))]
        field = draw(st.sampled_from(["dtype", "shape", "data_offsets", "x"]))
        action = draw(st.sampled_from(["json", "drop", "shift", "dims"]))
        if action == "json":
            entry[field] = draw(_json_value)
        elif action == "drop":
            entry.pop(field, None)
        elif action == "shift" and _int_list(entry.get("data_offsets")):
            entry["data_offsets"] = [o + draw(st.integers(-4, 4)) for o in entry["data_offsets"]]
        elif action == "dims":
            entry["shape"] = [draw(_dim) for _ in range(draw(st.integers(0, 34)))]
    raw = json.dumps(header).encode()
    raw = draw(_byte_mutations(raw)) if draw(st.integers(0, 3)) == 0 else raw
    body = draw(_byte_mutations(body)) if draw(st.integers(0, 5)) == 0 else body
    data = safetensors_bytes(raw, body)
    if draw(st.integers(0, 7)) == 0:
        data = struct.pack("<Q", draw(st.sampled_from([0, 1, len(raw) + 1, 2**63, 2**64 - 1])))
        data += raw + body
    return data


# -- running one case ------------------------------------------------------------------


def _check_loaded(tensors, file_size: int) -> str:
    from keras_bert_kit.convert.tensor_files import read_budget

    assert type(tensors) is dict, type(tensors)
    assert all(type(k) is str and type(v) is np.ndarray for k, v in tensors.items())
    assert sum(v.nbytes for v in tensors.values()) <= read_budget(file_size)
    return "loaded"


def _read_case(data: bytes, read):
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "case")
        with open(path, "wb") as f:
            f.write(data)
        return read(path)


def _run_pytorch_bin(data: bytes) -> str:
    from keras_bert_kit.convert.tensor_files import read_pytorch_bin

    return _check_loaded(_read_case(data, read_pytorch_bin), len(data))


def _reference_load(data: bytes):
    from safetensors.numpy import load

    try:
        return load(data)
    except Exception:  # noqa: BLE001 - any refusal by the reference
        return None


def _tensor_entries(data: bytes) -> list[dict]:
    """The tensor entries of a header the reader or the reference accepted."""
    header = json.loads(data[8 : 8 + struct.unpack("<Q", data[:8])[0]])
    return [entry for name, entry in header.items() if name != "__metadata__"]


def _refused_on_purpose(entry: dict) -> bool:
    return (
        entry["dtype"] in _REFUSED_HERE
        or len(entry["shape"]) > 32
        or np.prod([max(d, 1) for d in entry["shape"]], dtype=float) >= 2**60
    )


def _run_safetensors(data: bytes) -> str:
    from keras_bert_kit.convert.tensor_files import read_safetensors

    try:
        tensors = _read_case(data, read_safetensors)
    except CheckpointFormatError:
        if _reference_load(data) is not None:
            assert any(map(_refused_on_purpose, _tensor_entries(data))), "the reference loads it"
        raise
    if not any(entry["dtype"] in _NOT_IN_REFERENCE for entry in _tensor_entries(data)):
        reference = _reference_load(data)
        assert reference is not None, "loaded here, refused by the reference"
        assert sorted(reference) == sorted(tensors)
        for name, array in tensors.items():
            assert array.dtype == reference[name].dtype and array.shape == reference[name].shape
            assert array.tobytes() == reference[name].tobytes(), name
    return _check_loaded(tensors, len(data))


FUZZ_TARGETS = {
    "pytorch_bin": FuzzTarget(pytorch_bin_files(), _run_pytorch_bin, (CheckpointFormatError,)),
    "safetensors": FuzzTarget(safetensors_files(), _run_safetensors, (CheckpointFormatError,)),
}

"""Reading and writing the tensor files of Hugging Face model directories, without torch.

- `.safetensors` (one file, or shards listed by `model.safetensors.index.json`):
  an 8-byte little-endian header length, a JSON header giving each tensor's
  dtype, shape and byte range, then the raw little-endian data.
- `pytorch_model.bin` (or shards listed by `pytorch_model.bin.index.json`):
  torch's zip format, a pickle (`data.pkl`) whose tensor storages live in
  `data/<key>` entries. Unpickling can run arbitrary code, so the pickle is
  read by `_TensorUnpickler`, which resolves only the handful of torch names
  a state dict needs and refuses every other global.

Both readers return `{name: numpy array}`; bfloat16 tensors come back as
float32 (numpy has no bfloat16 of its own, and every value is exact in float32).
"""

from __future__ import annotations

import collections
import json
import os
import pickle
import struct
import zipfile

import numpy as np

from keras_bert_kit.errors import CheckpointFormatError

SAFETENSORS = "model.safetensors"
PYTORCH_BIN = "pytorch_model.bin"
_INDEX_SUFFIX = ".index.json"

# safetensors dtype names; BF16 is widened to float32 when read.
_SAFETENSORS_DTYPES = {
    "F64": np.float64,
    "F32": np.float32,
    "F16": np.float16,
    "BF16": np.uint16,
    "I64": np.int64,
    "I32": np.int32,
    "I16": np.int16,
    "I8": np.int8,
    "U8": np.uint8,
    "BOOL": np.bool_,
}
_NUMPY_TO_SAFETENSORS = {
    np.dtype(np.float64): "F64",
    np.dtype(np.float32): "F32",
    np.dtype(np.float16): "F16",
    np.dtype(np.int64): "I64",
    np.dtype(np.int32): "I32",
    np.dtype(np.int16): "I16",
    np.dtype(np.int8): "I8",
    np.dtype(np.uint8): "U8",
    np.dtype(np.bool_): "BOOL",
}

# torch storage classes (as pickled) -> numpy dtype of their elements.
_TORCH_STORAGES = {
    "DoubleStorage": np.float64,
    "FloatStorage": np.float32,
    "HalfStorage": np.float16,
    "BFloat16Storage": np.uint16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


def _bfloat16_to_float32(bits: np.ndarray) -> np.ndarray:
    return (bits.astype(np.uint32) << 16).view(np.float32)


# -- safetensors -----------------------------------------------------------------


def read_safetensors(path) -> dict[str, np.ndarray]:
    """All tensors of one `.safetensors` file, as numpy arrays."""
    path = os.fspath(path)
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 8:
        raise CheckpointFormatError(f"{path}: too short to be a safetensors file.")
    (header_size,) = struct.unpack("<Q", data[:8])
    if header_size > len(data) - 8:
        raise CheckpointFormatError(
            f"{path}: header of {header_size} bytes does not fit in a {len(data)}-byte file "
            "(truncated, or not a safetensors file)."
        )
    try:
        header = json.loads(data[8 : 8 + header_size])
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointFormatError(f"{path}: unreadable safetensors header ({e}).") from None
    body = memoryview(data)[8 + header_size :]
    tensors = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        dtype_name = entry.get("dtype")
        if dtype_name not in _SAFETENSORS_DTYPES:
            raise CheckpointFormatError(
                f"{path}: tensor {name!r} has dtype {dtype_name!r}; "
                f"supported: {sorted(_SAFETENSORS_DTYPES)}."
            )
        dtype = np.dtype(_SAFETENSORS_DTYPES[dtype_name]).newbyteorder("<")
        shape = tuple(entry["shape"])
        begin, end = entry["data_offsets"]
        if not 0 <= begin <= end <= len(body) or end - begin != dtype.itemsize * int(
            np.prod(shape, dtype=np.int64)
        ):
            raise CheckpointFormatError(
                f"{path}: tensor {name!r} (shape {shape}, {dtype_name}) has an invalid "
                f"byte range [{begin}, {end}) in a {len(body)}-byte body."
            )
        array = np.frombuffer(body[begin:end], dtype=dtype).reshape(shape)
        array = array.astype(dtype.newbyteorder("="))
        tensors[name] = _bfloat16_to_float32(array) if dtype_name == "BF16" else array
    return tensors


def write_safetensors(tensors: dict[str, np.ndarray], path, metadata=None) -> str:
    """Writes `tensors` as one `.safetensors` file (atomically) and returns its path."""
    path = os.fspath(path)
    header, chunks, offset = {}, [], 0
    for name in sorted(tensors):
        array = np.ascontiguousarray(tensors[name])
        if array.dtype not in _NUMPY_TO_SAFETENSORS:
            raise ValueError(f"Tensor {name!r} has dtype {array.dtype}, which safetensors lacks.")
        raw = array.astype(array.dtype.newbyteorder("<")).tobytes()
        header[name] = {
            "dtype": _NUMPY_TO_SAFETENSORS[array.dtype],
            "shape": list(array.shape),
            "data_offsets": [offset, offset + len(raw)],
        }
        chunks.append(raw)
        offset += len(raw)
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    encoded = json.dumps(header, separators=(",", ":")).encode("utf-8")
    encoded += b" " * (-len(encoded) % 8)  # The format aligns the body to 8 bytes.
    partial = path + ".partial"
    with open(partial, "wb") as f:
        f.write(struct.pack("<Q", len(encoded)))
        f.write(encoded)
        for chunk in chunks:
            f.write(chunk)
    os.replace(partial, path)
    return path


# -- pytorch_model.bin -----------------------------------------------------------


class _StorageType:
    def __init__(self, name):
        self.name = name


def _rebuild_tensor(storage, storage_offset, size, stride, *unused):
    array, dtype_name = storage
    size, stride = tuple(size), tuple(stride)
    count = int(np.prod(size, dtype=np.int64))
    if count:
        last = storage_offset + sum((n - 1) * s for n, s in zip(size, stride))
        if storage_offset < 0 or min(stride, default=0) < 0 or last >= array.size:
            raise CheckpointFormatError(
                f"a tensor of shape {size} with strides {stride} reaches past its storage "
                f"of {array.size} elements."
            )
    view = np.lib.stride_tricks.as_strided(
        array[storage_offset:] if count else array,
        shape=size,
        strides=tuple(s * array.itemsize for s in stride),
        writeable=False,
    )
    out = np.array(view)
    return _bfloat16_to_float32(out) if dtype_name == "BFloat16Storage" else out


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None, *unused):
    return data


class _TensorUnpickler(pickle.Unpickler):
    """Unpickles a torch state dict, resolving only tensor-rebuilding globals."""

    _ALLOWED = {
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
        ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
        ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    }

    def __init__(self, file, archive, prefix, path):
        super().__init__(file)
        self._archive = archive
        self._prefix = prefix
        self._path = path
        self._storages = {}

    def find_class(self, module, name):
        if (module, name) in self._ALLOWED:
            return self._ALLOWED[(module, name)]
        if module == "torch" and name in _TORCH_STORAGES:
            return _StorageType(name)
        raise CheckpointFormatError(
            f"{self._path}: refusing to unpickle {module}.{name}: a weights file may hold "
            "only tensors, and loading anything else could run code. Re-save the weights "
            "as model.safetensors."
        )

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) >= 3 and pid[0] == "storage"):
            raise CheckpointFormatError(f"{self._path}: unexpected persistent id {pid!r}.")
        storage_type, key = pid[1], str(pid[2])
        if not isinstance(storage_type, _StorageType):
            raise CheckpointFormatError(f"{self._path}: unsupported storage {storage_type!r}.")
        if key not in self._storages:
            entry = f"{self._prefix}/data/{key}"
            try:
                raw = self._archive.read(entry)
            except KeyError:
                raise CheckpointFormatError(f"{self._path}: missing storage {entry}.") from None
            dtype = np.dtype(_TORCH_STORAGES[storage_type.name]).newbyteorder("<")
            if len(raw) % dtype.itemsize:
                raise CheckpointFormatError(f"{self._path}: storage {entry} is truncated.")
            array = np.frombuffer(raw, dtype=dtype).astype(dtype.newbyteorder("="))
            self._storages[key] = (array, storage_type.name)
        return self._storages[key]


def read_pytorch_bin(path) -> dict[str, np.ndarray]:
    """The state dict in a torch zip-format `.bin`/`.pt` file, without executing code."""
    path = os.fspath(path)
    if not zipfile.is_zipfile(path):
        raise CheckpointFormatError(
            f"{path} is not a zip-format torch file (torch >= 1.6 writes that). Older "
            "pickle-only files are not read, since that needs running their code: "
            "re-save with a current torch or as model.safetensors."
        )
    with zipfile.ZipFile(path) as archive:
        pickles = [n for n in archive.namelist() if n.endswith("/data.pkl")]
        if len(pickles) != 1:
            raise CheckpointFormatError(f"{path}: expected one data.pkl, found {pickles}.")
        prefix = pickles[0][: -len("/data.pkl")]
        with archive.open(pickles[0]) as f:
            try:
                state = _TensorUnpickler(f, archive, prefix, path).load()
            except CheckpointFormatError:
                raise
            except Exception as e:  # noqa: BLE001 - any other unpickling failure
                raise CheckpointFormatError(f"{path}: unreadable pickle ({e}).") from e
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, np.ndarray) for k, v in state.items()
    ):
        raise CheckpointFormatError(f"{path}: expected a dict of named tensors (a state dict).")
    return dict(state)


# -- TensorFlow checkpoints -------------------------------------------------------


def open_tf_checkpoint(path):
    """`(prefix, reader)` of a TensorFlow checkpoint (TF1 name-based or TF2 object-based).

    `path` is a checkpoint prefix (`.../ckpt-1`, the name before `.index`) or
    a directory whose `checkpoint` file names the latest one.
    """
    import tensorflow as tf

    path = os.fspath(path)
    if os.path.isdir(path):
        latest = tf.train.latest_checkpoint(path)
        if latest is None:
            raise FileNotFoundError(
                f"{path} holds no checkpoint (no 'checkpoint' file naming one)."
            )
        path = latest
    try:
        return path, tf.train.load_checkpoint(path)
    except (tf.errors.NotFoundError, tf.errors.DataLossError, ValueError) as e:
        raise FileNotFoundError(f"{path} is not a readable TensorFlow checkpoint ({e}).") from None


# -- model directories -------------------------------------------------------------


def _read_sharded(index_path, read):
    with open(index_path, encoding="utf-8") as f:
        weight_map = json.load(f).get("weight_map")
    if not isinstance(weight_map, dict):
        raise CheckpointFormatError(f"{index_path}: no 'weight_map' object.")
    directory = os.path.dirname(index_path)
    tensors = {}
    for shard in sorted(set(weight_map.values())):
        shard_path = os.path.join(directory, shard)
        if not os.path.isfile(shard_path):
            raise FileNotFoundError(f"{index_path} lists shard {shard}, which is missing.")
        tensors.update(read(shard_path))
    return tensors


def read_model_weights(directory) -> tuple[dict[str, np.ndarray], str]:
    """The weights of a Hugging Face model directory, and the file they came from.

    Looks for `model.safetensors`, then `pytorch_model.bin`, as transformers
    does; either may be sharded (an `.index.json` naming the shards).
    """
    directory = os.fspath(directory)
    for name, read in ((SAFETENSORS, read_safetensors), (PYTORCH_BIN, read_pytorch_bin)):
        path = os.path.join(directory, name)
        if os.path.isfile(path):
            return read(path), path
        if os.path.isfile(path + _INDEX_SUFFIX):
            return _read_sharded(path + _INDEX_SUFFIX, read), path + _INDEX_SUFFIX
    raise FileNotFoundError(
        f"{directory} holds no weights: expected {SAFETENSORS} or {PYTORCH_BIN} "
        f"(or a sharded {SAFETENSORS}{_INDEX_SUFFIX})."
    )

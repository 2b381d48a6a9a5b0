"""Reading and writing the tensor files of Hugging Face model directories, without torch.

- `.safetensors` (one file, or shards listed by `model.safetensors.index.json`):
  an 8-byte little-endian header length, a JSON header giving each tensor's
  dtype, shape and byte range, then the raw little-endian data.
- `pytorch_model.bin` (or shards listed by `pytorch_model.bin.index.json`):
  torch's zip format, a pickle (`data.pkl`) whose tensor storages live in
  `data/<key>` entries.

Both readers return `{name: numpy array}`; bfloat16 tensors come back as
float32 (numpy has no bfloat16 of its own, and every value is exact in float32).

Untrusted files
---------------
Model directories come from strangers, so every reader treats its input as
hostile. Whatever the bytes, a reader returns a dict of str -> numpy array or
raises `CheckpointFormatError` naming the file and the tensor or field; it runs
no code from the file, reads nothing outside the tensors' own byte ranges, and
allocates and works in proportion to the file's size:

- Allocation is charged against `read_budget(file size)`, 8 x the file's
  size plus 64 MiB: the decompressed zip entries together stay within it, and so
  do the pickle's objects and the tensors returned together (a
  `.safetensors` file holds its tensors byte for byte, so it returns at most
  its own size). A few KB therefore never become gigabytes, while tied
  weights (two tensors viewing one storage) and bfloat16 widening (x2) fit.
- `.safetensors`: the header is at most 100 MB (the reference library's limit)
  and must fit in the file; it is read and checked before any tensor data:
  a JSON object, each entry `{"dtype": str, "shape": [int >= 0, ...],
  "data_offsets": [begin, end]}`, `__metadata__` a str -> str object, and the
  byte ranges tiling the body exactly (no gap, overlap or trailing bytes), as
  the `safetensors` package requires. Tensors are then read from the file
  straight into their arrays.
- `pytorch_model.bin`: `pickle.Unpickler` is not used at all. A state dict's
  pickle needs only a few opcodes, so `_StateDictUnpickler` is a small
  interpreter of exactly those: it names only the allowed torch globals (as
  inert markers, never the package's own functions, so BUILD cannot reach
  them), calls nothing but its own tensor rebuild on them, applies BUILD only
  to the `OrderedDict`s it created (torch's `_metadata`, which is dropped),
  lets SETITEM(S) fill only its own dicts, with str keys, and keeps its memo
  in a dict whose indices cannot run ahead of the opcodes read. Persistent ids
  must be torch's exact `("storage", <type>, key, location, numel)`; the
  storage they yield is a private class holding the entry's bytes, whose size
  must match the declared element count. A tensor view is accepted only on
  such a storage, with plain-int sizes and strides of equal rank <= 32,
  strides >= 0 (0 only on a dimension of size 1), its first and last byte
  inside the storage and no more elements than it; it is then copied out of
  the storage with `as_strided` at its byte offset. Tuples nest at most two
  deep and marks 64 deep. Nothing untrusted is ever formatted with `repr`:
  messages give type names and sizes, and quote names cut to 80 characters.
- Zip entries are read with a cap: the declared size must fit the remaining
  budget (`data.pkl` also at most 64 MB) and the read itself returns at most
  that many bytes, whatever the entry's header claims.
- Sharded checkpoints: the index is JSON of at most 16 MB; every shard it names
  is a plain file name that resolves (symlinks followed) inside the model
  directory; a tensor found in two shards, or in a shard the map does not name
  for it, is refused.

`write_safetensors` checks every tensor and name before it creates a file,
writes to a fresh `tempfile.mkstemp` file beside the target (a name nobody can
predict or pre-plant a symlink at), fsyncs it and renames it into place; on
any failure the temporary file is removed.
"""

from __future__ import annotations

import collections
import contextlib
import json
import lzma
import os
import struct
import tempfile
import zipfile
import zlib

import numpy as np

from keras_bert_kit.errors import CheckpointFormatError

SAFETENSORS = "model.safetensors"
PYTORCH_BIN = "pytorch_model.bin"
_INDEX_SUFFIX = ".index.json"

_EXPANSION = 8
_SLACK = 64 * 2**20
_MAX_SAFETENSORS_HEADER = 100_000_000
_MAX_PICKLE_BYTES = 64 * 2**20
_MAX_INDEX_BYTES = 16 * 2**20
_MAX_RANK = 32
_MAX_MARK_DEPTH = 64
# numpy refuses any shape whose nonzero dimensions multiply past this many bytes.
_MAX_ARRAY_BYTES = 2**63 - 1

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


def read_budget(file_size: int) -> int:
    """Bytes a reader may allocate for a file of `file_size` bytes (see "Untrusted files").

    Each of: a torch archive's decompressed entries together; its pickle's
    objects and the tensors returned together.
    """
    return _EXPANSION * file_size + _SLACK


def _bfloat16_to_float32(bits: np.ndarray) -> np.ndarray:
    widened = bits.astype(np.uint32)
    widened <<= 16  # in place: a 0-d array stays an array, not a numpy scalar
    return widened.view(np.float32)


def _quote(text: str, limit: int = 80) -> str:
    """`text` quoted for a message, cut to `limit` characters (names come from the file)."""
    return repr(text[:limit]) + ("..." if len(text) > limit else "")


def _shown(text: str, limit: int = 120) -> str:
    """`text` as is when short and printable, else `_quote`d."""
    return text if len(text) <= limit and text.isprintable() else _quote(text, limit)


def _kind(value) -> str:
    """A bounded description of an untrusted value, article included: its type and size,
    never its repr (a pickle's shared nested tuples repr to exponential length)."""
    if isinstance(value, _Marker):
        return f"the global {value.name}"
    if isinstance(value, np.ndarray):
        return "a built tensor"
    name = "tuple" if isinstance(value, tuple) else type(value).__name__
    article = "an" if name[0] in "aeiouAEIOU" else "a"
    if isinstance(value, (tuple, list, dict)):
        return f"{article} {name} of {len(value)} items"
    if isinstance(value, str):
        return f"a string of {len(value)} characters"
    return f"{article} {name}"


def _checked_dims(dims, where: str, field: str) -> tuple[int, ...]:
    """`dims` (a shape or strides) as a tuple of plain non-negative ints numpy can hold."""
    if not isinstance(dims, (list, tuple)) or len(dims) > _MAX_RANK or not all(
        type(d) is int and 0 <= d <= _MAX_ARRAY_BYTES for d in dims
    ):
        raise CheckpointFormatError(
            f"{where}: {field} must be a list of at most {_MAX_RANK} integers in "
            f"[0, 2**63); got {_kind(dims)}."
        )
    return tuple(dims)


def _element_count(shape: tuple[int, ...], itemsize: int, where: str) -> int:
    """Elements in `shape`, refusing shapes numpy cannot allocate (even when empty)."""
    count, nonzero = 1, itemsize
    for d in shape:
        count *= d
        nonzero *= max(d, 1)
        if nonzero > _MAX_ARRAY_BYTES:
            raise CheckpointFormatError(f"{where}: shape {shape} is too large for any array.")
    return count


# -- safetensors -----------------------------------------------------------------


def _refuse_json_constant(name):
    raise ValueError(f"{name} is not JSON")


def _parse_json(raw: bytes, where: str, what: str):
    try:
        return json.loads(raw.decode("utf-8"), parse_constant=_refuse_json_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        reason = "nested too deeply" if isinstance(e, RecursionError) else str(e)[:200]
        raise CheckpointFormatError(f"{where}: unreadable {what} ({reason}).") from None


def _safetensors_entries(path: str, header, body_size: int) -> list:
    """[(begin, end, name, dtype name, shape)] of a parsed header, checked, in file order."""
    if not isinstance(header, dict):
        raise CheckpointFormatError(
            f"{path}: the safetensors header is {_kind(header)}, not a JSON object."
        )
    metadata = header.get("__metadata__")
    if metadata is not None and not (
        isinstance(metadata, dict)
        and all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items())
    ):
        raise CheckpointFormatError(
            f"{path}: '__metadata__' must map strings to strings; got {_kind(metadata)}."
        )
    entries = []
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        where = f"{path}: tensor {_quote(name)}"
        if not isinstance(entry, dict):
            raise CheckpointFormatError(f"{where}: entry is {_kind(entry)}, not an object.")
        dtype_name = entry.get("dtype")
        if not isinstance(dtype_name, str) or dtype_name not in _SAFETENSORS_DTYPES:
            shown = _quote(dtype_name) if isinstance(dtype_name, str) else _kind(dtype_name)
            raise CheckpointFormatError(
                f"{where}: field 'dtype' is {shown}; supported: {sorted(_SAFETENSORS_DTYPES)}."
            )
        shape = _checked_dims(entry.get("shape"), where, "field 'shape'")
        offsets = entry.get("data_offsets")
        if not (
            isinstance(offsets, list)
            and len(offsets) == 2
            and all(type(o) is int and 0 <= o < 2**64 for o in offsets)
        ):
            raise CheckpointFormatError(
                f"{where}: field 'data_offsets' must be [begin, end], two integers in "
                f"[0, 2**64); got {_kind(offsets)}."
            )
        begin, end = offsets
        itemsize = np.dtype(_SAFETENSORS_DTYPES[dtype_name]).itemsize
        nbytes = itemsize * _element_count(shape, itemsize, where)
        if not begin <= end <= body_size or end - begin != nbytes:
            raise CheckpointFormatError(
                f"{where} (shape {shape}, {dtype_name}) has an invalid byte range "
                f"[{begin}, {end}) in a {body_size}-byte body."
            )
        entries.append((begin, end, name, dtype_name, shape))
    entries.sort(key=lambda e: (e[0], e[1]))
    covered = 0
    for begin, end, name, _, _ in entries:
        if begin != covered:
            problem = "overlaps the tensor before it" if begin < covered else "leaves a gap"
            raise CheckpointFormatError(
                f"{path}: tensor {_quote(name)}'s byte range [{begin}, {end}) {problem}: "
                "tensors must tile the body in order."
            )
        covered = end
    if covered != body_size:
        raise CheckpointFormatError(
            f"{path}: the tensors cover {covered} bytes of a {body_size}-byte body "
            "(trailing bytes or a truncated header)."
        )
    return entries


def _read_into(f, array: np.ndarray, path: str, name: str):
    view = memoryview(array.reshape(-1).view(np.uint8))
    filled = 0
    while filled < len(view):
        count = f.readinto(view[filled:])
        if not count:
            raise CheckpointFormatError(f"{path}: file ends inside tensor {_quote(name)}.")
        filled += count


def read_safetensors(path) -> dict[str, np.ndarray]:
    """All tensors of one `.safetensors` file, as numpy arrays."""
    path = os.fspath(path)
    with open(path, "rb") as f:
        file_size = os.fstat(f.fileno()).st_size
        prefix = f.read(8)
        if len(prefix) < 8:
            raise CheckpointFormatError(f"{path}: too short to be a safetensors file.")
        (header_size,) = struct.unpack("<Q", prefix)
        if header_size > min(_MAX_SAFETENSORS_HEADER, file_size - 8):
            raise CheckpointFormatError(
                f"{path}: header of {header_size} bytes does not fit in a {file_size}-byte "
                f"file, or is over {_MAX_SAFETENSORS_HEADER} bytes (truncated, or not a "
                "safetensors file)."
            )
        header = _parse_json(f.read(header_size), path, "safetensors header")
        entries = _safetensors_entries(path, header, file_size - 8 - header_size)
        tensors = {}
        for _, _, name, dtype_name, shape in entries:
            array = np.empty(shape, np.dtype(_SAFETENSORS_DTYPES[dtype_name]).newbyteorder("<"))
            _read_into(f, array, path, name)
            array = array.astype(array.dtype.newbyteorder("="), copy=False)
            tensors[name] = _bfloat16_to_float32(array) if dtype_name == "BF16" else array
    return tensors


def _new_file_mode() -> int:
    """0o666 less the process umask: the mode `open()` would have given a new file."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


def write_safetensors(tensors: dict[str, np.ndarray], path, metadata=None) -> str:
    """Writes `tensors` as one `.safetensors` file (atomically) and returns its path."""
    path = os.fspath(path)
    arrays = {}
    for name, value in tensors.items():
        if not isinstance(name, str) or name == "__metadata__":
            raise ValueError(
                f"Tensor names must be strings other than '__metadata__'; got {_kind(name)}."
            )
        array = np.ascontiguousarray(value)
        if array.dtype not in _NUMPY_TO_SAFETENSORS:
            raise ValueError(f"Tensor {name!r} has dtype {array.dtype}, which safetensors lacks.")
        arrays[name] = array
    header, offset = {}, 0
    for name in sorted(arrays):
        nbytes = arrays[name].nbytes
        header[name] = {
            "dtype": _NUMPY_TO_SAFETENSORS[arrays[name].dtype],
            "shape": list(arrays[name].shape),
            "data_offsets": [offset, offset + nbytes],
        }
        offset += nbytes
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    encoded = json.dumps(header, separators=(",", ":")).encode("utf-8")
    encoded += b" " * (-len(encoded) % 8)  # The format aligns the body to 8 bytes.
    directory, base = os.path.split(os.path.abspath(path))
    descriptor, partial = tempfile.mkstemp(prefix=f".{base}.", suffix=".partial", dir=directory)
    try:
        with os.fdopen(descriptor, "wb") as f:
            f.write(struct.pack("<Q", len(encoded)))
            f.write(encoded)
            for name in sorted(arrays):
                little = arrays[name].astype(arrays[name].dtype.newbyteorder("<"), copy=False)
                f.write(little.reshape(-1).view(np.uint8))
            f.flush()
            os.fchmod(f.fileno(), _new_file_mode())
            os.fsync(f.fileno())
        os.replace(partial, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(partial)
        raise
    return path


# -- pytorch_model.bin -----------------------------------------------------------


class _Marker:
    """A global a state-dict pickle may name. Inert: the interpreter dispatches on it."""

    __slots__ = ("name",)

    def __init__(self, name):
        self.name = name


_ORDERED_DICT = _Marker("collections.OrderedDict")
_REBUILD_TENSOR = _Marker("torch._utils._rebuild_tensor_v2")
_REBUILD_PARAMETER = _Marker("torch._utils._rebuild_parameter")
_GLOBALS = {
    ("collections", "OrderedDict"): _ORDERED_DICT,
    ("torch._utils", "_rebuild_tensor_v2"): _REBUILD_TENSOR,
    ("torch._utils", "_rebuild_tensor"): _REBUILD_TENSOR,
    ("torch._utils", "_rebuild_parameter"): _REBUILD_PARAMETER,
}
_STORAGE_TYPES = {("torch", name): _Marker(name) for name in _TORCH_STORAGES}


class _Storage:
    """One typed storage of the archive: the raw bytes of its `data/<key>` entry."""

    __slots__ = ("type_name", "dtype", "data", "numel")

    def __init__(self, type_name: str, data: bytes, numel: int):
        self.type_name = type_name
        self.dtype = np.dtype(_TORCH_STORAGES[type_name]).newbyteorder("<")
        self.data = data
        self.numel = numel


class _NestedTuple(tuple):
    """A tuple holding a tuple (a tensor's rebuild arguments); these may nest no further."""

    __slots__ = ()


def _tensor_view(storage, offset, size, stride, where: str) -> np.ndarray:
    """A copy of the view (`offset`, `size`, `stride`, in elements) of one storage."""
    if type(storage) is not _Storage:
        raise CheckpointFormatError(
            f"{where}: a tensor is rebuilt from {_kind(storage)}, not from one of the "
            "archive's storages."
        )
    size = _checked_dims(size, where, "a tensor's size")
    stride = _checked_dims(stride, where, "a tensor's stride")
    if type(offset) is not int or not 0 <= offset <= storage.numel:
        shown = offset if type(offset) is int else _kind(offset)
        raise CheckpointFormatError(
            f"{where}: a tensor's offset ({shown}) lies outside its storage of "
            f"{storage.numel} elements."
        )
    if len(size) != len(stride):
        raise CheckpointFormatError(f"{where}: a tensor's size and stride differ in rank.")
    itemsize = storage.dtype.itemsize
    count = _element_count(size, itemsize, where)
    if count == 0:
        view = np.empty(size, storage.dtype)
    else:
        last = offset + sum((n - 1) * s for n, s in zip(size, stride))
        if any(s == 0 and n > 1 for n, s in zip(size, stride)) or count > storage.numel:
            raise CheckpointFormatError(
                f"{where}: a tensor of shape {size} with strides {stride} repeats elements of "
                f"its storage of {storage.numel} elements."
            )
        if (last + 1) * itemsize > len(storage.data):
            raise CheckpointFormatError(
                f"{where}: a tensor of shape {size} with strides {stride} at offset {offset} "
                f"reaches past its storage of {storage.numel} elements."
            )
        span = np.frombuffer(
            storage.data, storage.dtype, count=last - offset + 1, offset=offset * itemsize
        )
        # A dimension of size 1 never steps, so its stride (unchecked, maybe huge) is moot.
        strides = tuple(s * itemsize if n > 1 else 0 for n, s in zip(size, stride))
        view = np.lib.stride_tricks.as_strided(span, shape=size, strides=strides, writeable=False)
    out = view.astype(storage.dtype.newbyteorder("="))
    return _bfloat16_to_float32(out) if storage.type_name == "BFloat16Storage" else out


class _Archive:
    """A torch zip archive whose entries are read under one decompression budget."""

    def __init__(self, path: str, archive: zipfile.ZipFile, budget: int):
        self.path = path
        self.archive = archive
        self.budget_left = budget

    def read(self, name: str, limit: int) -> bytes:
        try:
            info = self.archive.getinfo(name)
        except KeyError:
            raise CheckpointFormatError(f"{self.path}: missing entry {_quote(name)}.") from None
        allowed = min(limit, self.budget_left)
        if info.file_size > allowed:
            raise CheckpointFormatError(
                f"{self.path}: entry {_quote(name)} holds {info.file_size} bytes; at most "
                f"{allowed} more may be read from a file of this size."
            )
        with self.archive.open(info) as f:
            # read(n) returns at most n bytes however large the entry really inflates.
            data = f.read(allowed + 1)
        if len(data) > allowed:
            raise CheckpointFormatError(
                f"{self.path}: entry {_quote(name)} inflates past {allowed} bytes."
            )
        self.budget_left -= len(data)
        return data


class _StateDictUnpickler:
    """Runs the opcodes of a torch state-dict pickle, and no others (see the module doc)."""

    def __init__(self, data: bytes, archive: _Archive, prefix: str, budget: int):
        self.data = data
        self.archive = archive
        self.prefix = prefix
        self.where = archive.path
        self.budget_left = budget
        self.pos = 0
        self.stack = []
        self.marks = []
        self.memo = {}
        self.storages = {}
        self.opcodes = 0

    def fail(self, problem: str):
        raise CheckpointFormatError(f"{self.where}: data.pkl, byte {self.pos}: {problem}")

    def charge(self, nbytes: int):
        self.budget_left -= nbytes
        if self.budget_left < 0:
            self.fail("the pickle builds more than a file of this size may.")

    def take(self, count: int) -> bytes:
        end = self.pos + count
        if end > len(self.data):
            self.fail("truncated.")
        chunk = self.data[self.pos : end]
        self.pos = end
        return chunk

    def unsigned(self, count: int) -> int:
        return int.from_bytes(self.take(count), "little")

    def pop_mark(self) -> list:
        if not self.marks:
            self.fail("no MARK to close.")
        items, self.stack = self.stack, self.marks.pop()
        return items

    def pop(self):
        if not self.stack:
            self.fail("stack underflow.")
        return self.stack.pop()

    def text(self, count: int) -> str:
        raw = self.take(count)
        self.charge(len(raw))
        try:
            return raw.decode("utf-8", "surrogatepass")
        except UnicodeDecodeError:
            self.fail("a string is not UTF-8.")

    def line(self) -> str:
        end = self.data.find(b"\n", self.pos, self.pos + 256)
        if end < 0:
            self.fail("a GLOBAL name is unterminated or over 256 bytes.")
        return self.text(end - self.pos + 1)[:-1]

    def push_global(self, module, name):
        if not isinstance(module, str) or not isinstance(name, str):
            self.fail("a global is named by non-strings.")
        marker = _GLOBALS.get((module, name)) or _STORAGE_TYPES.get((module, name))
        if marker is None:
            raise CheckpointFormatError(
                f"{self.where}: refusing to unpickle {_shown(f'{module}.{name}')}: a weights file may hold only tensors, and loading "
                "anything else could run code. Re-save the weights as model.safetensors."
            )
        self.stack.append(marker)

    def push_tuple(self, items):
        self.charge(8 * len(items))
        if any(type(item) is _NestedTuple for item in items):
            self.fail("tuples nest more than two deep.")
        nested = any(type(item) is tuple for item in items)
        self.stack.append(_NestedTuple(items) if nested else tuple(items))

    def memo_put(self, index: int):
        if index > self.opcodes or not self.stack:
            self.fail(f"memo index {index} before {self.opcodes} opcodes, or an empty stack.")
        self.memo[index] = self.stack[-1]

    def memo_get(self, index: int):
        if index not in self.memo:
            self.fail(f"memo index {index} was never stored.")
        self.stack.append(self.memo[index])

    def set_items(self, items: list):
        target = self.pop()
        if type(target) not in (dict, collections.OrderedDict) or len(items) % 2:
            self.fail(f"SETITEM(S) on {_kind(target)}, or an odd number of items.")
        self.charge(16 * len(items))
        for key, value in zip(items[::2], items[1::2]):
            if type(key) is not str:
                self.fail(f"a dict key is {_kind(key)}, not a string.")
            target[key] = value
        self.stack.append(target)

    def storage(self, pid) -> _Storage:
        if not (
            type(pid) is tuple
            and len(pid) == 5
            and type(pid[0]) is str
            and pid[0] == "storage"
            and any(pid[1] is marker for marker in _STORAGE_TYPES.values())
            and type(pid[2]) is str
            and type(pid[3]) is str
            and type(pid[4]) is int
            and pid[4] >= 0
        ):
            self.fail(
                f"a persistent id is {_kind(pid)}, not torch's ('storage', <storage type>, "
                "key, location, element count)."
            )
        _, storage_type, key, _, numel = pid
        cached = self.storages.get(key)
        if cached is None:
            dtype = np.dtype(_TORCH_STORAGES[storage_type.name])
            entry = f"{self.prefix}/data/{key}"
            data = self.archive.read(entry, numel * dtype.itemsize)
            if len(data) != numel * dtype.itemsize:
                self.fail(
                    f"storage {_quote(entry)} holds {len(data)} bytes, but is declared as "
                    f"{numel} elements of {dtype.itemsize} bytes."
                )
            cached = self.storages[key] = _Storage(storage_type.name, data, numel)
        if cached.type_name != storage_type.name or cached.numel != numel:
            self.fail(f"storage {_quote(key)} is declared twice with different types or sizes.")
        return cached

    def reduce(self, function, args):
        if type(args) not in (tuple, _NestedTuple):
            self.fail(f"REDUCE arguments are {_kind(args)}, not a tuple.")
        if function is _ORDERED_DICT and args == ():
            self.charge(256)
            return collections.OrderedDict()
        if function is _REBUILD_TENSOR and 4 <= len(args) <= 7:
            tensor = _tensor_view(*args[:4], where=f"{self.where}: data.pkl, byte {self.pos}")
            self.charge(tensor.nbytes)
            return tensor
        if function is _REBUILD_PARAMETER and 1 <= len(args) <= 3 and type(args[0]) is np.ndarray:
            return args[0]
        self.fail(f"REDUCE of {_kind(function)} with {_kind(args)} is not part of a state dict.")

    def build(self):
        state, target = self.pop(), self.pop()
        # torch sets `_metadata` (module versions) on the state dict; nothing else has state.
        if type(target) is not collections.OrderedDict or type(state) is not dict:
            self.fail(f"BUILD of {_kind(target)} with {_kind(state)}.")
        self.stack.append(target)

    def step(self, op: int) -> bool:
        """Runs one opcode; False once STOP is reached."""
        stack = self.stack
        if op == 0x71:  # BINPUT
            self.memo_put(self.unsigned(1))
        elif op == 0x72:  # LONG_BINPUT
            self.memo_put(self.unsigned(4))
        elif op == 0x94:  # MEMOIZE
            self.memo_put(len(self.memo))
        elif op == 0x68:  # BINGET
            self.memo_get(self.unsigned(1))
        elif op == 0x6A:  # LONG_BINGET
            self.memo_get(self.unsigned(4))
        elif op == 0x28:  # MARK
            if len(self.marks) >= _MAX_MARK_DEPTH:
                self.fail(f"MARKs nest more than {_MAX_MARK_DEPTH} deep.")
            self.marks.append(stack)
            self.stack = []
        elif op == 0x58:  # BINUNICODE
            stack.append(self.text(self.unsigned(4)))
        elif op == 0x8C:  # SHORT_BINUNICODE
            stack.append(self.text(self.unsigned(1)))
        elif op == 0x4B:  # BININT1
            stack.append(self.unsigned(1))
        elif op == 0x4D:  # BININT2
            stack.append(self.unsigned(2))
        elif op == 0x4A:  # BININT
            stack.append(int.from_bytes(self.take(4), "little", signed=True))
        elif op == 0x8A:  # LONG1
            count = self.unsigned(1)
            if count > 8:
                self.fail("an integer over 64 bits.")
            stack.append(int.from_bytes(self.take(count), "little", signed=True))
        elif op == 0x47:  # BINFLOAT
            stack.append(struct.unpack(">d", self.take(8))[0])
        elif op == 0x29:  # EMPTY_TUPLE
            stack.append(())
        elif op == 0x74:  # TUPLE
            self.push_tuple(self.pop_mark())
        elif 0x85 <= op <= 0x87:  # TUPLE1..TUPLE3
            count = op - 0x84
            if len(stack) < count:
                self.fail("stack underflow.")
            items = stack[-count:]
            del stack[-count:]
            self.push_tuple(items)
        elif op == 0x7D:  # EMPTY_DICT
            self.charge(256)
            stack.append({})
        elif op == 0x73:  # SETITEM
            value, key = self.pop(), self.pop()
            self.set_items([key, value])
        elif op == 0x75:  # SETITEMS
            self.set_items(self.pop_mark())
        elif op in (0x4E, 0x88, 0x89):  # NONE, NEWTRUE, NEWFALSE
            stack.append({0x4E: None, 0x88: True, 0x89: False}[op])
        elif op == 0x63:  # GLOBAL
            self.push_global(self.line(), self.line())
        elif op == 0x93:  # STACK_GLOBAL
            name, module = self.pop(), self.pop()
            self.push_global(module, name)
        elif op == 0x51:  # BINPERSID
            stack.append(self.storage(self.pop()))
        elif op == 0x52:  # REDUCE
            args, function = self.pop(), self.pop()
            self.stack.append(self.reduce(function, args))
        elif op == 0x62:  # BUILD
            self.build()
        elif op == 0x80:  # PROTO
            self.take(1)
        elif op == 0x95:  # FRAME (a size hint for buffered readers)
            self.take(8)
        elif op == 0x2E:  # STOP
            return False
        else:
            self.fail(f"opcode 0x{op:02x} is not used by torch state dicts.")
        return True

    def load(self):
        while True:
            if self.pos >= len(self.data):
                self.fail("the pickle ends without STOP.")
            op = self.data[self.pos]
            self.pos += 1
            self.opcodes += 1
            self.charge(64)
            if not self.step(op):
                break
        if len(self.stack) != 1 or self.marks:
            self.fail("STOP leaves other than one object.")
        return self.stack[0]


# What a malformed zip can raise from zipfile, zlib, bz2 and lzma.
_ZIP_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, lzma.LZMAError, EOFError,
               NotImplementedError, RuntimeError, ValueError, OSError, struct.error, IndexError,
               KeyError)


def read_pytorch_bin(path) -> dict[str, np.ndarray]:
    """The state dict in a torch zip-format `.bin`/`.pt` file, without executing code."""
    path = os.fspath(path)
    file_size = os.path.getsize(path)
    if not zipfile.is_zipfile(path):
        raise CheckpointFormatError(
            f"{path} is not a zip-format torch file (torch >= 1.6 writes that). Older "
            "pickle-only files are not read, since that needs running their code: "
            "re-save with a current torch or as model.safetensors."
        )
    budget = read_budget(file_size)
    try:
        with zipfile.ZipFile(path) as zipped:
            names = set(zipped.namelist())
            pickles = [n for n in names if n.endswith("/data.pkl")]
            if len(pickles) != 1:
                raise CheckpointFormatError(
                    f"{path}: expected one data.pkl, found {len(pickles)}."
                )
            prefix = pickles[0][: -len("/data.pkl")]
            archive = _Archive(path, zipped, budget)
            if f"{prefix}/byteorder" in names:
                if archive.read(f"{prefix}/byteorder", 16) != b"little":
                    raise CheckpointFormatError(f"{path}: only little-endian storages are read.")
            pickled = archive.read(pickles[0], min(_MAX_PICKLE_BYTES, 4 * file_size + 2**20))
            state = _StateDictUnpickler(pickled, archive, prefix, budget).load()
    except CheckpointFormatError:
        raise
    except _ZIP_ERRORS as e:
        raise CheckpointFormatError(
            f"{path}: unreadable zip archive ({type(e).__name__}: {str(e)[:200]})."
        ) from None
    if type(state) not in (dict, collections.OrderedDict) or not all(
        type(v) is np.ndarray for v in state.values()
    ):
        raise CheckpointFormatError(
            f"{path}: expected a dict of named tensors (a state dict); got {_kind(state)}."
        )
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


def _shard_path(index_path: str, directory: str, shard: str) -> str:
    """The real path of a shard the index names: a plain file name inside `directory`."""
    if (
        not shard
        or shard in (".", "..")
        or "\0" in shard
        or "/" in shard
        or "\\" in shard
        or os.sep in shard
        or (os.altsep and os.altsep in shard)
        or os.path.isabs(shard)
    ):
        raise CheckpointFormatError(
            f"{index_path}: shard {_quote(shard)} is not a plain file name in the model directory."
        )
    shard_path = os.path.join(directory, shard)
    if not os.path.lexists(shard_path):
        raise FileNotFoundError(f"{index_path} lists shard {_quote(shard)}, which is missing.")
    root = os.path.realpath(directory)
    resolved = os.path.realpath(shard_path)
    if (
        resolved == root
        or os.path.commonpath([root, resolved]) != root
        or not os.path.isfile(resolved)
    ):
        raise CheckpointFormatError(
            f"{index_path}: shard {_quote(shard)} resolves to a file outside the model "
            "directory, or to something other than a file."
        )
    return resolved


def _read_sharded(index_path, read):
    with open(index_path, "rb") as f:
        raw = f.read(_MAX_INDEX_BYTES + 1)
    if len(raw) > _MAX_INDEX_BYTES:
        raise CheckpointFormatError(f"{index_path}: over {_MAX_INDEX_BYTES} bytes.")
    index = _parse_json(raw, index_path, "shard index")
    weight_map = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(weight_map, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in weight_map.items()
    ):
        raise CheckpointFormatError(
            f"{index_path}: field 'weight_map' must map tensor names to shard file names."
        )
    directory = os.path.dirname(index_path)
    shards = {shard: _shard_path(index_path, directory, shard) for shard in weight_map.values()}
    tensors, found_in = {}, {}
    for shard in sorted(shards):
        for name, array in read(shards[shard]).items():
            if name in found_in:
                raise CheckpointFormatError(
                    f"{index_path}: tensor {_quote(name)} is in both {found_in[name]} and {shard}."
                )
            if weight_map.get(name, shard) != shard:
                raise CheckpointFormatError(
                    f"{index_path}: tensor {_quote(name)} is in {shard}, but the index maps it "
                    f"to {_quote(weight_map[name])}."
                )
            found_in[name] = shard
            tensors[name] = array
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

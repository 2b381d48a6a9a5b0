"""`TensorProto` <-> numpy for both ends of the wire, bounded and checked.

`tf.make_ndarray` trusts the proto: a shape of [2**40] with one value asks
for terabytes, a short `tensor_content` raises deep inside numpy. Here every
proto is checked first (known dtype, rank, non-negative dims, its size within
`max_bytes`, value count consistent with the shape) and a bad one raises
`TensorDecodeError`; the server answers that as INVALID_ARGUMENT naming the
input, the client as DATA_LOSS naming the output. Typed values follow
TensorFlow's rule: none means zeros, fewer than the elements repeat the last.
"""

from __future__ import annotations

import math

import numpy as np
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2

# A decoded tensor takes at most this much memory by default (256 MiB).
MAX_TENSOR_BYTES = 1 << 28
# numpy's limit is 64 dimensions; no signature of ours takes more than 3.
MAX_RANK = 32
# What one string costs in an object array, besides its bytes.
_POINTER_BYTES = 8

# dtype enum -> (numpy dtype, TensorProto field holding typed values).
# float16 travels as 16-bit patterns in `half_val`.
NUMPY_DTYPES = {
    types_pb2.DT_FLOAT: (np.dtype("float32"), "float_val"),
    types_pb2.DT_DOUBLE: (np.dtype("float64"), "double_val"),
    types_pb2.DT_HALF: (np.dtype("float16"), "half_val"),
    types_pb2.DT_INT8: (np.dtype("int8"), "int_val"),
    types_pb2.DT_INT16: (np.dtype("int16"), "int_val"),
    types_pb2.DT_INT32: (np.dtype("int32"), "int_val"),
    types_pb2.DT_INT64: (np.dtype("int64"), "int64_val"),
    types_pb2.DT_UINT8: (np.dtype("uint8"), "int_val"),
    types_pb2.DT_UINT16: (np.dtype("uint16"), "int_val"),
    types_pb2.DT_UINT32: (np.dtype("uint32"), "uint32_val"),
    types_pb2.DT_UINT64: (np.dtype("uint64"), "uint64_val"),
    types_pb2.DT_BOOL: (np.dtype("bool"), "bool_val"),
}
_ENUM_BY_NUMPY = {numpy_dtype: enum for enum, (numpy_dtype, _) in NUMPY_DTYPES.items()}


class TensorDecodeError(ValueError):
    """A TensorProto that does not describe a tensor (the message says why)."""


def numpy_dtype_name(enum: int) -> str:
    """A dtype enum's name as numpy spells it for numbers ("float32"), else `dtype_name`'s."""
    return NUMPY_DTYPES[enum][0].name if enum in NUMPY_DTYPES else dtype_name(enum)


def dtype_name(enum: int) -> str:
    """TF's name of a dtype enum ("float", "int32", "string"), as TF Serving's messages say it."""
    if enum not in types_pb2.DataType.values():
        return str(enum)
    name = types_pb2.DataType.Name(enum)
    return name[3:].lower() if name.startswith("DT_") else name


def tensor_shape(proto: tensor_pb2.TensorProto,
                 max_bytes: int = MAX_TENSOR_BYTES) -> tuple[int, ...]:
    """The shape `proto` declares, checked: known rank, dims >= 0, its size within `max_bytes`."""
    if proto.tensor_shape.unknown_rank:
        raise TensorDecodeError("a tensor's shape must be fully known")
    if len(proto.tensor_shape.dim) > MAX_RANK:
        raise TensorDecodeError(f"rank {len(proto.tensor_shape.dim)} is above {MAX_RANK}")
    dims = tuple(dim.size for dim in proto.tensor_shape.dim)
    if any(size < 0 for size in dims):
        raise TensorDecodeError(f"negative dimension in shape {list(dims)}")
    itemsize = (
        NUMPY_DTYPES[proto.dtype][0].itemsize if proto.dtype in NUMPY_DTYPES else _POINTER_BYTES
    )
    if math.prod(dims) * itemsize > max_bytes:
        raise TensorDecodeError(
            f"shape {list(dims)} of {dtype_name(proto.dtype)} takes more than {max_bytes} bytes"
        )
    return dims


def _filled(array: np.ndarray, count: int, what: str) -> np.ndarray:
    """TF's rule for typed values: none -> zeros; fewer than `count` -> the last repeats."""
    if len(array) > count:
        raise TensorDecodeError(f"{len(array)} {what} for a tensor of {count} elements")
    if len(array) == count:
        return array
    if len(array) == 0:
        return np.zeros(count, dtype=array.dtype) if array.dtype != object else np.full(
            count, b"", dtype=object)
    return np.concatenate([array, np.repeat(array[-1:], count - len(array))])


def make_ndarray(proto: tensor_pb2.TensorProto,
                 max_bytes: int = MAX_TENSOR_BYTES) -> np.ndarray:
    """The numpy value of `proto`; strings as an object array of bytes.

    Raises `TensorDecodeError` for a proto that is malformed or larger than
    `max_bytes` once decoded.
    """
    dims = tensor_shape(proto, max_bytes)
    count = math.prod(dims)
    if proto.dtype == types_pb2.DT_STRING:
        if proto.tensor_content:
            raise TensorDecodeError(
                "a string tensor carries its values in string_val, not tensor_content"
            )
        array = np.empty(len(proto.string_val), dtype=object)
        array[:] = list(proto.string_val)
        return _filled(array, count, "strings").reshape(dims)
    if proto.dtype == types_pb2.DT_BFLOAT16:
        raise TensorDecodeError("dtype bfloat16 is not supported on the wire here")
    if proto.dtype not in NUMPY_DTYPES:
        raise TensorDecodeError(f"unsupported dtype {dtype_name(proto.dtype)}")
    numpy_dtype, field = NUMPY_DTYPES[proto.dtype]
    if proto.tensor_content:
        expected = count * numpy_dtype.itemsize
        if len(proto.tensor_content) != expected:
            raise TensorDecodeError(
                f"tensor_content holds {len(proto.tensor_content)} bytes; shape {list(dims)} "
                f"of {dtype_name(proto.dtype)} needs {expected}"
            )
        # tensor_content is little-endian whatever the host.
        array = np.frombuffer(proto.tensor_content, dtype=numpy_dtype.newbyteorder("<"))
        return array.astype(numpy_dtype, copy=False).reshape(dims)
    values = getattr(proto, field)
    if field == "half_val":
        typed = np.array(values, dtype=np.int64).astype(np.uint16).view(np.float16)
    else:
        typed = np.array(values)
        if field == "int_val" and typed.size and numpy_dtype.itemsize < 4:
            info = np.iinfo(numpy_dtype)
            if typed.min() < info.min or typed.max() > info.max:
                raise TensorDecodeError(f"value out of range for {dtype_name(proto.dtype)}")
        typed = typed.astype(numpy_dtype)
    return _filled(typed, count, "values").reshape(dims)


def make_tensor_proto(values, name: str = "tensor") -> tensor_pb2.TensorProto:
    """`values` as a TensorProto: numbers in `tensor_content`, strings in `string_val`.

    Strings (`str`, sent UTF-8 encoded, or `bytes`) may come as lists or
    arrays of str, bytes or object; numbers as an array of a supported dtype
    (bool, [u]int8-64, float16/32/64). ValueError, naming `name`, otherwise.
    """
    array = np.asarray(values)
    shape = tensor_shape_pb2.TensorShapeProto(
        dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=size) for size in array.shape]
    )
    if array.dtype.kind in "OSU":
        strings = []
        for item in array.reshape(-1):
            if isinstance(item, str):
                strings.append(item.encode("utf-8"))
            elif isinstance(item, bytes):
                strings.append(item)
            else:
                raise ValueError(f"{name!r} mixes strings with {type(item).__name__} values "
                                 f"({item!r}); give only str or bytes.")
        return tensor_pb2.TensorProto(
            dtype=types_pb2.DT_STRING, tensor_shape=shape, string_val=strings
        )
    native = array.dtype.newbyteorder("=")
    if native not in _ENUM_BY_NUMPY:
        raise ValueError(
            f"{name!r} has dtype {array.dtype}, which has no TensorProto form here; use one of "
            f"{sorted(str(d) for d in _ENUM_BY_NUMPY)} or strings."
        )
    content = array.astype(native.newbyteorder("<"), copy=False).tobytes()
    return tensor_pb2.TensorProto(
        dtype=_ENUM_BY_NUMPY[native], tensor_shape=shape, tensor_content=content
    )

"""`TensorProto` <-> numpy, bounded and checked: requests come from any client.

`tf.make_ndarray` trusts the proto: a shape of [2**40] with one value asks
for terabytes, a short `tensor_content` raises deep inside numpy. Here every
proto is checked first (known dtype, non-negative dims, element count and
bytes within limits, value count consistent with the shape) and a bad one
answers INVALID_ARGUMENT naming the tensor.
"""

from __future__ import annotations

import math

import numpy as np
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2

from serving.errors import invalid_argument

# A decoded tensor holds at most this many elements (64M: 256 MB of float32).
MAX_ELEMENTS = 1 << 26

# dtype enum -> (numpy dtype, TensorProto field holding typed values).
# bfloat16 and half travel as 16-bit patterns in `half_val`.
NUMPY_DTYPES = {
    types_pb2.DT_FLOAT: (np.dtype("<f4"), "float_val"),
    types_pb2.DT_DOUBLE: (np.dtype("<f8"), "double_val"),
    types_pb2.DT_INT32: (np.dtype("<i4"), "int_val"),
    types_pb2.DT_UINT8: (np.dtype("u1"), "int_val"),
    types_pb2.DT_INT16: (np.dtype("<i2"), "int_val"),
    types_pb2.DT_INT8: (np.dtype("i1"), "int_val"),
    types_pb2.DT_UINT16: (np.dtype("<u2"), "int_val"),
    types_pb2.DT_INT64: (np.dtype("<i8"), "int64_val"),
    types_pb2.DT_BOOL: (np.dtype("?"), "bool_val"),
    types_pb2.DT_HALF: (np.dtype("<f2"), "half_val"),
    types_pb2.DT_UINT32: (np.dtype("<u4"), "uint32_val"),
    types_pb2.DT_UINT64: (np.dtype("<u8"), "uint64_val"),
}
_ENUM_BY_NUMPY = {
    numpy_dtype.newbyteorder("="): enum for enum, (numpy_dtype, _) in NUMPY_DTYPES.items()
}


def dtype_name(enum: int) -> str:
    """TF's name for a dtype enum ("int32", "string"), or its number if unknown."""
    name = types_pb2.DataType.Name(enum) if enum in types_pb2.DataType.values() else str(enum)
    return name[3:].lower() if name.startswith("DT_") else name


# numpy's limit is 64 dimensions; no signature of ours takes more than 3.
MAX_RANK = 32


def tensor_shape(proto: tensor_pb2.TensorProto, name: str = "tensor") -> tuple[int, ...]:
    """The shape `proto` declares, checked (known rank, dims >= 0, bounded size)."""
    if proto.tensor_shape.unknown_rank:
        raise invalid_argument(f"Input \"{name}\": a tensor's shape must be fully known.")
    if len(proto.tensor_shape.dim) > MAX_RANK:
        raise invalid_argument(
            f"Input \"{name}\": rank {len(proto.tensor_shape.dim)} is above {MAX_RANK}."
        )
    dims = tuple(dim.size for dim in proto.tensor_shape.dim)
    if any(size < 0 for size in dims):
        raise invalid_argument(f"Input \"{name}\": negative dimension in shape {list(dims)}.")
    if math.prod(dims) > MAX_ELEMENTS:
        raise invalid_argument(
            f"Input \"{name}\": shape {list(dims)} has more than {MAX_ELEMENTS} elements."
        )
    return dims


def _filled(values, count, name, what):
    """TF's rule for typed values: none -> zeros; fewer than `count` -> the last repeats."""
    if len(values) > count:
        raise invalid_argument(
            f"Input \"{name}\": {len(values)} {what} for a tensor of {count} elements."
        )
    return values


def to_ndarray(proto: tensor_pb2.TensorProto, name: str = "tensor") -> np.ndarray:
    """The numpy value of `proto`; strings as an object array of bytes."""
    dims = tensor_shape(proto, name)
    count = math.prod(dims)
    if proto.dtype == types_pb2.DT_STRING:
        if proto.tensor_content:
            raise invalid_argument(
                f"Input \"{name}\": a string tensor carries its values in string_val, "
                "not tensor_content."
            )
        values = _filled(proto.string_val, count, name, "strings")
        array = np.empty(count, dtype=object)
        if values:
            array[:len(values)] = list(values)
            array[len(values):] = values[-1]
        else:
            array[:] = b""
        return array.reshape(dims)
    if proto.dtype == types_pb2.DT_BFLOAT16:
        raise invalid_argument(f"Input \"{name}\": dtype bfloat16 is not accepted in requests.")
    if proto.dtype not in NUMPY_DTYPES:
        raise invalid_argument(
            f"Input \"{name}\": unsupported dtype {dtype_name(proto.dtype)}."
        )
    numpy_dtype, field = NUMPY_DTYPES[proto.dtype]
    if proto.tensor_content:
        expected = count * numpy_dtype.itemsize
        if len(proto.tensor_content) != expected:
            raise invalid_argument(
                f"Input \"{name}\": tensor_content holds {len(proto.tensor_content)} bytes; "
                f"shape {list(dims)} of {dtype_name(proto.dtype)} needs {expected}."
            )
        array = np.frombuffer(proto.tensor_content, dtype=numpy_dtype)
    else:
        values = _filled(getattr(proto, field), count, name, "values")
        array = np.zeros(count, dtype=numpy_dtype)
        if values:
            typed = np.asarray(values)
            if field == "half_val":
                typed = typed.astype("<u2").view(numpy_dtype)
            with np.errstate(over="ignore"):
                if field == "int_val" and numpy_dtype.itemsize < 4:
                    info = np.iinfo(numpy_dtype)
                    if typed.min() < info.min or typed.max() > info.max:
                        raise invalid_argument(
                            f"Input \"{name}\": value out of range for "
                            f"{dtype_name(proto.dtype)}."
                        )
                array[:len(values)] = typed.astype(numpy_dtype)
            array[len(values):] = array[len(values) - 1]
    return array.astype(numpy_dtype.newbyteorder("="), copy=False).reshape(dims)


def to_tensor_proto(array) -> tensor_pb2.TensorProto:
    """`array` as a `TensorProto`: numbers in `tensor_content`, strings in `string_val`."""
    array = np.asarray(array)
    shape = tensor_shape_pb2.TensorShapeProto(
        dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=size) for size in array.shape]
    )
    if array.dtype.kind in "OSU":
        values = [
            value.encode("utf-8") if isinstance(value, str) else bytes(value)
            for value in array.reshape(-1)
        ]
        return tensor_pb2.TensorProto(
            dtype=types_pb2.DT_STRING, tensor_shape=shape, string_val=values
        )
    enum = _ENUM_BY_NUMPY.get(array.dtype.newbyteorder("="))
    if enum is None:
        raise ValueError(f"No TensorProto dtype for numpy {array.dtype}.")
    content = np.ascontiguousarray(array, dtype=NUMPY_DTYPES[enum][0]).tobytes()
    return tensor_pb2.TensorProto(dtype=enum, tensor_shape=shape, tensor_content=content)

"""TensorProto decoding from any client: TF's rules, bounded, errors naming the input."""

import re

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from tensorflow.core.framework import tensor_pb2, types_pb2

from serving.tensors import (
    MAX_RANK,
    MAX_TENSOR_BYTES,
    TensorDecodeError,
    make_ndarray,
    make_tensor_proto,
)

DTYPES = ["float32", "float64", "int32", "int64", "uint8", "int8", "int16", "uint16",
          "uint32", "uint64", "bool", "float16"]


@settings(max_examples=60, deadline=None, database=None)
@given(st.sampled_from(DTYPES).flatmap(
    lambda dtype: hnp.arrays(dtype, hnp.array_shapes(min_dims=0, max_dims=3, min_side=0,
                                                     max_side=4))))
def test_any_array_round_trips_like_tensorflow(array):
    # From TF's own encoder (tensor_content or typed fields) and from ours.
    for proto in (tf.make_tensor_proto(array), make_tensor_proto(array)):
        decoded = make_ndarray(proto)
        assert decoded.dtype == array.dtype and decoded.shape == array.shape
        np.testing.assert_array_equal(decoded, array)
        np.testing.assert_array_equal(decoded, tf.make_ndarray(proto))


def test_strings_and_typed_values_follow_tensorflow():
    texts = np.array([["a", "Zoë"], ["東京", ""]], dtype=object)
    decoded = make_ndarray(tf.make_tensor_proto(texts))
    assert decoded.tolist() == [[b"a", "Zoë".encode()], ["東京".encode(), b""]]
    assert make_tensor_proto(decoded).string_val == tf.make_tensor_proto(texts).string_val

    # Typed values: none -> zeros; fewer than the elements -> the last one repeats.
    proto = tensor_pb2.TensorProto(dtype=types_pb2.DT_INT32)
    proto.tensor_shape.dim.add(size=4)
    np.testing.assert_array_equal(make_ndarray(proto), [0, 0, 0, 0])
    proto.int_val.extend([7, 8])
    np.testing.assert_array_equal(make_ndarray(proto), [7, 8, 8, 8])
    np.testing.assert_array_equal(make_ndarray(proto), tf.make_ndarray(proto))
    half = tensor_pb2.TensorProto(dtype=types_pb2.DT_HALF)
    half.half_val.append(int(np.float16(1.5).view("uint16")))
    assert make_ndarray(half) == np.float16(1.5)


def _proto(dtype=types_pb2.DT_FLOAT, dims=(2,), **fields):
    proto = tensor_pb2.TensorProto(dtype=dtype, **fields)
    for size in dims:
        proto.tensor_shape.dim.add(size=size)
    return proto


@pytest.mark.parametrize("proto, fragment", [
    (_proto(float_val=[1, 2, 3]), "3 values for a tensor of 2 elements"),
    (_proto(tensor_content=b"\0" * 7), "holds 7 bytes"),
    (_proto(dims=(-1,)), "negative dimension"),
    (_proto(dims=(2**31, 2**31)), f"takes more than {MAX_TENSOR_BYTES} bytes"),
    (_proto(dims=(1,) * (MAX_RANK + 1)), "rank"),
    (tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT,
                            tensor_shape={"unknown_rank": True}), "fully known"),
    (_proto(dtype=types_pb2.DT_BFLOAT16, half_val=[1]), "bfloat16"),
    (_proto(dtype=types_pb2.DT_RESOURCE), "unsupported dtype resource"),
    (_proto(dtype=99), "unsupported dtype 99"),
    (_proto(dtype=types_pb2.DT_UINT8, int_val=[300]), "out of range for uint8"),
    (_proto(dtype=types_pb2.DT_STRING, tensor_content=b"ab"), "string_val"),
    (_proto(dtype=types_pb2.DT_STRING, string_val=[b"a", b"b", b"c"]), "3 strings"),
])
def test_bad_protos_raise_tensor_decode_error(proto, fragment):
    with pytest.raises(TensorDecodeError, match=re.escape(fragment)):
        make_ndarray(proto)


def test_the_bound_is_the_callers():
    proto = _proto(dims=(1000,), float_val=[1.0])
    assert make_ndarray(proto, max_bytes=4000).shape == (1000,)
    with pytest.raises(TensorDecodeError, match="takes more than 3999 bytes"):
        make_ndarray(proto, max_bytes=3999)


def test_encoding_refuses_what_has_no_tensor_dtype():
    with pytest.raises(ValueError, match="complex"):
        make_tensor_proto(np.zeros(2, "complex64"))

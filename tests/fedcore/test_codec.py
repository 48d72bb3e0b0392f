"""The wire codec round-trips plain data, big integers and numeric arrays, and refuses the rest."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fedcore import codec

big_ints = st.integers(min_value=-(2**4096), max_value=2**4096)


@given(st.lists(big_ints, max_size=20))
def test_big_integers_round_trip(values: list[int]) -> None:
    assert codec.unpackb(codec.packb(values)) == values


@pytest.mark.parametrize(
    "dtype", ["float64", "float32", "int64", "int8", "uint16", "bool", "complex128"]
)
def test_numeric_arrays_round_trip_with_dtype_and_shape(dtype: str) -> None:
    arr = (np.arange(24).reshape(2, 3, 4) % 3).astype(dtype)
    out = codec.unpackb(codec.packb({"a": arr}))["a"]
    assert out.dtype == arr.dtype and out.shape == arr.shape
    np.testing.assert_array_equal(out, arr)
    assert out.flags.writeable


def test_object_arrays_and_arbitrary_objects_are_refused() -> None:
    with pytest.raises(codec.CodecError):
        codec.packb(np.array([1, "a"], dtype=object))
    with pytest.raises(codec.CodecError):
        codec.packb({"f": object()})


def test_unknown_extension_types_and_garbage_are_refused() -> None:
    import msgpack

    with pytest.raises(codec.CodecError):
        codec.unpackb(msgpack.packb(msgpack.ExtType(42, b"x")))
    with pytest.raises(codec.CodecError):
        codec.unpackb(b"\xc1")


def test_object_dtype_in_a_crafted_array_header_is_refused() -> None:
    import msgpack

    header = msgpack.packb(["|O", [1]])
    crafted = msgpack.packb(msgpack.ExtType(2, len(header).to_bytes(4, "big") + header + b"\0" * 8))
    with pytest.raises(codec.CodecError):
        codec.unpackb(crafted)


def test_numpy_scalars_and_tuples_become_plain_values() -> None:
    assert codec.unpackb(codec.packb([np.int64(3), np.float32(0.5), (1, 2)])) == [3, 0.5, [1, 2]]

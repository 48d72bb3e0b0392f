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


# -- long arrays of big integers kept encoded ------------------------------------------------

plain = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.text(max_size=5) | big_ints,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=3), inner),
    max_leaves=20,
)


@given(plain)
def test_int_arrays_decode_to_the_same_values(value: object) -> None:
    data = codec.packb(value)
    kept = codec.unpackb(data, int_arrays=True)
    assert codec.materialise(kept) == codec.unpackb(data)
    assert codec.packb(kept) == data  # and re-encode to the very same bytes


def test_an_encoded_array_is_byte_for_byte_the_list_of_ints() -> None:
    cts = [3**k * 2**1500 + k for k in range(300)]
    wire = {"ciphertexts": cts, "exponent": -8}
    pieces = [codec.encode_items(cts[:100]), codec.encode_items(cts[100:])]
    encoded = {"ciphertexts": codec.EncodedArray(len(cts), pieces), "exponent": -8}
    assert codec.packb(encoded) == codec.packb(wire)
    out = codec.pack_pieces(encoded)
    assert any(piece is pieces[0] for piece in out)  # spliced in, not copied
    assert b"".join(out) == codec.packb(wire)


def test_an_int_array_is_a_checked_view_that_slices_and_pickles() -> None:
    import pickle

    cts = [-(2**200)] + [2**k + 1 for k in range(64, 1064)]
    data = codec.packb({"c": cts, "e": np.arange(3)})
    got = codec.unpackb(data, int_arrays=True)["c"]
    assert isinstance(got, codec.IntArray) and len(got) == len(cts)
    assert got.data.obj is data  # nothing copied: a view of what was received
    assert got[10:500].ints() == cts[10:500] and len(got[5:5]) == 0
    assert pickle.loads(pickle.dumps(got[300:700])).ints() == cts[300:700]
    # Arrays that are not all big integers are decoded as usual.
    assert codec.unpackb(codec.packb([2**80, 1]), int_arrays=True) == [2**80, 1]


def test_malformed_int_arrays_are_refused() -> None:
    import msgpack

    data = codec.packb([2**100, 2**200])
    for cut in range(1, len(data)):
        with pytest.raises(codec.CodecError):
            codec.unpackb(data[:cut], int_arrays=True)
    with pytest.raises(codec.CodecError, match="extra bytes"):
        codec.unpackb(data + b"\x00", int_arrays=True)
    no_sign = msgpack.packb([msgpack.ExtType(1, b"\x05" * 20)] * 2)
    with pytest.raises(codec.CodecError, match="malformed big integer"):
        codec.unpackb(no_sign, int_arrays=True)
    key = b"\x81" + codec.packb([2**100]) + b"\x01"  # {[big int]: 1}
    with pytest.raises(codec.CodecError):
        codec.unpackb(key, int_arrays=True)
    deep = b"\x91" * 100 + b"\xc0"
    with pytest.raises(codec.CodecError, match="nested"):
        codec.unpackb(deep, int_arrays=True)

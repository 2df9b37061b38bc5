"""The fast Decimal128 decoder equals bson's ``float(to_decimal())`` for every bit pattern (contract §2)."""

from __future__ import annotations

import math

from bson.decimal128 import Decimal128
from hypothesis import given, settings
from hypothesis import strategies as st

from libs.models.history import decimal128_to_float
from tests.fakes.examples import examples

#: Random patterns, plus ones forced into the two-bit (non-canonical), NaN/inf and oversized-coefficient forms.
patterns = st.one_of(
    st.integers(0, (1 << 128) - 1),
    st.builds(lambda low, top: (top << 123) | low, st.integers(0, (1 << 123) - 1), st.integers(0, 31)),
    st.builds(lambda low, sign: (sign << 127) | (3 << 125) | low, st.integers(0, (1 << 125) - 1), st.integers(0, 1)),
    st.builds(
        lambda c, e, sign: (sign << 127) | (e << 113) | c,
        st.integers(10**34, (1 << 113) - 1),
        st.integers(0, 0x3FFF),
        st.integers(0, 1),
    ),
)


@settings(max_examples=examples(3000))
@given(patterns)
def test_fast_decoder_equals_bson_for_every_bit_pattern(bits):
    # given any 128-bit pattern read as a BSON Decimal128
    value = Decimal128.from_bid(bits.to_bytes(16, "little"))
    # when bson and the fast decoder read it
    try:
        expected = float(value.to_decimal())
    except (ArithmeticError, ValueError):
        expected = math.nan
    got = decimal128_to_float(value)
    # then they agree to the bit (sign of zero included); NaN and inf are missing
    if not math.isfinite(expected):
        assert math.isnan(got)
    else:
        assert got == expected and math.copysign(1, got) == math.copysign(1, expected)

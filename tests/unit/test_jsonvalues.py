"""Text and numbers as JSON and BSON can carry them (libs/jsonvalues.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from libs.jsonvalues import floats_or_none, is_unicode_text


@pytest.mark.parametrize(
    ("text", "unicode"),
    [
        ("bitcoin", True),
        ("", True),
        ("币安币 ₿ 🚀", True),
        ("\ufffd", True),  # a stored replacement character is text
        ("\ud800", False),  # a lone surrogate escape in a JSON body
        ("coin-\udcff", False),  # an undecodable byte, as pymongo's surrogateescape hands it over
    ],
)
def test_text_is_unicode_unless_it_holds_a_lone_surrogate(text, unicode):
    assert is_unicode_text(text) is unicode


def test_for_json_every_non_finite_number_is_null():
    values = np.array([1.5, math.nan, math.inf, -math.inf, -0.0, 1e308])
    got = floats_or_none(values)
    assert got == [1.5, None, None, None, -0.0, 1e308]
    assert all(type(v) is float for v in got if v is not None)  # plain floats: json and bson take them


def test_for_bson_only_nan_is_null_and_infinities_are_kept():
    assert floats_or_none([math.nan, math.inf, -math.inf, 2.0], infinite=True) == [None, math.inf, -math.inf, 2.0]


def test_an_empty_column_gives_an_empty_list():
    assert floats_or_none(np.array([], dtype=float)) == []

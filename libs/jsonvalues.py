"""Values as the JSON and BSON this service reads and writes can carry them: one rule each.

- Text: JSON lets a lone surrogate escape (``"\\ud800"``) through and pymongo's
  ``surrogateescape`` decoding turns the bytes of a string that is not valid
  UTF-8 into lone surrogates; neither can be encoded again as UTF-8 (a log
  line, a query, a write). :func:`is_unicode_text` tells them apart, for the
  request's bodies and the stored documents alike.
- Numbers: JSON has no NaN or Infinity, BSON has no "missing" double but
  carries ±inf. :func:`floats_or_none` turns a column of floats into the
  values to write, None where the number is missing.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike


def is_unicode_text(text: str) -> bool:
    """Whether ``text`` holds no lone surrogate, i.e. encodes as UTF-8 (and, decoded, its bytes were valid UTF-8)."""
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def floats_or_none(values: ArrayLike, *, infinite: bool = False) -> list[float | None]:
    """``values`` as Python floats, None where NaN, and where ±inf unless ``infinite``.

    JSON (an alert, the report's files) takes neither, so both become null;
    BSON (the flags written to the store) takes ±inf (a fence beyond float64,
    contract §5): ``infinite=True`` keeps it.
    """
    numbers = np.asarray(values, dtype=np.float64)
    boxed = numbers.astype(object)
    boxed[np.isnan(numbers) if infinite else ~np.isfinite(numbers)] = None
    result: list[float | None] = boxed.tolist()
    return result

"""Frames with no rows that still have their columns and dtypes, so that code downstream needs no special case."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd


def empty_frame(dtypes: Mapping[str, Any]) -> pd.DataFrame:
    """A frame with no rows and the columns of ``dtypes``, in its order, each of its dtype."""
    return pd.DataFrame({name: pd.Series([], dtype=dtype) for name, dtype in dtypes.items()})

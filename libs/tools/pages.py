"""What the tools' self-contained pages (the report, the backtest) write the same way: times, values, directions.

One home for each, so the two pages read alike and a change of form happens once.
"""

from __future__ import annotations

from datetime import datetime
from html import escape

import numpy as np
import pandas as pd

from libs.models.severity import SPIKE
from libs.tools.plot import compact_number


def when(moment: datetime | pd.Timestamp | np.datetime64) -> str:
    """Minutes, or seconds when the moment is not on a minute (an ``--as-of`` date ends at 23:59:59.999)."""
    stamp = pd.Timestamp(moment)
    return stamp.strftime("%Y-%m-%d %H:%M" if stamp.second == 0 and stamp.microsecond == 0 else "%Y-%m-%d %H:%M:%S")


def format_value(value: float) -> str:
    """A signal value for reading at a glance: 1.23 B, 45,210, 63.52, 0.01234 (— when missing)."""
    return compact_number(value, precise=True) if np.isfinite(value) else "—"


def direction_badge(direction: str) -> str:
    """``▲ spike`` or ``▼ dip`` as an HTML span the pages colour by its class."""
    arrow = "▲" if direction == SPIKE else "▼"
    return f'<span class="dir {escape(direction)}">{arrow} {escape(direction)}</span>'

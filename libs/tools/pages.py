"""What the tools' self-contained pages (the report, the backtest) share: their look, and how they write times,
values and directions.

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


#: The pages' shared look (page, header, cards, tables, footer), after each page's colours (``:root``) and before
#: its own rules; the pages' own rules name other selectors, so the order between the two changes nothing.
BASE_STYLE = """
* { box-sizing: border-box; }
body { margin:0; font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;
  color:var(--ink); background:var(--bg); }
header { background:#14202e; color:#fff; padding:20px 32px 16px; }
header h1 { margin:0; font-size:22px; font-weight:600; letter-spacing:.2px; }
header .period { margin:4px 0 12px; font-size:18px; color:#cfe0f5; font-variant-numeric:tabular-nums; }
.filters { display:flex; flex-wrap:wrap; gap:6px 28px; margin:0; font-size:13px; }
.filters div { display:flex; gap:6px; }
.filters dt { color:#8fa6bf; }
.filters dd { margin:0; color:#fff; }
main { max-width:1320px; margin:0 auto; padding:20px 32px 8px; }
h2 { font-size:17px; margin:28px 0 6px; }
.card { background:var(--card); border:1px solid var(--line); border-radius:8px; padding:12px 16px; }
.card .label { color:var(--muted); font-size:12px; text-transform:uppercase; letter-spacing:.6px; }
.card .big { font-size:30px; font-weight:600; font-variant-numeric:tabular-nums; }
.small { font-size:12px; }
.muted { color:var(--muted); }
table.grid { border-collapse:collapse; width:100%; font-variant-numeric:tabular-nums; }
.grid th, .grid td { padding:5px 9px; border-bottom:1px solid var(--line); text-align:left; white-space:nowrap; }
.grid thead th { position:sticky; top:0; background:#eef2f6; font-weight:600; font-size:12px; color:#3b4856;
  z-index:1; }
.grid .n { text-align:right; }
.dir { font-weight:600; }
.dir.spike { color:var(--spike); }
.dir.dip { color:var(--dip); }
.flat { display:inline-block; padding:1px 8px; border-radius:10px; background:#fff3c4; color:#7a5b00;
  font-size:12px; }
.empty { margin:28px 0; padding:18px 20px; border-radius:8px; background:#fff8e1; border:1px solid #f3d27a; }
.empty.ok { background:#eaf7ee; border-color:#a7d8b5; }
footer { max-width:1320px; margin:0 auto; padding:4px 32px 32px; color:var(--muted); font-size:13px; }
code { font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace; font-size:12px; }
"""

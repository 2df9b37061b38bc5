"""How many generated examples a property test runs: all of them, or a quarter for the fast layer.

``make unit`` is what people run while they work, so it sets
``PROPERTY_EXAMPLES=quick`` and each property test runs a quarter of its
examples (at least 20); ``make test`` and CI run every one.
"""

from __future__ import annotations

import os

QUICK = os.environ.get("PROPERTY_EXAMPLES", "") == "quick"


def examples(full: int) -> int:
    """``full`` examples, or a quarter of them (at least 20) in the quick layer."""
    return max(20, full // 4) if QUICK else full

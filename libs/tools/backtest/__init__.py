"""The backtest (contract §12): what the alerts would have been, from the store or a CSV file.

``scope`` validates the command's arguments (the report's parser, a 30-day
default), ``run`` reads the observations with one index-served query (or the
file) and writes the outputs beside ``--out`` before moving them into place,
and ``build`` and ``page`` are pure: the raises of
:func:`libs.models.raises.range_raises` turned into alerts by
:mod:`libs.alerts.build`, the same code the handler publishes with, then the
summary, the events and the page. Nothing here writes to the store.
"""

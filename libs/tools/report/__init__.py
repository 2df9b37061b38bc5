"""The analysts' report (contract §11): stored entries in, episodes.json and a self-contained page out.

``scope`` validates the command's arguments, ``entries`` reads the stored
entries with one query, ``shaping`` and ``page`` are pure, and ``build``
ties them together with the store and the files.
"""

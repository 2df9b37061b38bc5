"""The embedded in-memory store behind ``MONGODB_URI=mongomock://``.

One mongomock client per process, so that every ``get_collection()`` call
returns the same collection and a test or the demo can seed it and then invoke
the handler. mongomock is a test and local-run dependency: it is imported only
when this store is configured, never on the Lambda path.

Compatibility shim: pymongo ≥ 4.11 passes ``sort=`` to the bulk builder's
``add_update`` and mongomock 4.3.0 does not accept it, so ``bulk_write`` with
``UpdateOne`` raises ``TypeError``. :func:`_accept_sort_in_bulk_updates` adds
the keyword (refusing any real sort, which we never send) to mongomock only;
production pymongo is untouched.

Speed shim: mongomock answers every filter by scanning the whole collection,
so a bulk write of n updates by ``_id`` costs n full scans (minutes for a
demo-sized backfill). :func:`_look_up_by_id` answers a filter that is exactly
``{"_id": <value>}`` from mongomock's own id-keyed store instead; every other
filter takes mongomock's path unchanged. ``tests/integration/test_embedded_store.py``
fails once mongomock accepts ``sort`` itself, to say the shim can go.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any

_client: Any = None


def _accept_sort_in_bulk_updates() -> None:
    from mongomock.collection import BulkOperationBuilder

    original = BulkOperationBuilder.add_update
    if "sort" in inspect.signature(original).parameters or getattr(original, "_accepts_sort", False):
        return

    @functools.wraps(original)
    def add_update(self: Any, *args: Any, sort: Any = None, **kwargs: Any) -> Any:
        if sort is not None:
            raise NotImplementedError("the embedded store does not support sorted bulk updates")
        return original(self, *args, **kwargs)

    add_update._accepts_sort = True  # type: ignore[attr-defined]
    add_update._original = original  # type: ignore[attr-defined]
    BulkOperationBuilder.add_update = add_update  # type: ignore[method-assign]


def _look_up_by_id() -> None:
    from mongomock.collection import Collection

    original = Collection._iter_documents
    if getattr(original, "_looks_up_by_id", False):
        return

    @functools.wraps(original)
    def _iter_documents(self: Any, filter: Any) -> Any:
        if isinstance(filter, dict) and len(filter) == 1 and "_id" in filter:
            doc_id = filter["_id"]
            if not isinstance(doc_id, (dict, list)):
                return iter([self._store[doc_id]] if doc_id in self._store else [])
        return original(self, filter)

    _iter_documents._looks_up_by_id = True  # type: ignore[attr-defined]
    Collection._iter_documents = _iter_documents  # type: ignore[method-assign]


def embedded_client() -> Any:
    """The process's one mongomock client (created, and shimmed, on first use)."""
    global _client
    if _client is None:
        import mongomock

        _accept_sort_in_bulk_updates()
        _look_up_by_id()
        _client = mongomock.MongoClient(tz_aware=False)
    return _client


def reset_embedded_store() -> None:
    """Drop the in-memory store (tests that need a fresh one)."""
    global _client
    _client = None

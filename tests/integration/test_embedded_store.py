"""The embedded store: one shared in-memory collection, and its two narrow shims."""

from __future__ import annotations

import inspect

import mongomock
from mongomock.collection import BulkOperationBuilder
from pymongo import UpdateOne

from libs.tools import embedded_store
from libs.tools.embedded_store import embedded_client


def test_one_client_per_process(store):
    assert embedded_client() is embedded_client()


def test_the_sort_shim_is_still_needed():
    # The shim wraps mongomock's add_update; the original is kept on the wrapper.
    embedded_client()
    original = getattr(BulkOperationBuilder.add_update, "_original", BulkOperationBuilder.add_update)
    assert "sort" not in inspect.signature(original).parameters, (
        "mongomock now accepts sort= in bulk updates: remove _accept_sort_in_bulk_updates from "
        "libs/tools/embedded_store.py"
    )
    assert "sort" in inspect.signature(UpdateOne._add_to_bulk).parameters or "sort" in inspect.getsource(
        UpdateOne._add_to_bulk
    ), "pymongo no longer passes sort= to add_update: the shim can go"


def test_bulk_write_of_update_one_works_on_the_embedded_store(store):
    ids = store.insert_many([{"n": i} for i in range(5)]).inserted_ids

    result = store.bulk_write([UpdateOne({"_id": i}, {"$set": {"seen": True}}) for i in ids], ordered=False)

    assert result.matched_count == 5
    assert store.count_documents({"seen": True}) == 5


def test_id_lookups_match_mongomock_scans(store):
    ids = store.insert_many([{"n": i} for i in range(20)]).inserted_ids
    assert store.find_one({"_id": ids[7]})["n"] == 7
    assert store.find_one({"_id": "missing"}) is None
    assert [d["n"] for d in store.find({"_id": {"$in": ids[:3]}})] == [0, 1, 2]  # operator filters unchanged
    fresh = mongomock.MongoClient()["x"]["y"]
    fresh.insert_one({"_id": 1, "n": 1})
    assert fresh.find_one({"_id": 1}) == {"_id": 1, "n": 1}


def test_reset_gives_a_new_empty_store(store):
    store.insert_one({"a": 1})
    embedded_store.reset_embedded_store()
    from libs.helpers.mongodb_helper import get_collection

    assert get_collection().count_documents({}) == 0

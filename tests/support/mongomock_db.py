"""mongomock, the fast test double of the MongoDB store (app/store/mongo/): tests and benches hand its databases
in where a store is asked for (app.store.of). Nothing in the service's own start uses it."""

from __future__ import annotations


def mongomock_client():
    """A mongomock client whose lookups by `_id` are dictionary look-ups.

    mongomock scans every document for every query, so upserting n movies one `_id` at a time costs
    O(n²): hours for the real 45 000-row file. Its store is already keyed by `_id`; this only lets an
    exact `{"_id": value}` filter use that. Query semantics are unchanged.
    """
    import mongomock_ng
    from mongomock_ng.collection import Collection

    if not getattr(Collection, "_id_fast_path", False):
        scan = Collection._iter_documents

        def _iter_documents(self, filter):
            if isinstance(filter, dict) and len(filter) == 1 and isinstance(filter.get("_id"), (str, int)):
                key = filter["_id"]
                return iter([self._store[key]] if key in self._store else [])
            return scan(self, filter)

        Collection._iter_documents = _iter_documents
        Collection._id_fast_path = True
    return mongomock_ng.MongoClient()

"""What a client sees of a record: the JSON views the API answers with, and the one page shape.

Kept apart from the state machine (app/tasks/__init__.py): what a task *is* does not depend on who looks at it;
what is shown does. A worker's id names its host and pid, which only admins see.
"""

from __future__ import annotations

import math

from app import tasks
from app.store.serialize import to_json

HIDDEN_FIELDS = ("path", "result_path", "checkpoint", "claims")  # server-side details a client has no use for
ADMIN_FIELDS = ("worker",)  # host.pid.nonce of the worker that ran it


def task(doc: tasks.Task, admin: bool) -> dict:
    hidden = HIDDEN_FIELDS if admin else HIDDEN_FIELDS + ADMIN_FIELDS
    shown = {k: v for k, v in doc.items() if k not in hidden}
    if doc.get("result_path") and doc.get("status") == tasks.COMPLETED and not doc.get("result_removed_at"):
        shown["result_url"] = f"/api/v1/process/{doc['task_id']}/result"
    return to_json(shown)


def page(name: str, items: list, page_number: int, limit: int, total: int) -> dict:
    """One page of a listing: `name` holds the items, with where this page stands among the rest."""
    return {
        "limit": limit,
        name: items,
        "page": page_number,
        "total_docs": total,
        "total_pages": math.ceil(total / limit) if total else 0,
    }

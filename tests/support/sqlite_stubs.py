"""Until app/store/sqlite/{tasks,keys,workers}.py exist on a branch, SqliteStore (which imports all four concerns)
gets empty stand-ins for the missing ones, so the movies concern can be tested and measured alone. Once the
real modules are there, nothing is stubbed: this becomes a no-op, to delete."""

from __future__ import annotations

import sys
import types
from collections.abc import Callable


def stub_missing_concerns(setitem: Callable[[str, object], None] = sys.modules.__setitem__) -> list[str]:
    """Register an empty module for each missing concern (`setitem`: how, e.g. pytest's monkeypatch); returns
    the names stubbed."""
    stubbed = []
    for name in ("tasks", "keys", "workers"):
        full = f"app.store.sqlite.{name}"
        try:
            __import__(full)
        except ModuleNotFoundError as e:
            if e.name != full:
                raise
            module = types.ModuleType(full)
            module.SCHEMA = ""
            setattr(module, name.capitalize(), lambda store: None)
            setitem(full, module)
            stubbed.append(name)
    return stubbed

"""Manage API keys from the command line: ``python -m app.tools.keys create --name loader --role uploader``.

    create --name N --role reader|uploader|admin   prints the new key's secret, this once
    list                                           id, name, role, prefix, created, last used, revoked
    revoke KEY_ID                                  the key and its tokens stop working at once

Keys live in the service's store: MongoDB at MONGO_URI (MONGO_DB), or, with MONGO_URI empty, the embedded store's
file in DATA_FOLDER (from the environment or `.env`), which this command opens beside a running service.
"""

from __future__ import annotations

import argparse
import sys

from app.api import keys
from app.config import ConfigError, load_config
from app.store import connect

COLUMNS = ("id", "name", "role", "prefix", "created_at", "last_used_at", "revoked_at")


def build_parser(prog: str = "python -m app.tools.keys") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description="Manage the service's API keys.")
    commands = parser.add_subparsers(dest="command", required=True)
    create = commands.add_parser("create", help="create a key and print its secret (shown only this once)")
    create.add_argument("--name", required=True, help="who or what uses it, e.g. loader")
    create.add_argument("--role", required=True, choices=keys.ROLES)
    commands.add_parser("list", help="list every key (never their secrets)")
    revoke = commands.add_parser("revoke", help="revoke a key: it and its tokens stop working at once")
    revoke.add_argument("key_id")
    return parser


def main(argv: list[str] | None = None, prog: str = "python -m app.tools.keys") -> int:
    args = build_parser(prog).parse_args(argv)
    try:
        config = load_config()
    except ConfigError as e:
        print(f"configuration error: {e}", file=sys.stderr)
        return 2
    try:
        store = connect(config)  # MONGO_URI's server, or the embedded store's file in DATA_FOLDER
        store.setup()
    except Exception as e:
        print(f"cannot open the store: {e}", file=sys.stderr)
        return 2
    if args.command == "create":
        try:
            doc, secret = keys.create(store, args.name, args.role)
        except keys.BadKey as e:
            print(f"cannot create the key: {e}", file=sys.stderr)
            return 2
        print(f"created {doc['_id']} ({doc['name']}, {doc['role']}). Its secret, shown only this once:")
        print(secret)
        return 0
    if args.command == "list":
        rows = [[str(key.get(c) or "") for c in COLUMNS] for key in keys.listing(store)]
        widths = [max(len(c), *(len(r[i]) for r in rows)) if rows else len(c) for i, c in enumerate(COLUMNS)]
        for row in [list(COLUMNS), *rows]:
            print("  ".join(value.ljust(width) for value, width in zip(row, widths)).rstrip())
        return 0
    revoked = keys.revoke(store, args.key_id)
    if revoked is None:
        print(f"no key with id {args.key_id!r}", file=sys.stderr)
        return 1
    print(f"revoked {revoked['id']} ({revoked['name']}, {revoked['role']}) at {revoked['revoked_at']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

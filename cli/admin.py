"""`seren-remote admin`: create, list and revoke API keys (needs AWS credentials that may
write the API-keys table).

    seren-remote admin create-key --owner NAME   # the new key is the last line printed
    seren-remote admin list-keys
    seren-remote admin revoke-key KEY_ID
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

TABLE_ENV = "API_KEYS_TABLE_NAME"


def add_admin_parser(subparsers: Any) -> argparse.ArgumentParser:
    admin = subparsers.add_parser("admin", help="manage API keys")
    commands = admin.add_subparsers(dest="admin_command", required=True, metavar="COMMAND")
    for name, help_text in (
        ("create-key", "create a key for an owner; prints the key once, as the last line"),
        ("list-keys", "list key ids, owners and whether they are revoked"),
        ("revoke-key", "revoke a key by its id (as listed)"),
    ):
        command = commands.add_parser(name, help=help_text)
        command.add_argument("--table", default=None, help=f"API-keys table (default: ${TABLE_ENV})")
        if name == "create-key":
            command.add_argument("--owner", required=True, help="who the key belongs to")
        if name == "revoke-key":
            command.add_argument("key_id", metavar="KEY_ID")
    return admin


def run_admin(args: argparse.Namespace) -> int:
    from botocore.exceptions import BotoCoreError, ClientError

    from jobs.api_keys import ApiKeyStore, InvalidOwner

    table = args.table or os.environ.get(TABLE_ENV)
    if not table:
        print(f"seren-remote admin: give --table or set {TABLE_ENV}", file=sys.stderr)
        return 2
    store = ApiKeyStore(table)
    try:
        if args.admin_command == "create-key":
            new = store.create(args.owner)
            record = new.record
            print(f"key id {record.key_id} for owner {record.owner} (shown only once):")
            print(new.key)
            return 0
        if args.admin_command == "list-keys":
            print(f"{'KEY ID':<14}{'OWNER':<32}{'CREATED':<26}STATE")
            for record in store.list():
                state = f"revoked {record.revoked_at or ''}".strip() if record.revoked else "active"
                print(f"{record.key_id:<14}{record.owner:<32}{record.created_at:<26}{state}")
            return 0
        if store.revoke(args.key_id):
            print(f"revoked {args.key_id}")
            return 0
        print(f"seren-remote admin: no active key with id {args.key_id}", file=sys.stderr)
        return 1
    except InvalidOwner as exc:
        print(f"seren-remote admin: {exc}", file=sys.stderr)
        return 2
    except (ClientError, BotoCoreError) as exc:
        print(f"seren-remote admin: AWS refused: {exc}", file=sys.stderr)
        return 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="seren-remote")
    add_admin_parser(parser.add_subparsers(dest="action", required=True))
    return run_admin(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())

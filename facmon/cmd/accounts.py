"""`facmon user …` and `facmon token …`: the admin's commands for users and machine tokens."""

from __future__ import annotations

import argparse
import getpass
import sys
from datetime import UTC, datetime

from facmon.config.durations import parse_duration
from facmon.config.loader import load_config
from facmon.facility.accounts import Accounts
from facmon.facility.errors import AccountError
from facmon.facility.model import Role, TokenKind
from facmon.facility.state import StateStore


def run_accounts(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    store = StateStore.open(config.storage.state_url)
    try:
        accounts = Accounts(store)
        now = datetime.now(UTC)
        if args.command == "user":
            return _user(args, accounts, store, now)
        return _token(args, accounts, store, now)
    except AccountError as exc:
        print(f"facmon: error: {exc}", file=sys.stderr)
        return 1
    finally:
        store.close()


def _user(args: argparse.Namespace, accounts: Accounts, store: StateStore, now: datetime) -> int:
    if args.action == "list":
        for user in store.list_users():
            state = "disabled" if user.disabled else ("locked" if user.locked_until and user.locked_until > now else "")
            print(f"{user.username:<24} {user.role:<9} {user.name} {state}".rstrip())
        return 0
    if args.action == "role":
        accounts.set_role(args.username, Role(args.role), now)
        print(f"{args.username} is now {args.role}; their sessions have ended")
        return 0
    if args.action in ("disable", "enable"):
        accounts.set_disabled(args.username, args.action == "disable", now)
        print(f"{args.username} {args.action}d" + ("; their sessions have ended" if args.action == "disable" else ""))
        return 0
    password = _password(args.password_stdin)
    if args.action == "add":
        user = accounts.add_user(args.username, password, Role(args.role), name=args.name, at=now)
        print(f"user {user.username} added ({user.role})")
    else:
        accounts.set_password(args.username, password, now)
        print(f"password of {args.username} set; their sessions have ended")
    return 0


def _token(args: argparse.Namespace, accounts: Accounts, store: StateStore, now: datetime) -> int:
    if args.action == "list":
        for row in store.list_tokens(kind=TokenKind.MACHINE):
            if row.revoked_at is not None:
                state = f"revoked {row.revoked_at:%Y-%m-%d}"
            elif row.expires_at is not None and row.expires_at <= now:
                state = "expired"
            else:
                state = f"until {row.expires_at:%Y-%m-%d}" if row.expires_at else "until revoked"
            used = f"last used {row.last_used_at:%Y-%m-%d %H:%M}" if row.last_used_at else "never used"
            print(f"{row.id:>4}  {row.name:<24} {row.role:<9} {state}, {used}")
        return 0
    if args.action == "revoke":
        if not accounts.revoke(args.id, now):
            raise AccountError(f"no token {args.id} that is not already revoked")
        print(f"token {args.id} revoked")
        return 0
    expires = None
    if args.expires is not None:
        try:
            expires = now + parse_duration(args.expires)
        except (ValueError, OverflowError) as exc:
            raise AccountError(f"--expires: {exc}") from None
    token, row = accounts.add_token(args.name, Role(args.role), at=now, expires_at=expires)
    until = f"until {expires.isoformat(timespec='seconds')}" if expires else "until revoked"
    print(f"token {row.id} {args.name} ({row.role}, {until}); it is shown only now:", file=sys.stderr)
    print(token)
    return 0


def _password(from_stdin: bool) -> str:
    if from_stdin or not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\n")
    first = getpass.getpass("password: ")
    if getpass.getpass("again: ") != first:
        raise AccountError("the passwords differ")
    return first

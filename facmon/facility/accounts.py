"""Users, sign-in and bearer tokens.

Passwords are kept only as argon2id hashes (argon2-cffi's defaults: 64 MiB, 3 passes), so a stolen state
database gives no password cheaply. Sign-in gives a session token that expires; admins make machine tokens for
programs. A token is 32 random bytes, handed out once; only its SHA-256 is stored.

Lockout has two counts, and an attempt is counted in both before its password is checked, so that attempts
made at the same moment cannot slip past a count that has not been written yet:

- per username and client address, in memory: `max_failures` failures in a row from one address lock the user
  out from that address, for `lockout`. Someone guessing from one address, or locking a colleague out on
  purpose, locks the user out only from where they are: the user still signs in from their own desk.
- per username from all addresses together, in the state store (`users.failed_logins`, counted in one UPDATE):
  `max_failures_total` (10 times `max_failures` by default) lock the user out everywhere, for `lockout`. This
  bounds guessing from many addresses at once to that many guesses a lockout, while locking someone out
  everywhere takes failures from at least `max_failures_total / max_failures` addresses.

A success sets the user's count, and that of its address, back to 0. A new password (`set_password`) ends both
lockouts. A username that is no user is counted exactly like one, its count from all addresses kept in memory,
and its password is checked against a decoy hash: its answers, their order and the work behind them (a hash, or
none once locked) are those of a user's, so they do not tell which usernames exist. In memory only
`TALLIES_MAX` counts of each kind are kept, the longest unused forgotten first; they start again at a restart,
and with several instances each instance keeps its own.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import threading
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from facmon.facility.errors import AccountError, LockedOutError, SignInError, UserExistsError
from facmon.facility.model import ApiToken, Role, TokenKind, User
from facmon.facility.state import StateStore

USERNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
MIN_PASSWORD = 10
# Marks facmon tokens, so secret scanners and people can tell one when they see it.
TOKEN_PREFIX = "fmn_"  # noqa: S105 - a prefix, not a secret
# How many sign-in counts of each kind are kept in memory: far more than a site has people and desks; an attack
# from more addresses at once is bounded by the count of each user kept in the state store.
TALLIES_MAX = 10_000
# Failures from all addresses together that lock a user out everywhere, as a multiple of those from one address.
TOTAL_FAILURES_FACTOR = 10


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a request acts as: a signed-in user, or a machine token. `name` is what the history records."""

    name: str
    role: Role
    token_id: int
    kind: TokenKind
    expires_at: datetime | None = None
    display_name: str | None = None


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Accounts:
    def __init__(
        self,
        store: StateStore,
        *,
        session_ttl: timedelta = timedelta(hours=12),
        max_failures: int = 5,
        lockout: timedelta = timedelta(minutes=15),
        max_failures_total: int | None = None,
        hasher: PasswordHasher | None = None,
    ) -> None:
        self._store = store
        self.session_ttl = session_ttl
        self.max_failures = max_failures
        self.max_failures_total = max_failures_total or TOTAL_FAILURES_FACTOR * max_failures
        self.lockout = lockout
        self._hasher = hasher or PasswordHasher()
        self._from_address = Tallies(max_failures, lockout)
        self._not_users = Tallies(self.max_failures_total, lockout)
        # Verified against for unknown users, so that they cost as much as known ones; made at the first such
        # sign-in rather than at start, where a hash's 64 MiB and tens of milliseconds buy nothing.
        self._decoy: str | None = None

    # -- users

    def add_user(self, username: str, password: str, role: Role, *, name: str | None = None, at: datetime) -> User:
        if not USERNAME.match(username):
            raise AccountError(f"{username!r} is not a username: letters, digits and . _ @ - only, up to 64")
        check_password(password)
        if self._store.user(username) is not None:
            raise UserExistsError(f"user {username!r} exists")
        user = User(0, username, name or username, role, self._hasher.hash(password), at)
        with self._store.begin() as tx:
            return tx.insert_user(user)

    def set_password(self, username: str, password: str, at: datetime) -> None:
        """A new password; it ends the user's sessions and lifts a lockout."""
        check_password(password)
        self._change(username, at, password_hash=self._hasher.hash(password), failed_logins=0, locked_until=None)

    def set_role(self, username: str, role: Role, at: datetime) -> None:
        """Another role; it ends the user's sessions, so the new role holds from the next sign-in."""
        self._change(username, at, role=role)

    def set_disabled(self, username: str, disabled: bool, at: datetime) -> None:
        """A disabled user cannot sign in, and their sessions end now."""
        self._change(username, at, disabled=disabled)

    def _change(self, username: str, at: datetime, **changes: object) -> None:
        with self._store.begin() as tx:
            user = tx.get_user(username)
            if user is None:
                raise AccountError(f"no user {username!r}")
            tx.update_user(replace(user, **changes))  # type: ignore[arg-type]
            tx.revoke_sessions(user.id, at)

    # -- sign-in

    def sign_in(self, username: str, password: str, at: datetime, *, address: str = "") -> tuple[str, Principal]:
        """A new session token for the user, or SignInError (LockedOutError while locked out); `address` is the
        client's, whose failures are counted apart from other addresses' (see the module's docstring)."""
        known = self._store.user(username)
        # A new password ends the lockouts from each address: their counts were of the old one.
        stamp = None if known is None else hash(known.password_hash)
        count, until = self._from_address.count((username, address), at, stamp)
        if count > self.max_failures:
            raise LockedOutError(until or at + self.lockout, at=at)
        with self._store.begin() as tx:
            user = tx.count_sign_in_attempt(username, at, limit=self.max_failures_total, locks_until=at + self.lockout)
        if user is None:
            total, total_until = self._not_users.count(username, at)
        else:
            total, total_until = user.failed_logins, user.locked_until
        if total > self.max_failures_total:
            raise LockedOutError(total_until or at + self.lockout, at=at)
        if user is None:
            self._decoy = self._decoy or self._hasher.hash(secrets.token_urlsafe(16))
            self._verify(self._decoy, password)
        elif self._verify(user.password_hash, password) and not user.disabled:
            return self._session(user, password, at, address)
        # The failure that reaches a count locks out, as the ones after it are.
        ends = [until] if count >= self.max_failures else []
        if total >= self.max_failures_total:
            ends.append(total_until)
        if ends:
            raise LockedOutError(max(end or at + self.lockout for end in ends), at=at)
        raise SignInError("wrong username or password")

    def _session(self, user: User, password: str, at: datetime, address: str) -> tuple[str, Principal]:
        if self._hasher.check_needs_rehash(user.password_hash):
            user = replace(user, password_hash=self._hasher.hash(password))
        with self._store.begin() as tx:
            tx.update_user(replace(user, failed_logins=0, locked_until=None))
            token, row = _new_token(TokenKind.SESSION, user.username, user.role, at, at + self.session_ttl, user.id)
            principal = _principal(tx.insert_token(row), user)
        self._from_address.clear((user.username, address))
        return token, principal

    def sign_out(self, principal: Principal, at: datetime) -> None:
        with self._store.begin() as tx:
            tx.revoke_token(principal.token_id, at)

    # -- tokens

    def add_token(
        self, name: str, role: Role, *, at: datetime, expires_at: datetime | None = None
    ) -> tuple[str, ApiToken]:
        """A machine token and its stored row; the token itself is shown only now."""
        if not USERNAME.match(name):
            raise AccountError(f"{name!r} is not a token name: letters, digits and . _ @ - only, up to 64")
        token, row = _new_token(TokenKind.MACHINE, name, role, at, expires_at, None)
        with self._store.begin() as tx:
            return token, tx.insert_token(row)

    def revoke(self, token_id: int, at: datetime) -> bool:
        """Revoke a machine token. Sessions end by signing out, or by changing their user."""
        with self._store.begin() as tx:
            return tx.revoke_token(token_id, at, kind=TokenKind.MACHINE)

    def authenticate(self, token: str, at: datetime) -> Principal | None:
        """Who the bearer of `token` is, or None for an unknown, expired or revoked token or a disabled user."""
        if not token.startswith(TOKEN_PREFIX) or len(token) > 100:
            return None
        found = self._store.token(token_hash(token))
        if found is None:
            return None
        row, user = found
        if row.revoked_at is not None or (row.expires_at is not None and row.expires_at <= at):
            return None
        if row.kind is TokenKind.SESSION and (user is None or user.disabled):
            return None
        if row.last_used_at is None or at - row.last_used_at > timedelta(minutes=1):
            with self._store.begin() as tx:  # at most a write a minute per token
                tx.touch_token(row.id, at)
        return _principal(row, user)

    def _verify(self, password_hash: str, password: str) -> bool:
        try:
            return self._hasher.verify(password_hash, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False


@dataclass(slots=True)
class _Tally:
    count: int = 0
    until: datetime | None = None
    stamp: int | None = None


class Tallies:
    """Counts of sign-in attempts in memory, by the rules of `StateTransaction.count_sign_in_attempt`: an attempt
    is counted before its password is checked; the one that reaches `limit` locks the key out for `lockout`; the
    first after the lockout counts 1. At most `capacity` keys, the longest unused forgotten first."""

    def __init__(self, limit: int, lockout: timedelta, capacity: int = TALLIES_MAX) -> None:
        self.limit = limit
        self.lockout = lockout
        self._capacity = capacity
        self._tallies: dict[object, _Tally] = {}  # oldest use first
        self._lock = threading.Lock()  # sign-ins run in the API's worker threads

    def count(self, key: object, at: datetime, stamp: int | None = None) -> tuple[int, datetime | None]:
        """Count an attempt: the count, and until when the key is locked out (in the past once it is over).
        A tally made under another `stamp` starts again."""
        with self._lock:
            tally = self._tallies.pop(key, None)
            if tally is None or tally.stamp != stamp:
                tally = _Tally(stamp=stamp)
            if tally.until is not None and tally.until <= at and tally.count >= self.limit:
                tally.count = 0
            tally.count += 1
            if tally.count >= self.limit and (tally.until is None or tally.until <= at):
                tally.until = at + self.lockout
            self._tallies[key] = tally
            if len(self._tallies) > self._capacity:
                del self._tallies[next(iter(self._tallies))]
            return tally.count, tally.until

    def clear(self, key: object) -> None:
        with self._lock:
            self._tallies.pop(key, None)


def check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise AccountError(f"a password needs at least {MIN_PASSWORD} characters")


def _new_token(
    kind: TokenKind, name: str, role: Role, at: datetime, expires_at: datetime | None, user_id: int | None
) -> tuple[str, ApiToken]:
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    return token, ApiToken(0, token_hash(token), kind, name, role, at, user_id=user_id, expires_at=expires_at)


def _principal(row: ApiToken, user: User | None) -> Principal:
    if row.kind is TokenKind.SESSION and user is not None:
        return Principal(user.username, user.role, row.id, row.kind, row.expires_at, user.name)
    return Principal(f"token:{row.name}", row.role, row.id, row.kind, row.expires_at, row.name)

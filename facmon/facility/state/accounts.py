"""Users, their sign-in attempts and lockouts, and API tokens (sessions, personal and service tokens)."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from sqlalchemy import and_, case, literal, or_, select, update

from facmon.facility.model import ApiToken, User
from facmon.facility.state.rows import Reads, Writes, from_row, row_values, without_id
from facmon.facility.state.schema import UTCDateTime, api_tokens, users


class AccountReads(Reads):
    """Reads of users and API tokens."""

    def user(self, username: str) -> User | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(users).where(users.c.username == username)).mappings().first()
        return None if row is None else from_row(User, row)

    def list_users(self) -> list[User]:
        with self.engine.connect() as conn:
            return [from_row(User, row) for row in conn.execute(select(users).order_by(users.c.username)).mappings()]

    def token(self, token_hash: str) -> tuple[ApiToken, User | None] | None:
        """The token with this hash and its user, whatever their state: the caller judges expiry and revocation."""
        query = select(api_tokens).where(api_tokens.c.token_hash == token_hash)
        with self.engine.connect() as conn:
            row = conn.execute(query).mappings().first()
            if row is None:
                return None
            token = from_row(ApiToken, row)
            user = None
            if token.user_id is not None:
                found = conn.execute(select(users).where(users.c.id == token.user_id)).mappings().first()
                user = None if found is None else from_row(User, found)
        return token, user

    def list_tokens(self, *, kind: str | None = None) -> list[ApiToken]:
        query = select(api_tokens).order_by(api_tokens.c.id)
        if kind is not None:
            query = query.where(api_tokens.c.kind == kind)
        with self.engine.connect() as conn:
            return [from_row(ApiToken, row) for row in conn.execute(query).mappings()]


class AccountWrites(Writes):
    """Writes of users, sign-in attempts and tokens, in the caller's transaction."""

    def insert_user(self, user: User) -> User:
        return replace(user, id=self._insert(users, row_values(user)))

    def get_user(self, username: str) -> User | None:
        """Read a user and, on PostgreSQL, lock the row: concurrent sign-ins count their failures one by one."""
        row = self.conn.execute(select(users).where(users.c.username == username).with_for_update()).mappings().first()
        return None if row is None else from_row(User, row)

    def update_user(self, user: User) -> None:
        self.conn.execute(update(users).where(users.c.id == user.id).values(without_id(row_values(user))))

    def count_sign_in_attempt(self, username: str, at: datetime, *, limit: int, locks_until: datetime) -> User | None:
        """Count an attempt to sign in as `username` before its password is checked, in one statement: concurrent
        attempts each get a count of their own, so that no more than `limit` in a row reach a password check. The
        attempt that reaches `limit` locks the user out until `locks_until`; the first after a lockout counts 1.
        The user as counted, or None when there is no such user."""
        c = users.c
        lockout_over = and_(c.locked_until.is_not(None), c.locked_until <= at, c.failed_logins >= limit)
        count = case((lockout_over, 1), else_=c.failed_logins + 1)
        not_locked = or_(c.locked_until.is_(None), c.locked_until <= at)
        until = case((and_(count >= limit, not_locked), literal(locks_until, UTCDateTime())), else_=c.locked_until)
        counted = update(users).where(c.username == username).values(failed_logins=count, locked_until=until)
        row = self.conn.execute(counted.returning(*c)).mappings().first()
        return None if row is None else from_row(User, row)

    def insert_token(self, token: ApiToken) -> ApiToken:
        return replace(token, id=self._insert(api_tokens, row_values(token)))

    def revoke_token(self, token_id: int, at: datetime, *, kind: str | None = None) -> bool:
        """Revoke a token (of `kind` only, when given); False if there is no such token still valid."""
        query = update(api_tokens).where(api_tokens.c.id == token_id, api_tokens.c.revoked_at.is_(None))
        if kind is not None:
            query = query.where(api_tokens.c.kind == kind)
        return bool(self.conn.execute(query.values(revoked_at=at)).rowcount)

    def revoke_sessions(self, user_id: int, at: datetime) -> int:
        """End every session of a user; how many were still open."""
        result = self.conn.execute(
            update(api_tokens)
            .where(api_tokens.c.user_id == user_id, api_tokens.c.kind == "session", api_tokens.c.revoked_at.is_(None))
            .values(revoked_at=at)
        )
        return int(result.rowcount)

    def touch_token(self, token_id: int, at: datetime) -> None:
        self.conn.execute(update(api_tokens).where(api_tokens.c.id == token_id).values(last_used_at=at))

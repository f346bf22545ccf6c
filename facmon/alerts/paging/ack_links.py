"""One-click acknowledge links in pages: signed, so only facmon can make one, and valid for a limited time.

A link names the escalation and the person paged; following it acknowledges as that person. It is signed with
`oncall.link_secret` (HMAC, itsdangerous), so changing the secret invalidates every link given out.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from itsdangerous import BadSignature, SignatureExpired, TimestampSigner, URLSafeTimedSerializer

from facmon.alerts.errors import AckLinkError
from facmon.facility.clock import Clock, SystemClock

_SALT = "facmon.ack-link"


class _ClockSigner(TimestampSigner):
    """Stamps and ages links by the clock it is given, not by the process's: a link expires in the service's
    time, which tests move instead of waiting for it."""

    def __init__(self, *args: Any, clock: Clock, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._clock = clock

    def get_timestamp(self) -> int:
        return int(self._clock.now().timestamp())


class AckLinks:
    def __init__(self, secret: str, public_url: str, valid_for: timedelta, *, clock: Clock | None = None) -> None:
        self._serializer = URLSafeTimedSerializer(
            secret, salt=_SALT, signer=_ClockSigner, signer_kwargs={"clock": clock or SystemClock()}
        )
        self._public_url = public_url.rstrip("/")
        self._max_age = int(valid_for.total_seconds())

    def token(self, escalation_id: int, person: str) -> str:
        return self._serializer.dumps([escalation_id, person])

    def url(self, escalation_id: int, person: str) -> str:
        return f"{self._public_url}/ack/{self.token(escalation_id, person)}"

    def verify(self, token: str) -> tuple[int, str]:
        """The escalation and person a link was made for; AckLinkError if it is not one of ours or has expired."""
        try:
            escalation_id, person = self._serializer.loads(token, max_age=self._max_age)
        except SignatureExpired:
            raise AckLinkError("this acknowledge link has expired: acknowledge in the dashboard") from None
        except (BadSignature, ValueError, TypeError):
            raise AckLinkError("this is not a valid acknowledge link") from None
        if not isinstance(escalation_id, int) or not isinstance(person, str):
            raise AckLinkError("this is not a valid acknowledge link")
        return escalation_id, person

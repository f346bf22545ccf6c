"""One-click acknowledge links in pages: signed, so only facmon can make one, and valid for a limited time.

A link names the escalation and the person paged; following it acknowledges as that person. It is signed with
`oncall.link_secret` (HMAC, itsdangerous), so changing the secret invalidates every link given out.
"""

from __future__ import annotations

from datetime import timedelta

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from facmon.alerts.errors import AckLinkError

_SALT = "facmon.ack-link"


class AckLinks:
    def __init__(self, secret: str, public_url: str, valid_for: timedelta) -> None:
        self._serializer = URLSafeTimedSerializer(secret, salt=_SALT)
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

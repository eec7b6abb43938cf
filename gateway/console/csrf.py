"""Cross-site request forgery: every console form posts the session's synchronizer token.

Each session (anonymous ones too, for the sign-in form) holds a random CSRF token; every POST
form carries it in the hidden field `csrf_token`. A POST is refused 403, before anything else is
read or done, when the field is missing or differs from the session's (compared in constant
time), when there is no session, or when the request names its origin (`Origin`, else
`Referer`) and that is not this gateway's own host. SameSite=Lax on the cookie is a second line.
"""

from __future__ import annotations

import hmac
from urllib.parse import urlsplit

from fastapi import Request

from gateway.console.session import Session

FIELD = "csrf_token"


class CsrfRefused(Exception):
    """A form post that is not provably from a console page (answered 403)."""


def same_origin(request: Request) -> bool:
    """False when `Origin` (or, without it, `Referer`) names another host than the request's
    own `Host`; True when neither header is sent (the token alone decides then)."""
    named = request.headers.get("origin") or request.headers.get("referer")
    if named is None:
        return True
    if named == "null":  # sandboxed frames, privacy redirects: not provably ours
        return False
    parts = urlsplit(named)
    host = request.headers.get("host", "")
    return bool(parts.scheme in ("http", "https") and parts.netloc) and parts.netloc == host


def check(request: Request, session: Session | None, sent: object) -> None:
    """Raise `CsrfRefused` unless the post carries this session's token from our own origin."""
    if session is None or not isinstance(sent, str) or not sent:
        raise CsrfRefused("no session or no CSRF token")
    if not hmac.compare_digest(sent.encode(), session.csrf.encode()):
        raise CsrfRefused("wrong CSRF token")
    if not same_origin(request):
        raise CsrfRefused("the form was posted from another origin")

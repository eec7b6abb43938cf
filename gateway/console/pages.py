"""The console's page plumbing: who is signed in, rendering a template, the console's errors.

Every page request runs `signed_in(request)`: the session cookie's token is verified again by
the API's own `Authenticator` (expiry, revoked dev tokens, roles and scopes are the API's).
Without a valid session a page answers 303 to the sign-in form, with `next` = this page.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape

from contracts.settings import Actor
from gateway.auth import READ_ROLES, Authenticator, IdentityProviderUnavailable, InvalidToken
from gateway.console.session import Session, Sessions

log = logging.getLogger("pssync.gateway.console")

PREFIX = "/console"
HOME = f"{PREFIX}/exceptions"
SIGN_IN = f"{PREFIX}/sign-in"
TEMPLATES = Path(__file__).parent / "templates"
STATIC = Path(__file__).parent / "static"

APPROVALS = f"{PREFIX}/approvals"

NAV: tuple[tuple[str, str], ...] = (
    ("Exceptions", HOME),
    ("Approvals", APPROVALS),
    ("Projects", f"{PREFIX}/projects"),
    ("Health", f"{PREFIX}/health"),
)
"""The console's sections, in the header's order (a new page adds its entry here)."""

_env = Environment(
    loader=FileSystemLoader(TEMPLATES),
    autoescape=select_autoescape(enabled_extensions=("html",), default=True),
    trim_blocks=True,
    lstrip_blocks=True,
)
_env.filters["query"] = lambda params: urlencode(params)


class SignInRequired(Exception):
    """No (valid) session: answered 303 to the sign-in form."""

    def __init__(self, next_path: str, *, ended: bool = False) -> None:
        super().__init__(next_path)
        self.next_path = next_path
        self.ended = ended


class ConsoleRefusal(Exception):
    """An error page: status, title and a message for the person."""

    def __init__(self, status: int, title: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.title = title
        self.message = message


@dataclass(frozen=True)
class Visitor:
    """The signed-in person: their session and the actor their token stands for now."""

    session: Session
    actor: Actor


def sessions_of(request: Request) -> Sessions:
    sessions: Sessions = request.app.state.console_sessions
    return sessions


def safe_next(value: object) -> str:
    """A local console path to go to after sign-in; anything else (another host, a scheme,
    `//host`, backslashes, control characters, `..`) is the inbox."""
    if not isinstance(value, str) or not value or len(value) > 1000:
        return HOME
    if "\\" in value or any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value):
        return HOME
    parts = urlsplit(value)
    if parts.scheme or parts.netloc or value.startswith("//"):
        return HOME
    path = parts.path
    if not (path == PREFIX or path.startswith(PREFIX + "/")) or ".." in path.split("/"):
        return HOME
    if path.startswith(SIGN_IN):
        return HOME
    return value


def here(request: Request) -> str:
    query = request.url.query
    return request.url.path + (f"?{query}" if query else "")


async def signed_in(request: Request) -> Visitor:
    """The visitor, or `SignInRequired` (no session, or its token no longer verifies)."""
    session = sessions_of(request).read(request)
    if session is None or session.token is None:
        raise SignInRequired(here(request))
    authenticator: Authenticator = request.app.state.authenticator
    try:
        actor = await authenticator.actor_for_token(session.token)
    except InvalidToken as err:
        log.info("console session refused on %s: %s", request.url.path, err)
        raise SignInRequired(here(request), ended=True) from None
    except IdentityProviderUnavailable:
        raise ConsoleRefusal(
            503,
            "Sign-in is unavailable",
            "The identity provider's signing keys cannot be fetched; try again shortly.",
        ) from None
    if not READ_ROLES.intersection(actor.roles):
        raise ConsoleRefusal(
            403, "Not allowed", f"{actor.name} has no role that may read exception items."
        )
    return Visitor(session, actor)


def render(
    request: Request,
    template: str,
    context: dict[str, Any],
    *,
    session: Session | None,
    status: int = 200,
    actor: Actor | None = None,
) -> HTMLResponse:
    """The page, with the session's CSRF token for its forms; a flash message is shown once
    (the cookie is rewritten without it)."""
    flash = session.flash if session is not None else None
    page = _env.get_template(template).render(
        request=request,
        actor=actor,
        csrf_token=session.csrf if session is not None else "",
        flash=flash,
        nav=NAV,
        current=request.url.path,
        prefix=PREFIX,
        **context,
    )
    response = HTMLResponse(page, status_code=status, headers=_PAGE_HEADERS)
    if session is not None and flash is not None:
        sessions_of(request).write(response, request, session.without_flash())
    return response


_PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


def redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303, headers={"Cache-Control": "no-store"})


def flash_redirect(request: Request, visitor: Visitor, url: str, kind: str, text: str) -> Response:
    response = redirect(url)
    sessions_of(request).write(response, request, visitor.session.with_flash(kind, text))
    return response


def error_page(request: Request, refusal: ConsoleRefusal) -> HTMLResponse:
    session = sessions_of(request).read(request)
    return render(
        request,
        "error.html",
        {"title": refusal.title, "message": refusal.message, "status": refusal.status},
        session=session,
        status=refusal.status,
    )


def sign_in_redirect(request: Request, refusal: SignInRequired) -> Response:
    params = {"next": safe_next(refusal.next_path)}
    if refusal.ended:
        params["ended"] = "1"
    response = redirect(f"{SIGN_IN}?{urlencode(params)}")
    if refusal.ended:
        sessions_of(request).clear(response, request)
    return response

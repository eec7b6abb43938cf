"""Signing in and out of the console with a bearer token (a dev token, or the OIDC provider's JWT).

- `GET /console/sign-in?next=` — the form (it opens an anonymous session for its CSRF token).
- `POST /console/sign-in` — `token`, `next`, `csrf_token`: the token is verified by the API's
  own code; accepted, a new session (new CSRF token) and 303 to `next` when that is a local
  console path (else the inbox); refused, 401 and the form again. Nothing about the token is
  logged or echoed.
- `POST /console/sign-out` — `csrf_token`: the cookie is cleared, 303 to the sign-in form.
"""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request
from fastapi.responses import Response

from gateway.auth import Authenticator, IdentityProviderUnavailable, InvalidToken
from gateway.console import csrf
from gateway.console.pages import (
    HOME,
    PREFIX,
    SIGN_IN,
    ConsoleRefusal,
    SignInRequired,
    Visitor,
    flash_redirect,
    redirect,
    render,
    safe_next,
    sessions_of,
    signed_in,
)
from gateway.console.session import Session

log = logging.getLogger("pssync.gateway.console")

router = APIRouter(prefix=PREFIX, include_in_schema=False)


@router.get("")
async def console_home() -> Response:
    return redirect(HOME)


@router.get("/sign-in")
async def sign_in_form(request: Request) -> Response:
    sessions = sessions_of(request)
    session = sessions.read(request)
    if session is not None and session.token is not None:
        try:
            await signed_in(request)
        except (SignInRequired, ConsoleRefusal):  # an ended session: sign in again below
            session = None
        else:
            return redirect(safe_next(request.query_params.get("next")))
    fresh = session is None
    session = session or Session.anonymous()
    notice = None
    if request.query_params.get("ended"):
        notice = "Your session has ended (signed out, expired or revoked). Please sign in again."
    elif request.query_params.get("signed_out"):
        notice = "You are signed out."
    response = render(
        request,
        "signin.html",
        {"next": safe_next(request.query_params.get("next")), "notice": notice, "error": None},
        session=session,
    )
    if fresh:
        sessions.write(response, request, session)
    return response


@router.post("/sign-in")
async def sign_in(request: Request) -> Response:
    sessions = sessions_of(request)
    session = sessions.read(request)
    form = await request.form()
    csrf.check(request, session, form.get(csrf.FIELD))
    assert session is not None
    next_path = safe_next(form.get("next"))
    token = form.get("token")
    authenticator: Authenticator = request.app.state.authenticator
    error = "That token was not accepted. Check it and try again."
    if isinstance(token, str) and token.strip():
        try:
            actor = await authenticator.actor_for_token(token)
        except InvalidToken as err:
            log.info("console sign-in refused: %s", err)
        except IdentityProviderUnavailable:
            raise ConsoleRefusal(
                503,
                "Sign-in is unavailable",
                "The identity provider's signing keys cannot be fetched; try again shortly.",
            ) from None
        else:
            new = Session.signed_in(token.strip())
            if sessions.fits(new):
                log.info("console sign-in by %s", actor.name)
                visitor = Visitor(new, actor)
                return flash_redirect(
                    request, visitor, next_path, "ok", f"Signed in as {actor.name}."
                )
            error = "That token is too large to keep in a browser session."
    return render(
        request,
        "signin.html",
        {"next": next_path, "notice": None, "error": error},
        session=session,
        status=401,
    )


@router.post("/sign-out")
async def sign_out(request: Request) -> Response:
    sessions = sessions_of(request)
    form = await request.form()
    csrf.check(request, sessions.read(request), form.get(csrf.FIELD))
    response = redirect(f"{SIGN_IN}?signed_out=1")
    sessions.clear(response, request)
    return response

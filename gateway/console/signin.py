"""Signing in and out of the console with a bearer token (a dev token, or the OIDC provider's JWT).

- `GET /console/sign-in?next=` — the form (it opens an anonymous session for its CSRF token).
- `POST /console/sign-in` — `token`, `next`, `csrf_token`: the token is verified by the API's
  own code; accepted, a new session (new CSRF token) and 303 to `next` when that is a local
  console path (else the inbox); refused, 401 and the form again. Nothing about the token is
  logged or echoed.
- `GET /console/sign-in/oidc?next=` — with `settings.oidc.console_client_id`: off to the OIDC
  provider (authorization code + PKCE, `gateway.console.oidc`); the state and verifier wait in
  this browser's session.
- `GET /console/sign-in/callback?code=&state=` — the provider's answer: the state must be the
  one this browser's session holds; the code is traded for an access token, verified by the
  API's own code, and the person is signed in as above.
- `POST /console/sign-out` — `csrf_token`: the cookie is cleared, 303 to the sign-in form.
"""

from __future__ import annotations

import hmac
import logging

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from gateway.auth import Authenticator, IdentityProviderUnavailable, InvalidToken
from gateway.console import csrf
from gateway.console.oidc import OidcLoginFailed, oidc_login
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
        {
            "next": safe_next(request.query_params.get("next")),
            "notice": notice,
            "error": None,
            "oidc": oidc_login(request.app) is not None,
        },
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
    return _refused(request, session, next_path, error)


def _refused(request: Request, session: Session, next_path: str, error: str) -> Response:
    """The sign-in form again, 401, with what went wrong."""
    return render(
        request,
        "signin.html",
        {
            "next": next_path,
            "notice": None,
            "error": error,
            "oidc": oidc_login(request.app) is not None,
        },
        session=session,
        status=401,
    )


def _callback_url(request: Request) -> str:
    oidc = request.app.state.settings.oidc
    configured: str | None = oidc.console_redirect_url if oidc is not None else None
    return configured or str(request.url.replace(path=f"{PREFIX}/sign-in/callback", query=""))


_PROVIDER_DOWN = ConsoleRefusal(
    503,
    "Sign-in is unavailable",
    "Your organisation's sign-in provider cannot be reached; try again shortly.",
)


@router.get("/sign-in/oidc")
async def sign_in_with_provider(request: Request) -> Response:
    login = oidc_login(request.app)
    if login is None:
        raise ConsoleRefusal(404, "Not available", "No sign-in provider is configured.")
    try:
        url, state, verifier = await login.start(_callback_url(request))
    except IdentityProviderUnavailable as err:
        log.warning("console sign-in provider unavailable: %s", err)
        raise _PROVIDER_DOWN from None
    session = Session.anonymous().with_login(
        state, verifier, safe_next(request.query_params.get("next"))
    )
    response = RedirectResponse(url, status_code=303)
    sessions_of(request).write(response, request, session)
    return response


@router.get("/sign-in/callback")
async def provider_callback(request: Request) -> Response:
    sessions = sessions_of(request)
    session = sessions.read(request)
    login = oidc_login(request.app)
    params = request.query_params
    if login is None or session is None or session.login is None:
        raise ConsoleRefusal(
            400,
            "This sign-in was not started here",
            "The sign-in expired or was started in another browser. Start it again.",
        )
    state, verifier, next_path = session.login
    retry = session.without_login()
    sent_state = params.get("state") or ""
    if not hmac.compare_digest(sent_state.encode(), state.encode()):
        log.info("console sign-in callback with a foreign state refused")
        raise ConsoleRefusal(
            400,
            "This sign-in was not started here",
            "The sign-in expired or was started in another browser. Start it again.",
        )
    if params.get("error"):
        log.info("console sign-in: the provider answered %s", params.get("error", "")[:100])
        response = _refused(request, retry, next_path, "Your organisation did not sign you in.")
        sessions.write(response, request, retry)
        return response
    code = params.get("code") or ""
    try:
        token = await login.finish(code, verifier, _callback_url(request))
        actor = await request.app.state.authenticator.actor_for_token(token)
    except IdentityProviderUnavailable as err:
        log.warning("console sign-in provider unavailable: %s", err)
        raise _PROVIDER_DOWN from None
    except (OidcLoginFailed, InvalidToken) as err:
        log.info("console sign-in through the provider refused: %s", err)
        response = _refused(
            request, retry, next_path, "Your organisation's sign-in was not accepted by pssync."
        )
        sessions.write(response, request, retry)
        return response
    new = Session.signed_in(token)
    if not sessions.fits(new):
        response = _refused(
            request, retry, next_path, "That token is too large to keep in a browser session."
        )
        sessions.write(response, request, retry)
        return response
    log.info("console sign-in by %s through the provider", actor.name)
    visitor = Visitor(new, actor)
    return flash_redirect(request, visitor, next_path, "ok", f"Signed in as {actor.name}.")


@router.post("/sign-out")
async def sign_out(request: Request) -> Response:
    sessions = sessions_of(request)
    form = await request.form()
    csrf.check(request, sessions.read(request), form.get(csrf.FIELD))
    response = redirect(f"{SIGN_IN}?signed_out=1")
    sessions.clear(response, request)
    return response

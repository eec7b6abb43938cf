"""The operations console: server-rendered pages at `/console` for the people who fix exception
items (delivery managers, finance, ops), with the API's authentication, roles and scopes.

    install_console(app, settings)   # in create_app, after the API's routers

Pages are Jinja2 templates (`templates/`) with one small stylesheet (`static/`, served at
`/console/static`); no script is needed: every action is a plain HTML form with a CSRF token
(`gateway.console.csrf`). Sign-in keeps the bearer token in an encrypted session cookie
(`gateway.console.session`) that is verified again on every request, or signs people in through
the OIDC provider (`gateway.console.oidc`). The sections (`pages.NAV`): the exception inbox and
an item's page (`gateway.console.exceptions`), the approvals inbox and a change order's page
(`gateway.console.approvals`), a project's story (`gateway.console.projects`) and runs and
health (`gateway.console.health`, `health_runs`).

Must never: import workflows, activities or connectors.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import Response
from fastapi.staticfiles import StaticFiles

from contracts.settings import Settings
from gateway.console import approvals, exceptions, health, projects, signin
from gateway.console.csrf import CsrfRefused
from gateway.console.pages import (
    PREFIX,
    STATIC,
    ConsoleRefusal,
    SignInRequired,
    error_page,
    sign_in_redirect,
)
from gateway.console.session import Sessions, console_key

__all__ = ["install_console"]


def install_console(app: FastAPI, settings: Settings) -> None:
    """Serve the console on `app` (nothing when `settings.console.enabled` is false)."""
    if not settings.console.enabled:
        return
    app.state.console_sessions = Sessions(
        console_key(settings), settings.console.session_lifetime_s
    )
    app.include_router(signin.router)
    app.include_router(exceptions.router)
    app.include_router(approvals.router)
    app.include_router(projects.router)
    app.include_router(health.router)
    app.mount(f"{PREFIX}/static", StaticFiles(directory=STATIC), name="console-static")

    async def sign_in_needed(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, SignInRequired)
        return sign_in_redirect(request, exc)

    async def refused(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ConsoleRefusal)
        return error_page(request, exc)

    async def forged(request: Request, exc: Exception) -> Response:
        refusal = ConsoleRefusal(
            403,
            "This form cannot be accepted",
            "The form was not sent from this console page, or your session changed since it "
            "was shown. Nothing was done: go back, reload the page and try again.",
        )
        return error_page(request, refusal)

    app.add_exception_handler(SignInRequired, sign_in_needed)
    app.add_exception_handler(ConsoleRefusal, refused)
    app.add_exception_handler(CsrfRefused, forged)

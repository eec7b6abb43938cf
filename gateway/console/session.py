"""The console's session: an encrypted, authenticated cookie holding the person's bearer token.

    sessions = Sessions(console_key(settings), settings.console.session_lifetime_s)
    session = sessions.read(request)          # None: no cookie, tampered, or older than its life
    sessions.write(response, request, session)

The cookie (`pssync_console`) is a Fernet token (AES-128-CBC + HMAC-SHA256, with its issue
time) over a small JSON document: the bearer token the person signed in with, the session's CSRF
token and a one-time flash message. It is HttpOnly, SameSite=Lax, Path=/console, Secure when the
request came over https, and expires with the session's lifetime. The token inside is verified
again on every request by the API's own code (`Authenticator.actor_for_token`), so an expired
JWT or a revoked dev token ends the session at once.

A session without a token is an anonymous one: it carries the CSRF token of the sign-in form.
Must never: log the cookie or the token it holds.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import secrets
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken
from fastapi import Request, Response

from contracts.settings import Settings, SettingsError

log = logging.getLogger("pssync.gateway.console")

COOKIE = "pssync_console"
PATH = "/console"
MAX_COOKIE_BYTES = 4000
"""Browsers keep cookies up to about 4 KiB: a token whose session would not fit is refused."""
DEV_KEY_FILE = "console.key"
_KDF_LABEL = b"pssync-console-session-v1\x00"


class ConsoleKeyMissing(SettingsError):
    """Production without `PSSYNC_CONSOLE__SECRET_KEY`: the gateway does not start."""


def _fernet_key(secret: str) -> bytes:
    return base64.urlsafe_b64encode(hashlib.sha256(_KDF_LABEL + secret.encode()).digest())


def console_key(settings: Settings) -> bytes:
    """The Fernet key of the session cookie: derived from `settings.console.secret_key`, or in
    the dev profile from a secret generated once into `<home>/console.key` (mode 0600)."""
    configured = settings.console.secret_key
    if configured is not None:
        return _fernet_key(configured.get_secret_value())
    if settings.profile != "dev":
        raise ConsoleKeyMissing(
            "invalid pssync settings:\n  PSSYNC_CONSOLE__SECRET_KEY must be set in production "
            "(at least 32 random characters, the same for every gateway process), or "
            "PSSYNC_CONSOLE__ENABLED=false"
        )
    path = settings.home / DEV_KEY_FILE
    return _fernet_key(_dev_secret(path))


def _dev_secret(path: Path) -> str:
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        text = ""
    if len(text) >= 32:
        return text
    path.parent.mkdir(parents=True, exist_ok=True)
    text = secrets.token_urlsafe(48)
    try:  # exclusive create: two gateways starting together keep the first one's secret
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        found = path.read_text().strip()
        if len(found) < 32:
            raise ConsoleKeyMissing(f"{path} holds no usable key: delete it") from None
        return found
    with os.fdopen(fd, "w") as out:
        out.write(text + "\n")
    log.info("generated the dev profile's console session key in %s", path)
    return text


@dataclass(frozen=True)
class Session:
    """What the cookie holds: the bearer token (None before sign-in), the CSRF token and a
    flash message for the next page (kind `ok` or `error`, text)."""

    csrf: str
    token: str | None = None
    flash: tuple[str, str] | None = None
    issued_at: int = field(default_factory=lambda: int(time.time()))
    """When the person signed in (kept when the cookie is rewritten: the lifetime is absolute)."""
    login: tuple[str, str, str] | None = None
    """A sign-in through the OIDC provider under way: its state, PKCE verifier and the page
    to return to (`gateway.console.oidc`); anonymous sessions only."""

    @classmethod
    def anonymous(cls) -> Session:
        return cls(csrf=secrets.token_urlsafe(32))

    @classmethod
    def signed_in(cls, token: str) -> Session:
        """A new session (a new CSRF token: nothing from before the sign-in carries over)."""
        return cls(csrf=secrets.token_urlsafe(32), token=token)

    def with_login(self, state: str, verifier: str, next_path: str) -> Session:
        return replace(self, login=(state, verifier, next_path))

    def without_login(self) -> Session:
        return replace(self, login=None)

    def with_flash(self, kind: str, text: str) -> Session:
        return replace(self, flash=(kind, text[:600]))

    def without_flash(self) -> Session:
        return replace(self, flash=None)


class Sessions:
    """Reads and writes the session cookie with one Fernet key and lifetime."""

    def __init__(self, key: bytes, lifetime_s: int) -> None:
        self._fernet = Fernet(key)
        self.lifetime_s = lifetime_s

    def encode(self, session: Session) -> str:
        document = {
            "v": 1,
            "c": session.csrf,
            "t": session.token,
            "f": session.flash,
            "i": session.issued_at,
            "l": session.login,
        }
        return self._fernet.encrypt(json.dumps(document).encode()).decode("ascii")

    def decode(self, value: str) -> Session | None:
        try:
            raw = self._fernet.decrypt(value.encode("ascii"), ttl=self.lifetime_s)
            document = json.loads(raw)
        except (InvalidToken, UnicodeError, ValueError):
            return None
        if not isinstance(document, dict) or document.get("v") != 1:
            return None
        csrf, token, flash = document.get("c"), document.get("t"), document.get("f")
        issued = document.get("i")
        if not isinstance(csrf, str) or not csrf or not (token is None or isinstance(token, str)):
            return None
        if not isinstance(issued, int) or time.time() - issued > self.lifetime_s:
            return None
        shown = (
            (flash[0], flash[1])
            if isinstance(flash, list)
            and len(flash) == 2
            and all(isinstance(x, str) for x in flash)
            else None
        )
        login = document.get("l")
        pending = (
            (login[0], login[1], login[2])
            if isinstance(login, list)
            and len(login) == 3
            and all(isinstance(x, str) for x in login)
            else None
        )
        return Session(csrf=csrf, token=token, flash=shown, issued_at=issued, login=pending)

    def read(self, request: Request) -> Session | None:
        value = request.cookies.get(COOKIE)
        return self.decode(value) if value else None

    def fits(self, session: Session) -> bool:
        return len(self.encode(session)) + len(COOKIE) + 200 <= MAX_COOKIE_BYTES

    def write(self, response: Response, request: Request, session: Session) -> None:
        response.set_cookie(
            COOKIE,
            self.encode(session),
            max_age=self.lifetime_s,
            path=PATH,
            httponly=True,
            samesite="lax",
            secure=request.url.scheme == "https",
        )

    def clear(self, response: Response, request: Request) -> None:
        response.delete_cookie(
            COOKIE,
            path=PATH,
            httponly=True,
            samesite="lax",
            secure=request.url.scheme == "https",
        )

"""Who is signed in to the console, and what they may do: sessions, CSRF tokens, members, roles.

- **Users** are ``admin_users`` (scrypt hashes, ``Store.set_admin_password``). The built-in
  ``admin`` account, whose password ``userloop serve --show-credentials`` generates and prints, is
  admin of every project.
- **Sessions**: a random 256-bit cookie (``ul_session``: HttpOnly, SameSite=Lax, Secure over
  https); the store keeps only its SHA-256 (``console_sessions``), with a per-session CSRF token
  that every POST must send back (form field ``csrf_token`` or header ``X-CSRF-Token``).
- **Roles** per project (``console_members``): ``viewer`` reads, ``analyst`` also saves charts,
  dashboards, segments and alerts, ``admin`` also changes the project's settings and members.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from userloop.errors import UserloopError
from userloop.store.duckdb import Project, Store

Role = Literal["viewer", "analyst", "admin"]
ROLES: tuple[Role, ...] = ("viewer", "analyst", "admin")
RANK = {r: i for i, r in enumerate(ROLES)}
SUPERUSER = "admin"
SESSION_COOKIE = "ul_session"
LOGIN_CSRF_COOKIE = "ul_login_csrf"
SESSION_DAYS = 7
USERNAME_MAX = 64
PASSWORD_MIN = 8

# failed logins per user name: after MAX_FAILURES in a row, refuse for LOCK_SECONDS
MAX_FAILURES = 10
LOCK_SECONDS = 60.0


@dataclass(frozen=True)
class Session:
    username: str
    csrf_token: str


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_session(store: Store, username: str) -> tuple[str, Session]:
    """A new session; returns the cookie value (shown to the browser only) and the session."""
    token = secrets.token_urlsafe(32)
    csrf = secrets.token_urlsafe(32)
    now = datetime.now(UTC)
    store.query(
        "INSERT INTO console_sessions VALUES (?, ?, ?, ?, ?)",
        [_digest(token), username, csrf, now, now + timedelta(days=SESSION_DAYS)],
    )
    return token, Session(username, csrf)


def load_session(store: Store, token: str | None) -> Session | None:
    if not token or len(token) > 128:
        return None
    rows = store.query(
        "SELECT s.username, s.csrf_token FROM console_sessions s JOIN admin_users u ON u.username = s.username "
        "WHERE s.token_hash = ? AND s.expires_at > ?",
        [_digest(token), datetime.now(UTC)],
    )
    return Session(rows[0]["username"], rows[0]["csrf_token"]) if rows else None


def end_session(store: Store, token: str | None) -> None:
    if token:
        store.query("DELETE FROM console_sessions WHERE token_hash = ? OR expires_at <= ?",
                    [_digest(token), datetime.now(UTC)])  # fmt: skip


def csrf_ok(expected: str, got: str | None) -> bool:
    return bool(got) and secrets.compare_digest(expected.encode(), str(got).encode())


class LoginThrottle:
    """Counts consecutive failed logins per user name (in memory, per server process)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._failures: dict[str, tuple[int, float]] = {}

    def locked(self, username: str) -> bool:
        with self._lock:
            n, at = self._failures.get(username, (0, 0.0))
            return n >= MAX_FAILURES and time.monotonic() - at < LOCK_SECONDS

    def failed(self, username: str) -> None:
        with self._lock:
            n, _ = self._failures.get(username, (0, 0.0))
            self._failures[username] = (n + 1, time.monotonic())

    def succeeded(self, username: str) -> None:
        with self._lock:
            self._failures.pop(username, None)


THROTTLE = LoginThrottle()


def check_login(store: Store, username: str, password: str) -> bool:
    username = username.strip()
    if not username or not password or len(username) > USERNAME_MAX or THROTTLE.locked(username):
        return False
    ok = store.check_admin_password(username, password)
    (THROTTLE.succeeded if ok else THROTTLE.failed)(username)
    return ok


# -- members and roles ------------------------------------------------------------------------------
def role_of(store: Store, username: str, project_id: int) -> Role | None:
    if username == SUPERUSER:
        return "admin"
    rows = store.query(
        "SELECT role FROM console_members WHERE project_id = ? AND username = ?", [project_id, username]
    )
    return rows[0]["role"] if rows else None  # type: ignore[no-any-return]


def allows(role: Role | None, needed: Role) -> bool:
    return role is not None and RANK[role] >= RANK[needed]


def projects_for(store: Store, username: str) -> list[Project]:
    if username == SUPERUSER:
        return store.projects()
    ids = {r["project_id"] for r in store.query(
        "SELECT project_id FROM console_members WHERE username = ?", [username])}  # fmt: skip
    return [p for p in store.projects() if p.id in ids]


def members(store: Store, project_id: int) -> list[dict[str, object]]:
    return store.query(
        "SELECT username, role, created_at FROM console_members WHERE project_id = ? ORDER BY username", [project_id]
    )


def _check_username(username: str) -> str:
    username = username.strip()
    if not username or len(username) > USERNAME_MAX or any(c.isspace() for c in username):
        raise UserloopError("bad_username", f"a user name is 1 to {USERNAME_MAX} characters without spaces", "username")
    if username == SUPERUSER:
        raise UserloopError("builtin_admin", "the built-in admin account is admin of every project", "username")
    return username


def add_member(store: Store, project_id: int, username: str, role: str, password: str | None) -> str | None:
    """Add or change a member. A user name that has no account yet needs a password (at least
    PASSWORD_MIN characters); when none is given one is generated and returned (shown once)."""
    username = _check_username(username)
    if role not in ROLES:
        raise UserloopError("bad_role", f"role must be one of {', '.join(ROLES)}", "role")
    exists = store.query("SELECT 1 FROM admin_users WHERE username = ?", [username])
    generated = None
    if password:
        if len(password) < PASSWORD_MIN:
            raise UserloopError("weak_password", f"a password has at least {PASSWORD_MIN} characters", "password")
    elif not exists:
        password = generated = secrets.token_urlsafe(12)
    cur = store.cursor()
    cur.execute("BEGIN TRANSACTION")
    try:
        if password:
            store.set_admin_password(username, password)
        cur.execute(
            "INSERT INTO console_members (project_id, username, role) VALUES (?, ?, ?) "
            "ON CONFLICT (project_id, username) DO UPDATE SET role = excluded.role",
            [project_id, username, role],
        )
        cur.execute("COMMIT")
    except Exception:
        cur.execute("ROLLBACK")
        raise
    return generated


def remove_member(store: Store, project_id: int, username: str) -> None:
    store.query("DELETE FROM console_members WHERE project_id = ? AND username = ?", [project_id, username])

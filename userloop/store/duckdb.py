"""The embedded store: one DuckDB file, one process.

DuckDB lets one process hold a file for writing. The server is that process while it runs; the CLI
talks to it over HTTP then (see ``userloop/admin.py``), and opens the file itself otherwise.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from userloop.errors import NotFound, UserloopError
from userloop.store.schema import DDL, SCHEMA_VERSION

CHECKPOINT_THRESHOLD = "256MB"


class StoreLocked(Exception):
    """Another process (normally ``userloop serve``) holds the DuckDB file."""


@dataclass(frozen=True)
class Project:
    id: int
    name: str
    write_key: str
    secret_key: str
    timezone: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "write_key": self.write_key,
            "secret_key": self.secret_key,
            "timezone": self.timezone,
        }


def _valid_timezone(con: duckdb.DuckDBPyConnection, tz: str) -> bool:
    row = con.execute("SELECT count(*) FROM pg_timezone_names() WHERE name = ?", [tz]).fetchall()
    return bool(row and row[0][0])


class Store:
    def __init__(self, path: str | Path, *, read_only: bool = False):
        self.path = Path(path)
        if not read_only:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._con = duckdb.connect(str(self.path), read_only=read_only)
        except duckdb.IOException as exc:
            if "lock" in str(exc).lower():
                raise StoreLocked(str(exc)) from exc
            raise
        self._con.execute("SET TimeZone = 'UTC'")
        if not read_only:
            # DuckDB checkpoints (rewrites table data and indexes into the file) when the WAL
            # passes this size; at the 16 MB default a busy collector checkpoints every ~20k events
            self._con.execute(f"SET checkpoint_threshold = '{CHECKPOINT_THRESHOLD}'")
        self._local = threading.local()
        self._projects_lock = threading.Lock()
        self._projects: dict[str, Project] = {}
        if not read_only:
            self._migrate()
            self._replay_spool()
        self.reload_projects()

    # -- connections ----------------------------------------------------------------------------
    def cursor(self) -> duckdb.DuckDBPyConnection:
        """A connection for the calling thread (DuckDB cursors are not thread-safe)."""
        cur = getattr(self._local, "cur", None)
        if cur is None:
            cur = self._con.cursor()
            cur.execute("SET TimeZone = 'UTC'")
            self._local.cur = cur
        return cur

    def new_cursor(self) -> duckdb.DuckDBPyConnection:
        cur = self._con.cursor()
        cur.execute("SET TimeZone = 'UTC'")
        return cur

    def query(self, sql: str, params: list[Any] | dict[str, Any] | None = None) -> list[dict[str, Any]]:
        cur = self.cursor()
        rel = cur.execute(sql, params or [])
        cols = [d[0] for d in rel.description or []]
        return [dict(zip(cols, row, strict=True)) for row in rel.fetchall()]

    def close(self) -> None:
        self._con.close()

    @property
    def spool_dir(self) -> Path | None:
        from userloop.store.spool import spool_dir_for

        return spool_dir_for(self.path)

    def _replay_spool(self) -> None:
        """Store what a crashed server acknowledged from its spool (``userloop/store/spool.py``)."""
        from userloop.store.spool import replay

        if self.spool_dir is not None and self.spool_dir.is_dir():
            replay(self, self.spool_dir)

    def _migrate(self) -> None:
        cur = self._con
        for stmt in DDL:
            cur.execute(stmt)
        cur.execute(
            "INSERT INTO meta VALUES ('schema_version', ?) ON CONFLICT DO NOTHING", [SCHEMA_VERSION]
        )
        known = cur.execute("SELECT count(*) FROM event_properties").fetchall()[0][0]
        if not known:  # a file from before event_properties existed: learn its properties once
            cur.execute(
                """INSERT INTO event_properties
                   SELECT DISTINCT project_id, event, unnest(coalesce(json_keys(properties), []))
                   FROM events ON CONFLICT DO NOTHING"""
            )

    # -- projects -------------------------------------------------------------------------------
    def reload_projects(self) -> None:
        rows = self.cursor().execute(
            "SELECT id, name, write_key, secret_key, timezone FROM projects ORDER BY id"
        ).fetchall()
        with self._projects_lock:
            self._projects = {}
            for row in rows:
                p = Project(*row)
                self._projects[p.write_key] = p
                self._projects["s:" + p.secret_key] = p
                self._projects[f"id:{p.id}"] = p
                self._projects["n:" + p.name] = p

    def project_by_write_key(self, key: str) -> Project | None:
        return self._projects.get(key) if key and not key.startswith(("s:", "id:", "n:")) else None

    def project_by_secret_key(self, key: str) -> Project | None:
        return self._projects.get("s:" + key) if key else None

    def project_by_name(self, name: str) -> Project | None:
        return self._projects.get("n:" + name)

    def project(self, project_id: int) -> Project:
        p = self._projects.get(f"id:{project_id}")
        if p is None:
            raise NotFound("project_not_found", f"no project with id {project_id}", "project")
        return p

    def projects(self) -> list[Project]:
        return sorted({p.id: p for p in self._projects.values()}.values(), key=lambda p: p.id)

    def create_project(self, name: str, timezone: str = "UTC") -> Project:
        name = name.strip()
        if not name:
            raise UserloopError("bad_project_name", "project name must not be empty", "name")
        cur = self.cursor()
        if not _valid_timezone(cur, timezone):
            raise UserloopError("bad_timezone", f"unknown time zone {timezone!r}", "timezone")
        if self.project_by_name(name) is not None:
            raise UserloopError("project_exists", f"a project named {name!r} already exists", "name")
        write_key = "wk_" + secrets.token_urlsafe(18)
        secret_key = "sk_" + secrets.token_urlsafe(30)
        row = cur.execute(
            "INSERT INTO projects (name, write_key, secret_key, timezone) VALUES (?, ?, ?, ?) RETURNING id",
            [name, write_key, secret_key, timezone],
        ).fetchall()
        assert row
        self.reload_projects()
        return self.project(int(row[0][0]))

    def set_project_timezone(self, project_id: int, timezone: str) -> Project:
        self.project(project_id)
        if not _valid_timezone(self.cursor(), timezone):
            raise UserloopError("bad_timezone", f"unknown time zone {timezone!r}", "timezone")
        self.cursor().execute("UPDATE projects SET timezone = ? WHERE id = ?", [timezone, project_id])
        self.reload_projects()
        return self.project(project_id)

    def rotate_project_key(self, project_id: int, which: str) -> Project:
        """A new write or secret key; the old one stops working at once."""
        self.project(project_id)
        if which not in ("write_key", "secret_key"):
            raise UserloopError("bad_key", "which must be 'write_key' or 'secret_key'", "which")
        key = "wk_" + secrets.token_urlsafe(18) if which == "write_key" else "sk_" + secrets.token_urlsafe(30)
        self.cursor().execute(f"UPDATE projects SET {which} = ? WHERE id = ?", [key, project_id])
        self.reload_projects()
        return self.project(project_id)

    # -- admin users ----------------------------------------------------------------------------
    def set_admin_password(self, username: str, password: str) -> None:
        salt = secrets.token_bytes(16)
        digest = hashlib.scrypt(password.encode(), salt=salt, n=2**14, r=8, p=1)
        value = f"scrypt${salt.hex()}${digest.hex()}"
        self.cursor().execute(
            "INSERT INTO admin_users (username, password_hash) VALUES (?, ?) "
            "ON CONFLICT (username) DO UPDATE SET password_hash = excluded.password_hash",
            [username, value],
        )

    def check_admin_password(self, username: str, password: str) -> bool:
        row = self.cursor().execute(
            "SELECT password_hash FROM admin_users WHERE username = ?", [username]
        ).fetchall()
        if not row:
            return False
        _, salt, digest = str(row[0][0]).split("$")
        got = hashlib.scrypt(password.encode(), salt=bytes.fromhex(salt), n=2**14, r=8, p=1)
        return secrets.compare_digest(got.hex(), digest)

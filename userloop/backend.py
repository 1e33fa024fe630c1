"""What the CLI does to a store, either on the DuckDB file or through the running server.

DuckDB gives one process the file. ``userloop serve`` writes ``<db>.server.json`` (its URL and a
random admin token, readable only by its owner); when the file is locked the CLI uses that server's
admin API, so ``project create``, ``import`` and ``export`` work while the server runs.
"""

from __future__ import annotations

import io
import json
import os
import secrets
from pathlib import Path
from typing import Any, Protocol

import httpx
import msgspec
import pyarrow as pa

from userloop.errors import UserloopError
from userloop.ingest.event import Op, Payload
from userloop.store.duckdb import Store, StoreLocked
from userloop.store.writer import EVENTS_SCHEMA, Writer


def server_file(db_path: Path) -> Path:
    return db_path.with_name(db_path.name + ".server.json")


def write_server_file(db_path: Path, url: str) -> str:
    token = secrets.token_urlsafe(32)
    path = server_file(db_path)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump({"url": url, "token": token, "pid": os.getpid()}, fh)
    return token


def remove_server_file(db_path: Path) -> None:
    try:
        server_file(db_path).unlink()
    except FileNotFoundError:
        pass


class Backend(Protocol):
    def create_project(self, name: str, timezone: str) -> dict[str, Any]: ...
    def import_table(self, project_id: int, table: pa.Table) -> int: ...
    def write_ops(self, project_id: int, ops: list[Op]) -> None: ...
    def find_project(self, name: str) -> dict[str, Any] | None: ...
    def export_parquet(self, project_id: int, out: Path) -> int: ...
    def project(self, project_id: int) -> dict[str, Any]: ...
    def query(self, project_id: int, body: bytes) -> dict[str, Any]: ...
    def call(self, name: str, project_id: int, params: dict[str, Any]) -> Any: ...
    def close(self) -> None: ...


def export_sql(project_id: int) -> str:
    return f"SELECT * FROM events WHERE project_id = {int(project_id)} ORDER BY timestamp, message_id"


def export_to_file(store: Store, project_id: int, out: Path) -> int:
    store.project(project_id)
    cur = store.new_cursor()
    try:
        quoted = str(out).replace("'", "''")
        cur.execute(f"COPY ({export_sql(project_id)}) TO '{quoted}' (FORMAT parquet, COMPRESSION zstd)")
        row = cur.execute("SELECT count(*) FROM events WHERE project_id = ?", [project_id]).fetchall()
        return int(row[0][0]) if row else 0
    finally:
        cur.close()


class LocalBackend:
    """The CLI owns the file: a store and a writer in this process."""

    def __init__(self, db_path: Path):
        self.store = Store(db_path)
        self.writer = Writer(self.store).start()

    def create_project(self, name: str, timezone: str) -> dict[str, Any]:
        return self.store.create_project(name, timezone).to_dict()

    def project(self, project_id: int) -> dict[str, Any]:
        return self.store.project(project_id).to_dict()

    def query(self, project_id: int, body: bytes) -> dict[str, Any]:
        from userloop.query.runner import run_query

        return run_query(self.store, self.store.project(project_id), body)

    def call(self, name: str, project_id: int, params: dict[str, Any]) -> Any:
        """A named operation (``userloop/actions.py``) on the file, JSON in and out like the server's."""
        from userloop.actions import ActionContext, run_action

        ctx = ActionContext(store=self.store, writer=self.writer, project=self.store.project(project_id))
        return msgspec.json.decode(msgspec.json.encode(run_action(name, ctx, params)))

    def find_project(self, name: str) -> dict[str, Any] | None:
        p = self.store.project_by_name(name)
        return p.to_dict() if p else None

    def import_table(self, project_id: int, table: pa.Table) -> int:
        self.store.project(project_id)
        return self.writer.submit_table(table).result().stored

    def write_ops(self, project_id: int, ops: list[Op]) -> None:
        self.store.project(project_id)
        _check_ops_project(project_id, ops)
        self.writer.write(Payload(ops=ops, accepted=len(ops)))

    def export_parquet(self, project_id: int, out: Path) -> int:
        return export_to_file(self.store, project_id, out)

    def close(self) -> None:
        self.writer.stop()
        self.store.close()


class RemoteBackend:
    """The server owns the file: the same operations over its admin API."""

    def __init__(self, url: str, token: str):
        self.client = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=600)

    def _check(self, resp: httpx.Response) -> httpx.Response:
        if resp.status_code >= 400:
            try:
                err = resp.json()["error"]
                raise UserloopError(err["code"], err["message"], err.get("field"), status=resp.status_code)
            except (ValueError, KeyError, TypeError):
                raise UserloopError("server_error", f"server answered {resp.status_code}: {resp.text[:200]}") from None
        return resp

    def create_project(self, name: str, timezone: str) -> dict[str, Any]:
        return self._check(self.client.post("/api/admin/projects", json={"name": name, "timezone": timezone})).json()  # type: ignore[no-any-return]

    def project(self, project_id: int) -> dict[str, Any]:
        return self._check(self.client.get(f"/api/admin/projects/{project_id}")).json()  # type: ignore[no-any-return]

    def query(self, project_id: int, body: bytes) -> dict[str, Any]:
        resp = self.client.post(
            "/api/admin/query", params={"project": project_id}, content=body,
            headers={"Content-Type": "application/json"},
        )
        return self._check(resp).json()  # type: ignore[no-any-return]

    def call(self, name: str, project_id: int, params: dict[str, Any]) -> Any:
        resp = self.client.post(
            f"/api/admin/actions/{name}", params={"project": project_id}, content=msgspec.json.encode(params),
            headers={"Content-Type": "application/json"},
        )
        return self._check(resp).json()

    def find_project(self, name: str) -> dict[str, Any] | None:
        resp = self.client.get("/api/admin/projects", params={"name": name})
        if resp.status_code == 404:
            return None
        return self._check(resp).json()  # type: ignore[no-any-return]

    def write_ops(self, project_id: int, ops: list[Op]) -> None:
        self._check(
            self.client.post(
                "/api/admin/ops",
                params={"project": project_id},
                content=msgspec.json.encode(ops),
                headers={"Content-Type": "application/json"},
            )
        )

    def import_table(self, project_id: int, table: pa.Table) -> int:
        sink = io.BytesIO()
        with pa.ipc.new_stream(sink, table.schema) as w:
            w.write_table(table)
        resp = self.client.post(
            "/api/admin/import",
            params={"project": project_id},
            content=sink.getvalue(),
            headers={"Content-Type": "application/vnd.apache.arrow.stream"},
        )
        return int(self._check(resp).json()["stored"])

    def export_parquet(self, project_id: int, out: Path) -> int:
        with self.client.stream("GET", "/api/admin/export", params={"project": project_id}) as resp:
            if resp.status_code >= 400:
                resp.read()
                self._check(resp)
            with open(out, "wb") as fh:
                for chunk in resp.iter_bytes():
                    fh.write(chunk)
            return int(resp.headers.get("x-userloop-rows", "0"))

    def close(self) -> None:
        self.client.close()


def _check_ops_project(project_id: int, ops: list[Op]) -> None:
    if any(op.project_id != project_id for op in ops):
        raise UserloopError("project_mismatch", "operations belong to another project", "project")


def open_backend(db_path: Path) -> Backend:
    """The file if we can have it, else the server that holds it."""
    try:
        return LocalBackend(db_path)
    except StoreLocked as exc:
        info_path = server_file(db_path)
        if not info_path.exists():
            raise UserloopError(
                "store_locked",
                f"{db_path} is locked by another process and no userloop server runs on it ({exc})",
            ) from exc
        info = json.loads(info_path.read_text())
        return RemoteBackend(info["url"], info["token"])


__all__ = ["Backend", "LocalBackend", "RemoteBackend", "open_backend", "EVENTS_SCHEMA", "export_to_file"]

"""One error shape for every API: ``{"error": {"code", "message", "field"}}``.

Clients and tests match on ``code``; ``message`` is for humans.
"""

from __future__ import annotations

from typing import Any


class UserloopError(Exception):
    """An error caused by the caller's input. Safe to show to the caller."""

    status = 400

    def __init__(self, code: str, message: str, field: str | None = None, status: int | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field
        if status is not None:
            self.status = status

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.field is not None:
            body["field"] = self.field
        return {"error": body}


class AuthError(UserloopError):
    status = 401


class NotFound(UserloopError):
    status = 404


class TooLarge(UserloopError):
    status = 413

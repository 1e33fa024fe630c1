"""One module per analysis: its typed query, its SQL and its result. Importing registers them."""

from userloop.analytics import trends  # noqa: F401

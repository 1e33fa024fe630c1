"""DuckDB tables of the web console (appended to ``userloop.store.schema.DDL``).

- ``console_members``: who may open a project in the console, with a role (``admin`` manages
  settings and members, ``analyst`` saves charts, segments and tags, ``viewer`` only reads). Users
  and their password hashes are ``admin_users``; the built-in ``admin`` account (the one
  ``userloop serve --show-credentials`` prints) is admin of every project without a row here.
- ``console_sessions``: signed-in browsers, by the SHA-256 of the session cookie (the cookie itself
  is never stored), with the session's CSRF token. Not per project: a session spans projects.
- ``console_dashboards`` / ``console_charts``: saved dashboards and their charts. A chart keeps the
  analysis form's parameters (relative ranges such as "last 30 days" stay relative), re-run on
  every view through the same ``run_query`` as ``POST /api/query``.
"""

DDL: list[str] = [
    """CREATE TABLE IF NOT EXISTS console_members (
        project_id INTEGER NOT NULL,
        username VARCHAR NOT NULL,
        role VARCHAR NOT NULL,
        created_at TIMESTAMPTZ NOT NULL DEFAULT current_timestamp,
        PRIMARY KEY (project_id, username)
    )""",
    """CREATE TABLE IF NOT EXISTS console_sessions (
        token_hash VARCHAR PRIMARY KEY,
        username VARCHAR NOT NULL,
        csrf_token VARCHAR NOT NULL,
        created_at TIMESTAMPTZ NOT NULL,
        expires_at TIMESTAMPTZ NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS console_dashboards (
        project_id INTEGER NOT NULL,
        dashboard_id VARCHAR NOT NULL,
        name VARCHAR NOT NULL,
        created_at TIMESTAMPTZ NOT NULL,
        updated_at TIMESTAMPTZ NOT NULL,
        PRIMARY KEY (project_id, dashboard_id)
    )""",
    """CREATE TABLE IF NOT EXISTS console_charts (
        project_id INTEGER NOT NULL,
        chart_id VARCHAR NOT NULL,
        dashboard_id VARCHAR NOT NULL,
        title VARCHAR NOT NULL,
        kind VARCHAR NOT NULL,
        params JSON NOT NULL,
        position INTEGER NOT NULL,
        created_at TIMESTAMPTZ NOT NULL,
        PRIMARY KEY (project_id, chart_id)
    )""",
]

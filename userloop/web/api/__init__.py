"""Route handlers, one module per area. Routes are listed in ``userloop/web/app.py``."""

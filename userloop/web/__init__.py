"""HTTP: the collector, the read and admin APIs (and later the console)."""

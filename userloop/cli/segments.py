"""`userloop segments ...`: not yet implemented (a placeholder so the CLI can mount it)."""

app = None

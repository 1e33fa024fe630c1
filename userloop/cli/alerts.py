"""`userloop alerts ...`: not yet implemented (a placeholder so the CLI can mount it)."""

app = None

"""userloop: self-hostable, data-driven user operations."""

__version__ = "0.1.0"

"""The query layer: typed query models, the SQL dialects, and the one dispatch on ``kind``."""

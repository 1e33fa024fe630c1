"""Segments: rule trees over persons, events, tags, layers and funnels, compiled to one SQL query.

- ``model.py``     the typed rule tree and its decoding (errors name the field path)
- ``validate.py``  checks against the project's data (events, properties, tags, cycles)
- ``compile.py``   the rule -> one SQL query (shared events scan; columns or set algebra)
- ``funnels.py``   ``funnel`` conditions through the funnel engine
- ``saved.py``     saved segments: definitions, compute, history, the schedule
- ``read.py``      preview, members, history, CSV/Parquet export
- ``actions.py``   the ``segments.*`` operations (REST, CLI, console)
"""

from userloop.people.segments import actions as actions  # registers the segments.* operations

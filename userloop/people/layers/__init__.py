"""Stratification: saved layer models (lifecycle, stage, RFM, frequency x value, promotion
sensitivity) computed in DuckDB into ``layer_members`` with history, and migration matrices.

- ``model.py``: the typed definitions and the layer names of each kind;
- ``compute.py``: each kind's SQL as of a reference time;
- ``history.py``: writing a snapshot into ``layer_history``, states and migrations at instants;
- ``service.py``: the operations; ``actions.py``: their names (``layers.*``) and the schedule.

See docs/people/layers.md.
"""

from userloop.people.layers import actions as actions  # registers layers.* and the schedule provider

"""Recommendations: personalised feeds for posts, courses and products, served from precomputed lists.

``data``          interactions and item metadata as numpy arrays / sparse matrices
``interactions``  a project's interactions from DuckDB (one SQL query) and its catalogue
``models/``       the recommenders, one interface (fit, scores, recommend, similar)
``lists``         ragged candidate lists; ``artifact``: every list a feed needs, saved in DuckDB
``build``         fitting the recommenders into an artifact; ``blend``: the blended, re-ranked feed
``train``         training a project (on demand and on schedule); ``serve``: the hot cache, one request
``catalogue``     items (API, CSV) and interest tags; ``stats``: online CTR and conversions
``evaluate``      splits, metrics and tuning; ``datasets``: MovieLens 100K, Taobao
``config``        the project's validated settings; ``actions``: the ``recommend.*`` operations

Tables: ``userloop/store/schema_recommend.py``. Importing this package registers the actions and
the schedule provider.
"""

from userloop.recommend import actions as actions  # noqa: F401  (registers recommend.*)
from userloop.recommend import train as train  # noqa: F401  (registers the schedule provider)

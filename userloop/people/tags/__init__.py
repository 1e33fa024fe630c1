"""Tags: static, semi-dynamic and dynamic person attributes whose definitions are data.

``model``    the typed definition (rule / sql / person property / set by hand) and its checks
``sources``  the SELECT of (person_id, value) for each source
``sandbox``  checking and confining power-user SQL to the project's rows
``compute``  one transaction from a source into ``tag_values`` and ``tag_history``; the scheduler provider
``inputs``   values set by API or CSV import
``reports``  coverage and distribution, history, the catalogue tree
``actions``  the registered operations (``tags.*``) behind REST, CLI and console

Tables: ``userloop/store/schema_tags.py``. Importing this package registers the actions and the
schedule provider.
"""

from userloop.people.tags import actions as actions  # noqa: F401  (registers tags.*)
from userloop.people.tags import compute as compute  # noqa: F401  (registers the schedule provider)

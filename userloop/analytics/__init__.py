"""One module per analysis: its typed query, its SQL and its result.

Importing this package imports every module in it, and each module registers its query kind
with :func:`userloop.query.runner.register`.
"""

import importlib
import pkgutil

for _module in pkgutil.iter_modules(__path__):
    if not _module.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_module.name}")

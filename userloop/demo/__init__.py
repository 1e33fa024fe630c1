"""A demo data set: an online-education organisation in Asia/Shanghai, simulated deterministically.

``simulate`` yields event tables (``EVENTS_SCHEMA``) with the operations to apply after each;
``load_demo`` creates a project and streams them into a store through a ``Backend``.
"""

from userloop.demo.loader import load_demo
from userloop.demo.simulator import simulate, window
from userloop.demo.world import EVENT_NAMES

__all__ = ["EVENT_NAMES", "load_demo", "simulate", "window"]

"""Early warning: alert rules on layer flows and metric changes, checked on schedule and on
demand, delivered by webhook and email, with a log of fired alerts.

- ``model.py``: the typed rule (condition, channels);
- ``evaluate.py``: measuring a condition now;
- ``deliver.py``: the channel senders (webhook, SMTP email), a registry others can extend;
- ``service.py``: the operations; ``actions.py``: their names (``alerts.*``) and the schedule.

See docs/people/alerts.md.
"""

from userloop.people.alerts import actions as actions  # registers alerts.* and the schedule provider

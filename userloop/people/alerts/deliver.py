"""Delivering a fired alert: a registry of channel senders, with webhook and email the first.

A sender takes the channel's settings and the alert payload and returns a delivery record
(``ok`` and what happened); it never raises, so one broken channel does not stop the others.

Email uses SMTP (``smtplib``). Host, port, sender, credentials and security come from the channel
or, where it leaves them out, from the environment: ``USERLOOP_SMTP_HOST`` (localhost),
``USERLOOP_SMTP_PORT`` (25), ``USERLOOP_SMTP_FROM`` (userloop@localhost), ``USERLOOP_SMTP_USER``,
``USERLOOP_SMTP_PASSWORD``, ``USERLOOP_SMTP_SECURITY`` (none | starttls | ssl).
"""

from __future__ import annotations

import json
import logging
import os
import smtplib
from collections.abc import Callable
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

import httpx

from userloop.people.alerts.model import Email, Webhook

log = logging.getLogger("userloop.alerts")

Sender = Callable[[Any, dict[str, Any]], dict[str, Any]]
SENDERS: dict[type, Sender] = {}


def sender(kind: type) -> Callable[[Sender], Sender]:
    def register(fn: Sender) -> Sender:
        SENDERS[kind] = fn
        return fn

    return register


def deliver(channels: list[Any], payload: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for ch in channels:
        try:
            out.append(SENDERS[type(ch)](ch, payload))
        except Exception as exc:  # a sender bug is a failed delivery, not a failed check
            log.exception("alert delivery failed")
            out.append(
                {"type": type(ch).__name__.lower(), "ok": False, "error": f"{type(exc).__name__}: {exc}"}
            )
    return out


@sender(Webhook)
def send_webhook(ch: Webhook, payload: dict[str, Any]) -> dict[str, Any]:
    record: dict[str, Any] = {"type": "webhook", "target": ch.url}
    try:
        resp = httpx.post(ch.url, json=payload, headers=ch.headers, timeout=ch.timeout_seconds)
    except httpx.HTTPError as exc:
        return {**record, "ok": False, "error": f"{type(exc).__name__}: {exc}"}
    return {**record, "ok": resp.is_success, "status": resp.status_code}


@dataclass(frozen=True)
class Smtp:
    host: str
    port: int
    sender: str
    username: str | None
    password: str | None
    security: str

    @classmethod
    def for_channel(cls, ch: Email) -> Smtp:
        env = os.environ.get
        security = ch.security or env("USERLOOP_SMTP_SECURITY") or "none"
        default_port = {"ssl": 465, "starttls": 587}.get(security, 25)
        return cls(
            host=ch.smtp_host or env("USERLOOP_SMTP_HOST") or "localhost",
            port=ch.smtp_port or int(env("USERLOOP_SMTP_PORT") or default_port),
            sender=ch.sender or env("USERLOOP_SMTP_FROM") or "userloop@localhost",
            username=ch.username or env("USERLOOP_SMTP_USER") or None,
            password=ch.password or env("USERLOOP_SMTP_PASSWORD") or None,
            security=security,
        )


def email_message(ch: Email, smtp: Smtp, payload: dict[str, Any]) -> EmailMessage:
    msg = EmailMessage()
    msg["Subject"] = ch.subject or f"[userloop] alert {payload['rule']}: {payload['project']['name']}"
    msg["From"] = smtp.sender
    msg["To"] = ", ".join(ch.to)
    body = [
        payload["message"],
        "",
        f"rule:     {payload['rule']}",
        f"project:  {payload['project']['name']} (id {payload['project']['id']})",
        f"fired at: {payload['fired_at']}",
        f"value:    {payload['value']}",
        f"threshold: {payload['threshold']}",
        "",
        json.dumps(payload["details"], indent=2, default=str),
    ]
    msg.set_content("\n".join(body))
    return msg


@sender(Email)
def send_email(ch: Email, payload: dict[str, Any]) -> dict[str, Any]:
    smtp = Smtp.for_channel(ch)
    record: dict[str, Any] = {
        "type": "email",
        "target": ", ".join(ch.to),
        "server": f"{smtp.host}:{smtp.port}",
    }
    msg = email_message(ch, smtp, payload)
    try:
        client_cls = smtplib.SMTP_SSL if smtp.security == "ssl" else smtplib.SMTP
        with client_cls(smtp.host, smtp.port, timeout=ch.timeout_seconds) as client:
            if smtp.security == "starttls":
                client.starttls()
            if smtp.username:
                client.login(smtp.username, smtp.password or "")
            refused = client.send_message(msg)
    except (OSError, smtplib.SMTPException) as exc:
        return {**record, "ok": False, "error": f"{type(exc).__name__}: {exc}"}
    if refused:
        return {**record, "ok": False, "error": f"refused: {', '.join(sorted(refused))}"}
    return {**record, "ok": True}

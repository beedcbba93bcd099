"""Webhooks: endpoints, and the deliveries of events to them (API "Webhooks").

One actor (`actor.WebhookDispatcher`) owns every endpoint and its own journal. Events
are not copied into it: each endpoint keeps, per event journal (the registry's and each
coordinator's), the position up to which its events are settled, and delivery reads the
events after it as a stream does. An event goes at least once; payments never wait.

The actor is made of plain parts, as Ray Serve's controller is made of state managers:
`state` what the journal and its snapshots hold, `endpoints` the endpoints as the API
manages them, `delivery` the per-endpoint delivery tasks, `addresses` the SSRF rules on
where a delivery may go, `signing_secrets` the sealing of secrets at rest. Other modules
import from here.
"""

from __future__ import annotations

from actors.webhooks.actor import WebhookDispatcher, webhooks_journal_path
from actors.webhooks.addresses import RefusedAddress, private_targets_allowed
from actors.webhooks.delivery import idle_priority
from actors.webhooks.endpoints import EndpointMade
from actors.webhooks.signing_secrets import SECRETS_KEY_FILE, secrets_key

__all__ = [
    "SECRETS_KEY_FILE",
    "EndpointMade",
    "RefusedAddress",
    "WebhookDispatcher",
    "idle_priority",
    "private_targets_allowed",
    "secrets_key",
    "webhooks_journal_path",
]

"""Connection negotiation for ``/v1/realtime``: dialect, subprotocol, API key, extension opt-ins.

Kept free of FastAPI types so it is trivially unit-testable: it takes headers, query and the offered
subprotocols and returns a decision.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

BETA_SUBPROTOCOL = "openai-beta.realtime-v1"
BROWSER_SUBPROTOCOL = "realtime"
KEY_SUBPROTOCOL_PREFIX = "openai-insecure-api-key."
# Query parameters that opt a session into reasoning extension events (see docs/protocol.md).
REASONING_QUERY_PARAMS = ("reasoning", "reasoning_events")

Dialect = Literal["ga", "beta"]


@dataclass(frozen=True)
class Negotiation:
    dialect: Dialect
    subprotocol: str | None  # what to accept the WebSocket with (None = no Sec-WebSocket-Protocol)
    api_key: str | None
    model: str | None
    reasoning_events: bool


def _truthy(value: str | None) -> bool:
    return value is not None and value.strip().lower() in ("1", "true", "yes", "on")


def negotiate(headers: Mapping[str, str], query: Mapping[str, str], offered: Sequence[str]) -> Negotiation:
    """Decide how to talk to a client from its handshake. ``headers`` keys are matched case-insensitively."""
    lower = {k.lower(): v for k, v in headers.items()}
    beta = "realtime=v1" in lower.get("openai-beta", "").replace(" ", "") or BETA_SUBPROTOCOL in offered
    key: str | None = None
    auth = lower.get("authorization", "")
    if auth.lower().startswith("bearer "):
        key = auth[7:].strip() or None
    if key is None and lower.get("api-key"):  # Azure-style header some clients send
        key = lower["api-key"].strip()
    for proto in offered:
        if proto.startswith(KEY_SUBPROTOCOL_PREFIX):
            key = proto[len(KEY_SUBPROTOCOL_PREFIX) :] or key
    # A browser that offers subprotocols aborts unless the server picks one of them.
    if BROWSER_SUBPROTOCOL in offered:
        subprotocol: str | None = BROWSER_SUBPROTOCOL
    elif BETA_SUBPROTOCOL in offered:
        subprotocol = BETA_SUBPROTOCOL
    else:
        subprotocol = None
    return Negotiation(
        dialect="beta" if beta else "ga",
        subprotocol=subprotocol,
        api_key=key,
        model=query.get("model"),
        reasoning_events=any(_truthy(query.get(k)) for k in REASONING_QUERY_PARAMS),
    )


def key_allowed(key: str | None, allowed: Sequence[str]) -> bool:
    """Constant-time membership; an empty ``allowed`` list means auth is off."""
    if not allowed:
        return True
    if not key:
        return False
    return any(hmac.compare_digest(key.encode(), k.encode()) for k in allowed)

"""Server addresses as users type them -> the URLs the SDK and the HTTP endpoints need.

People write ``127.0.0.1:8000``, ``http://host:8000``, ``ws://host:8000/v1/realtime`` or
``https://api.openai.com/v1``; all must work. The openai SDK wants an HTTP API base ending in ``/v1``
(it derives ``ws(s)://.../v1/realtime`` itself), and ``/metrics`` lives at the server root.
"""

from __future__ import annotations

from urllib.parse import urlsplit

_SCHEMES = {"ws": "http", "wss": "https", "http": "http", "https": "https"}


def api_base(url: str) -> str:
    """``http(s)://host:port/v1``-style base for ``AsyncOpenAI(base_url=...)``."""
    url = url.strip()
    if not url:
        raise ValueError("server URL is empty")
    if "://" not in url:
        url = "http://" + url
    parts = urlsplit(url)
    scheme = _SCHEMES.get(parts.scheme.lower())
    if scheme is None:
        raise ValueError(f"unsupported URL scheme {parts.scheme!r} in {url!r} (use http, https, ws or wss)")
    if not parts.netloc:
        raise ValueError(f"no host in server URL {url!r}")
    path = parts.path.rstrip("/")
    if path.endswith("/realtime"):
        path = path[: -len("/realtime")]
    if not path:
        path = "/v1"
    return f"{scheme}://{parts.netloc}{path}"


def server_root(url: str) -> str:
    """``http(s)://host:port``: where ``/metrics`` and ``/healthz`` live."""
    parts = urlsplit(api_base(url))
    return f"{parts.scheme}://{parts.netloc}"


def realtime_ws_url(url: str) -> str:
    """The WebSocket URL the SDK will open (for messages and logs)."""
    base = api_base(url)
    return base.replace("http", "ws", 1) + "/realtime"

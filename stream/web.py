"""The HTTP side of ``callstream serve``: the caption page's files, and who may open a WebSocket.

Pure: no sockets, no event loop. ``stream.websocket`` calls these from its
``process_request`` hook.

* ``StaticFiles``: the page under ``stream/static/``, read once at start-up.
  Only the files found there are served, by exact URL path, so no request
  path can reach outside the folder.
* ``origin_allowed``: a browser page on another site could open a WebSocket to
  this server with the user's network position (cross-site WebSocket
  hijacking). Browsers always send ``Origin``; it must name the server itself
  (its host:port equals the ``Host`` header) or an allowed origin. Requests
  without ``Origin`` come from non-browser clients and are allowed.
* ``token_matches``: a browser cannot set ``Authorization`` on a WebSocket, so
  the token is also accepted as the subprotocol ``token.<TOKEN>`` (offered
  beside ``callstream``) or the query parameter ``token``.
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

__all__ = [
    "STATIC_DIR",
    "SUBPROTOCOL",
    "TOKEN_PREFIX",
    "StaticFile",
    "StaticFiles",
    "normalize_origin",
    "origin_allowed",
    "select_subprotocol",
    "token_matches",
]

STATIC_DIR = Path(__file__).resolve().parent / "static"
SUBPROTOCOL = "callstream"  # what the server answers when a client offers it
TOKEN_PREFIX = "token."  # a subprotocol that carries the token; never selected, never echoed

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",  # module scripts and worklets need a JavaScript type
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".ico": "image/x-icon",
    ".json": "application/json",
}


@dataclass(frozen=True)
class StaticFile:
    body: bytes
    content_type: str


class StaticFiles:
    """The files of ``root`` (one level, known types), by URL path; ``/`` is ``index.html``."""

    def __init__(self, root: Path = STATIC_DIR) -> None:
        self.files: dict[str, StaticFile] = {}
        for path in sorted(root.iterdir()) if root.is_dir() else ():
            kind = CONTENT_TYPES.get(path.suffix)
            if path.is_file() and kind is not None:
                self.files[f"/{path.name}"] = StaticFile(path.read_bytes(), kind)
        if "/index.html" in self.files:
            self.files["/"] = self.files["/index.html"]

    def get(self, target: str) -> StaticFile | None:
        """The file for a request target (``/app.js?v=2``: the query is ignored), or None."""
        return self.files.get(urlsplit(target).path)


_DEFAULT_PORTS = {"http": 80, "ws": 80, "https": 443, "wss": 443}


def normalize_origin(origin: str) -> tuple[str, str, int] | None:
    """``(scheme, host, port)`` of an origin such as ``https://app.example.com``; None if it is not one."""
    try:
        parts = urlsplit(origin.strip())
        port = parts.port
    except ValueError:
        return None
    scheme, host = parts.scheme.lower(), (parts.hostname or "").lower()
    if scheme not in _DEFAULT_PORTS or not host or parts.path not in ("", "/") or parts.query or parts.username:
        return None
    return scheme, host, port if port is not None else _DEFAULT_PORTS[scheme]


def _host_port(host_header: str, default_port: int) -> tuple[str, int] | None:
    try:
        parts = urlsplit(f"//{host_header.strip()}")
        port = parts.port
    except ValueError:
        return None
    if not parts.hostname:
        return None
    return parts.hostname.lower(), port if port is not None else default_port


def origin_allowed(origin: str | None, host: str | None, allowed: Sequence[str] = ()) -> bool:
    """May a WebSocket handshake with this ``Origin`` and ``Host`` header go on?

    No ``Origin``: yes (not a browser). Otherwise the origin's host:port must
    equal ``Host`` (the page this server serves), or the origin must be one of
    ``allowed`` (``scheme://host[:port]``). ``null`` and malformed origins are
    refused.
    """
    if origin is None:
        return True
    parsed = normalize_origin(origin)
    if parsed is None:
        return False
    scheme, name, port = parsed
    if host is not None and _host_port(host, _DEFAULT_PORTS[scheme]) == (name, port):
        return True
    return any(normalize_origin(a) == parsed for a in allowed)


def token_matches(expected: str, *, authorization: str | None, protocols: Sequence[str], target: str) -> bool:
    """Does the request carry ``expected``: ``Authorization: Bearer``, subprotocol ``token.X`` or ``?token=X``?

    Every candidate is compared in constant time.
    """
    want = expected.encode()
    candidates: list[str] = []
    if authorization is not None and authorization.startswith("Bearer "):
        candidates.append(authorization[len("Bearer "):])
    candidates += [p[len(TOKEN_PREFIX):] for p in protocols if p.startswith(TOKEN_PREFIX)]
    candidates += parse_qs(urlsplit(target).query).get("token", [])
    ok = False
    for given in candidates:
        ok |= hmac.compare_digest(given.encode(), want)
    return ok


def select_subprotocol(offered: Sequence[str]) -> str | None:
    """``callstream`` when the client offers it (browsers then require it in the answer), else none."""
    return SUBPROTOCOL if SUBPROTOCOL in offered else None

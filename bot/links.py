"""Run links that cannot be guessed: `/runs/<id>?token=<t>`, where `t` is an HMAC of the run's id
under the server's link key. Run ids are sequential, so without the token `/runs/1..N` would show
every repository's reports; the bot puts the token in every comment and status it writes, and a
page without a valid one is a 404 (until the web UI has logins)."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable

TOKEN_BYTES = 16  # 128 bits: unguessable, and short enough for a status link


def link_key(link_secret: str | None, fallbacks: Iterable[str]) -> bytes:
    """The key run tokens are made with: `link_secret` from the server configuration, else one
    derived from the forges' webhook secrets (every web and worker process has them; rotating one
    then invalidates earlier links, which `link_secret` avoids)."""
    material = link_secret or "\n".join(sorted(s for s in fallbacks if s))
    return hmac.new(b"sluice run links", material.encode(), hashlib.sha256).digest()


def run_token(key: bytes, run_id: int) -> str:
    return hmac.new(key, f"run:{run_id}".encode(), hashlib.sha256).hexdigest()[:2 * TOKEN_BYTES]


def valid_token(key: bytes, run_id: int, token: str | None) -> bool:
    return token is not None and hmac.compare_digest(run_token(key, run_id).encode(), token.encode())

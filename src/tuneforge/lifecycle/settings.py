"""How a run is served, and who may call it: limits, the bearer token and the rule that guards exposure."""

from __future__ import annotations

import hmac
import ipaddress
from dataclasses import dataclass

from tuneforge.errors import TuneforgeError

LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost"}


@dataclass(frozen=True)
class ServeSettings:
    """Everything `create_app` needs besides the run; the defaults suit one CPU machine on localhost.

    `host` and `port` are where the server binds; the host also decides whether a token is required.
    `threads` sets torch's intra-op threads when the app starts (None leaves them alone): with several server
    workers each one should get its share of the cores, or they slow each other down.
    """

    host: str = "127.0.0.1"
    port: int = 8000
    token: str | None = None
    max_batch: int = 64
    max_text_chars: int = 10_000
    batch_size: int = 64
    device: str = "auto"
    threads: int | None = None
    # Explanations cost hundreds of forward passes; these keep one request around a second on CPU.
    ig_steps: int = 32
    shap_evals: int = 100
    lime_samples: int = 200
    # Explanations computed at once, on their own threads and copy of the model; one more is refused (429).
    explain_workers: int = 1
    # Seconds between checks of the followed alias (a registered model only); 0 turns hot reload off.
    reload_interval: float = 10.0
    # Store every answered prediction (input, output, confidence, version) when a feedback store is given.
    log_predictions: bool = True
    # Run the code a served run names (domain functions, remote model code); off: such a run is refused.
    trust_run_code: bool = False

    def __post_init__(self) -> None:
        for name in ("max_batch", "max_text_chars", "batch_size", "ig_steps", "shap_evals", "lime_samples",
                     "explain_workers"):
            if getattr(self, name) < 1:
                raise TuneforgeError(f"serve setting {name} must be at least 1, not {getattr(self, name)}",
                                     fix=f"pass a positive {name}")
        if self.reload_interval < 0:
            raise TuneforgeError(f"reload interval {self.reload_interval} is negative",
                                 fix="pass seconds between alias checks, or 0 to turn hot reload off")
        if not 0 <= self.port <= 65535:
            raise TuneforgeError(f"port {self.port} is out of range", fix="pass a port between 1 and 65535")


def is_loopback(host: str) -> bool:
    """Only addresses that never leave the machine count; any name other than localhost is treated as exposed."""
    name = host.strip().strip("[]").lower()
    if name in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def check_exposure(settings: ServeSettings) -> None:
    """A model reachable from the network must not answer strangers: no token, no start."""
    if not is_loopback(settings.host) and not settings.token:
        raise TuneforgeError(
            f"refusing to serve on {settings.host} without a token: anyone who can reach it could use the model",
            fix="pass --token SECRET (or set TUNEFORGE_TOKEN), or bind to 127.0.0.1",
        )


def token_matches(header: str | None, token: str) -> bool:
    """Whether an Authorization header carries the bearer token; constant-time, so timing leaks nothing."""
    scheme, _, value = (header or "").partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(value.strip().encode("utf-8"), token.encode("utf-8"))

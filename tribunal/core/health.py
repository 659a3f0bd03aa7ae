"""Liveness and readiness of one tier process, for Kubernetes probes and Docker healthchecks.

    GET /livez   200 while the consume loop iterates; 503 once it has not for `stale_after_s`
                 (set to `runtime.max_poll_interval_ms`: past that the broker has already
                 evicted the consumer from its group, so restarting it is the cure).
    GET /readyz  200 once the consumer joined its group and the partitions assigned to it have
                 their state restored (an idle standby with no partition is ready too); 503
                 before, and while a rebalance is in progress. Also 503 when not live.

The server runs on its own thread and only reads what the loop last recorded, so a batch that
keeps the event loop busy (an in-process model) is judged by the loop's progress, not by
whether the HTTP request happened to be answered in time.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import orjson

__all__ = ["Health", "HealthServer", "serve_health"]


@dataclass
class Health:
    """What the runtime loop reports about itself. Plain attribute writes: the GIL makes each
    one atomic, and a probe that reads a value one loop iteration old is still right."""

    stale_after_s: float
    clock: Callable[[], float] = field(default=time.monotonic, repr=False)
    last_beat: float = field(default=float("-inf"))
    joined: bool = False
    rebalancing: bool = False
    partitions: int = 0
    stopped: bool = False

    def _now(self) -> float:
        return self.clock()

    def beat(self) -> None:
        """The loop started an iteration."""
        self.last_beat = self._now()

    def revoking(self) -> None:
        """A rebalance began: partitions are about to move, state about to be restored."""
        self.rebalancing = True

    def assigned(self, partitions: int) -> None:
        """The rebalance completed and every assigned partition's state is restored."""
        self.joined, self.rebalancing, self.partitions = True, False, partitions
        self.beat()  # a long restore is progress, not a stall

    def stop(self) -> None:
        self.stopped = True

    def live(self) -> bool:
        return not self.stopped and self._now() - self.last_beat <= self.stale_after_s

    def ready(self) -> bool:
        return self.live() and self.joined and not self.rebalancing

    def report(self) -> dict[str, object]:
        since = self._now() - self.last_beat
        return {
            "live": self.live(),
            "ready": self.ready(),
            "partitions": self.partitions,
            "rebalancing": self.rebalancing,
            "seconds_since_loop": round(since, 3) if since != float("inf") else None,
        }


class HealthServer:
    """`/livez` and `/readyz` of one `Health` on a daemon thread; `close()` stops it."""

    def __init__(self, health: Health, port: int, host: str = "0.0.0.0") -> None:
        handler = _handler_for(health)
        self._server = ThreadingHTTPServer((host, port), handler)
        self._server.daemon_threads = True
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="health", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def serve_health(health: Health, port: int | None) -> HealthServer | None:
    """Start the health endpoint on `port` (0 picks a free one); None disables it."""
    return None if port is None else HealthServer(health, port)


def _handler_for(health: Health) -> type[BaseHTTPRequestHandler]:
    class _Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            checks = {"/livez": health.live, "/readyz": health.ready, "/healthz": health.ready}
            check = checks.get(self.path.split("?", 1)[0])
            if check is None:
                self._send(404, {"error": "not found", "paths": sorted(checks)})
                return
            self._send(200 if check() else 503, health.report())

        def _send(self, status: int, body: dict[str, object]) -> None:
            payload = orjson.dumps(body)
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: object) -> None:
            """Probes every few seconds would drown the tier's own log lines."""

    return _Handler

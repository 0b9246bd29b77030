"""A local stand-in for Slack's Web API `chat.postMessage`, answering as Slack's documentation
describes (reference: ../shared/reference/saas-apis.md §8): a Bearer bot token is required
(`not_authed` / `invalid_auth`); errors are HTTP 200 with `{"ok": false, "error": ...}` — an
unknown channel gives `channel_not_found`, one the bot has not joined `not_in_channel`, a message
without `text` or `blocks` `no_text`; each channel takes one message per `interval` seconds
(with a burst of `burst`), beyond which it answers 429 with `Retry-After` and
`{"ok": false, "error": "ratelimited"}`. JSON and form bodies are accepted. Incoming webhooks
(`POST /services/T/B/X`, each configured to post to a channel) answer `ok` in plain text, 404
`no_service` for an unknown path and 400 `invalid_payload` for a body that is not JSON with
`text`, under the same per-channel limit. Messages posted are kept in `messages`; 429s
answered are counted in `rate_limited`.
"""

from __future__ import annotations

import json
import math
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class SlackStandIn:
    """Runs on a free port of 127.0.0.1 until `close()`."""

    def __init__(self, tokens: list[str], channels: list[str], joined: list[str] | None = None,
                 hooks: dict[str, str] | None = None, interval: float = 1.0, burst: int = 1) -> None:
        self.tokens = set(tokens)
        self.hooks = dict(hooks or {})  # webhook path -> channel
        self.channels = set(channels)
        self.joined = set(joined if joined is not None else channels)
        self.interval = interval
        self.burst = burst
        self.messages: list[dict] = []
        self.rate_limited = 0
        self._buckets: dict[str, tuple[float, float]] = {}  # channel -> (tokens, last refill)
        self._lock = threading.Lock()
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep test output quiet
                pass

            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                standin._post(self)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _take(self, channel: str) -> float:
        """0 when `channel` may take a message now, else the seconds until it may."""
        with self._lock:
            now = time.monotonic()
            tokens, last = self._buckets.get(channel, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - last) / self.interval)
            if tokens >= 1:
                self._buckets[channel] = (tokens - 1, now)
                return 0.0
            self._buckets[channel] = (tokens, now)
            return (1 - tokens) * self.interval

    def _limited(self, channel: str) -> dict | None:
        """The Retry-After header when `channel` is over its limit (the 429 is counted)."""
        wait = self._take(channel)
        if wait <= 0:
            return None
        with self._lock:
            self.rate_limited += 1
        return {"Retry-After": str(math.ceil(wait))}

    def _record(self, channel: str, text: str) -> str:
        ts = f"{time.time():.6f}"
        with self._lock:
            self.messages.append({"channel": channel, "text": text, "ts": ts})
        return ts

    def _webhook(self, request: BaseHTTPRequestHandler, raw: bytes) -> None:
        def answer(status: int, text: str, headers: dict | None = None) -> None:
            data = text.encode()
            request.send_response(status)
            request.send_header("Content-Type", "text/plain")
            for key, value in (headers or {}).items():
                request.send_header(key, value)
            request.send_header("Content-Length", str(len(data)))
            request.end_headers()
            request.wfile.write(data)

        channel = self.hooks.get(request.path)
        if channel is None:
            return answer(404, "no_service")
        try:
            text = json.loads(raw or b"{}").get("text")
        except ValueError:
            return answer(400, "invalid_payload")
        if not text:
            return answer(400, "no_text")
        limited = self._limited(channel)
        if limited:
            return answer(429, "rate_limited", limited)
        self._record(channel, text)
        return answer(200, "ok")

    def _post(self, request: BaseHTTPRequestHandler) -> None:
        def answer(status: int, body: dict, headers: dict | None = None) -> None:
            data = json.dumps(body).encode()
            request.send_response(status)
            request.send_header("Content-Type", "application/json; charset=utf-8")
            for key, value in (headers or {}).items():
                request.send_header(key, value)
            request.send_header("Content-Length", str(len(data)))
            request.end_headers()
            request.wfile.write(data)

        raw = request.rfile.read(int(request.headers.get("Content-Length") or 0))
        if request.path.startswith("/services/"):
            return self._webhook(request, raw)
        if request.path != "/api/chat.postMessage":
            return answer(404, {"ok": False, "error": "unknown_method"})
        if request.headers.get("Content-Type", "").startswith("application/json"):
            try:
                params = json.loads(raw or b"{}")
            except ValueError:
                return answer(200, {"ok": False, "error": "invalid_json"})
        else:
            params = {k: v[0] for k, v in urllib.parse.parse_qs(raw.decode()).items()}
        auth = request.headers.get("Authorization", "")
        token = auth.removeprefix("Bearer ") if auth.startswith("Bearer ") else params.get("token")
        if not token:
            return answer(200, {"ok": False, "error": "not_authed"})
        if token not in self.tokens:
            return answer(200, {"ok": False, "error": "invalid_auth"})
        channel = params.get("channel")
        if channel not in self.channels:
            return answer(200, {"ok": False, "error": "channel_not_found"})
        if channel not in self.joined:
            return answer(200, {"ok": False, "error": "not_in_channel"})
        if not params.get("text") and not params.get("blocks"):
            return answer(200, {"ok": False, "error": "no_text"})
        limited = self._limited(channel)
        if limited:
            return answer(429, {"ok": False, "error": "ratelimited"}, limited)
        ts = self._record(channel, params.get("text"))
        return answer(200, {"ok": True, "channel": channel, "ts": ts, "message": {"text": params.get("text")}})

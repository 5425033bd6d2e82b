"""Rate limits for what an attacker would repeat: asking for sign-in links and guessing tokens.

Counted in this process's memory, per key, over a sliding window: enough for the one web process
of the embedded stack. Several web processes each count on their own; put the same limits in
the proxy in front of them too (README, "Beyond one machine").
"""

import math
import time
from collections import deque

from fastapi import Request

from improve.errors import TooManyRequests
from improve.settings import settings


class Limit:
    """At most `count` events per key in any `seconds`."""

    def __init__(self, what: str, count: int, seconds: float) -> None:
        self.what, self.count, self.seconds = what, count, seconds
        self._events: dict[str, deque[float]] = {}

    def _recent(self, key: str, now: float) -> deque[float]:
        events = self._events.get(key, deque())
        while events and events[0] <= now - self.seconds:
            events.popleft()
        if not events:
            self._events.pop(key, None)  # memory holds only the keys that are busy now
        return events

    def check(self, key: str) -> None:
        """Refuse with 429 when the key has used its allowance."""
        now = time.monotonic()
        events = self._recent(key, now)
        if len(events) >= self.count:
            retry_after = max(1, math.ceil(events[0] + self.seconds - now))
            raise TooManyRequests(
                f"Too many {self.what} from here; please wait {retry_after} seconds and try again.",
                retry_after,
            )

    def hit(self, key: str) -> None:
        self._events.setdefault(key, deque()).append(time.monotonic())

    def reset(self) -> None:
        self._events.clear()


sign_in_per_client = Limit(
    "sign-in requests", settings.sign_in_requests_per_client, seconds=15 * 60
)
token_guesses = Limit("refused links or tokens", settings.token_guesses_per_client, seconds=60)


def client_of(request: Request) -> str:
    """Who is asking: the client's address (uvicorn's --proxy-headers sets it behind a proxy)."""
    return request.client.host if request.client else "unknown"


def check_guesses(request: Request) -> None:
    """A dependency for every route that takes a token: a client that keeps offering wrong ones
    is refused for a while, right ones included."""
    token_guesses.check(client_of(request))


def count_guess(request: Request) -> None:
    token_guesses.hit(client_of(request))


def reset_all() -> None:
    """Forget every count (tests start each from nothing)."""
    sign_in_per_client.reset()
    token_guesses.reset()

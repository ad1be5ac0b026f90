# -*- test-case-name: tests.test_loginlimit -*-
"""Login admission: token buckets for the whole server and for each client IP.

A reconnect storm after a restart, or one address hammering the authorizer,
is answered at once with login error 0x0018 ("connecting too frequently";
clients back off and retry) instead of queueing work until connections time
out. Pure: the caller passes the time.
"""

from __future__ import annotations

from collections import OrderedDict

import attrs

#: IPs whose buckets are remembered; the least recently seen are dropped.
MAX_TRACKED_ADDRESSES = 65_536


@attrs.define(slots=True)
class TokenBucket:
    rate: float
    burst: float
    tokens: float
    #: None until the first take: a bucket starts full.
    updated: float | None = None

    def take(self, now: float) -> bool:
        if self.updated is not None:
            self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


class LoginLimiter:
    """``admit(ip, now)`` is True when a login may proceed: the server-wide
    bucket and the address's bucket both have a token. A rate of 0 disables
    that bucket."""

    def __init__(
        self,
        server_rate: float,
        server_burst: float,
        per_ip_rate: float,
        per_ip_burst: float,
    ) -> None:
        self.server_rate = server_rate
        self.per_ip_rate = per_ip_rate
        self.per_ip_burst = per_ip_burst
        self._server = TokenBucket(server_rate, server_burst, server_burst)
        self._addresses: OrderedDict[str, TokenBucket] = OrderedDict()

    def admit(self, ip: str, now: float) -> bool:
        if self.per_ip_rate > 0:
            bucket = self._addresses.get(ip)
            if bucket is None:
                bucket = TokenBucket(self.per_ip_rate, self.per_ip_burst, self.per_ip_burst, now)
                self._addresses[ip] = bucket
                if len(self._addresses) > MAX_TRACKED_ADDRESSES:
                    self._addresses.popitem(last=False)
            else:
                self._addresses.move_to_end(ip)
            if not bucket.take(now):
                return False
        if self.server_rate > 0:
            return self._server.take(now)
        return True

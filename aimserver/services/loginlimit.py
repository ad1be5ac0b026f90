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


#: Failed logins (wrong password) an address, or a screen name, may have
#: before it must wait; each further failure doubles the wait.
FAILURES_BEFORE_BACKOFF = 5
FIRST_BACKOFF = 2.0
MAX_BACKOFF = 15 * 60.0
#: A record with no failure for this long is forgotten.
FORGET_AFTER = 3600.0


@attrs.define(slots=True)
class _Failures:
    count: int = 0
    last: float = 0.0
    until: float = 0.0


class FailedLogins:
    """Password guessing, answered with back-off: after
    ``FAILURES_BEFORE_BACKOFF`` wrong passwords from one address, or for one
    screen name from anywhere, its next logins are refused (0x0018, the
    client retries later) for ``FIRST_BACKOFF`` seconds, doubling with each
    further failure up to ``MAX_BACKOFF``. A success clears the name's
    record (not the address's: logging in to one's own account must not
    reset a guesser's). Both tables are bounded, least recently failed
    dropped first. Pure: the caller passes the time."""

    def __init__(self, max_tracked: int = MAX_TRACKED_ADDRESSES) -> None:
        self.max_tracked = max_tracked
        self._addresses: OrderedDict[str, _Failures] = OrderedDict()
        self._names: OrderedDict[str, _Failures] = OrderedDict()

    def blocked(self, ip: str, name_key: str, now: float) -> bool:
        return any(
            record is not None and now < record.until
            for record in (self._addresses.get(ip), self._names.get(name_key))
        )

    def failed(self, ip: str, name_key: str, now: float) -> None:
        for table, key in ((self._addresses, ip), (self._names, name_key)):
            record = table.pop(key, None)
            if record is None or now - record.last > FORGET_AFTER:
                record = _Failures()
            record.count += 1
            record.last = now
            excess = record.count - FAILURES_BEFORE_BACKOFF
            if excess >= 0:
                record.until = now + min(MAX_BACKOFF, FIRST_BACKOFF * 2.0 ** min(excess, 20))
            table[key] = record
            if len(table) > self.max_tracked:
                table.popitem(last=False)

    def succeeded(self, name_key: str) -> None:
        self._names.pop(name_key, None)

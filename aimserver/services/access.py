# -*- test-case-name: tests.test_service_access -*-
"""Allow and deny lists of screen names and IP networks ([access] in the
INI), checked when a connection is made (addresses, on every port) and at
login (names), and reloaded live (SIGHUP): what the new lists refuse is
signed off at once."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

import attrs

from aimserver.config import AccessConfig
from aimserver.wire.screenname import normalize

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@attrs.frozen
class AccessLists:
    allow_names: frozenset[str]
    deny_names: frozenset[str]
    allow_networks: tuple[_Network, ...]
    deny_networks: tuple[_Network, ...]

    @classmethod
    def of(cls, config: AccessConfig) -> AccessLists:
        return cls(
            frozenset(normalize(n) for n in config.allow_names),
            frozenset(normalize(n) for n in config.deny_names),
            _networks(config.allow_networks),
            _networks(config.deny_networks),
        )

    def admits_name(self, screen_name: str) -> bool:
        key = normalize(screen_name)
        return key not in self.deny_names and (not self.allow_names or key in self.allow_names)

    def admits_address(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return not self.allow_networks
        if any(ip in network for network in self.deny_networks):
            return False
        return not self.allow_networks or any(ip in network for network in self.allow_networks)


def _networks(values: Iterable[str]) -> tuple[_Network, ...]:
    return tuple(ipaddress.ip_network(v, strict=False) for v in values)


class AccessControl:
    """The lists in force; ``reload`` swaps them."""

    def __init__(self, config: AccessConfig) -> None:
        self.lists = AccessLists.of(config)

    def admits_name(self, screen_name: str) -> bool:
        return self.lists.admits_name(screen_name)

    def admits_address(self, address: str) -> bool:
        return self.lists.admits_address(address)

    def reload(self, config: AccessConfig) -> bool:
        """Use ``config``'s lists; True when they changed."""
        lists = AccessLists.of(config)
        changed = lists != self.lists
        self.lists = lists
        return changed

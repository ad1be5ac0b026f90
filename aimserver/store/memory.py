# -*- test-case-name: tests.test_store -*-
"""
An in-memory :class:`~aimserver.store.interfaces.IUserStore`: the reference
implementation of the contract, for tests. Every Deferred it returns has
already fired. Each role is implemented in its own module; this is the store
they make together.
"""

from __future__ import annotations

from zope.interface import implementer

from aimserver.store.accounts import MemoryAccountStore
from aimserver.store.bart_items import MemoryBartStore
from aimserver.store.chat_rooms import MemoryChatRoomStore
from aimserver.store.directory import MemoryDirectoryStore
from aimserver.store.feedbags import MemoryFeedbagStore
from aimserver.store.history import MemoryHistoryStore
from aimserver.store.interfaces import IUserStore
from aimserver.store.motd import MemoryMotdStore
from aimserver.store.offline_messages import MemoryOfflineMessageStore
from aimserver.store.server_secrets import MemorySecretStore
from aimserver.store.warning_levels import MemoryWarningStore

__all__ = ["MemoryUserStore"]


@implementer(IUserStore)
class MemoryUserStore(
    MemoryAccountStore,
    MemoryWarningStore,
    MemoryFeedbagStore,
    MemoryOfflineMessageStore,
    MemorySecretStore,
    MemoryDirectoryStore,
    MemoryBartStore,
    MemoryChatRoomStore,
    MemoryMotdStore,
    MemoryHistoryStore,
):
    """
    Accounts, warning levels, feedbags, offline messages, secrets,
    directory records, buddy icons, public chat rooms, MOTDs seen and
    conversation histories in dictionaries, lost when the process ends. One
    object provides every role, so test doubles can subclass it and override
    any method.

    :param clock: where ``created_at`` comes from; the wall clock if ``None``.
    """

# -*- test-case-name: tests.test_service_userlookup -*-
"""UserLookup (0x000A): screen names by e-mail address, on the BOS connection.

0A,02's body is the address, raw, to the end of the SNAC (Go). The answer,
0A,03, is a TLV list with one 0x0001 (the display form) per account that has
that address (ignoring ASCII case) and lets itself be found by it
(registration status 2 or 3), in name order, without those who block the
asker (``odir.DirectoryPrivacy``): the first ``odir.MAX_RESULTS`` (25) of
the first ``odir.SEARCH_CAP`` (100) matches that remain, so that those who
block the asker take no one else's place. None, or an address no account
can have (``odir.email_query``): 0A,01 0x0014. An address longer than any
can be (254 bytes) is 0x000E; a store that fails, 0x0005.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from aimserver.registry import SessionInstance, UserRegistry
from aimserver.services.base import HandlerTable, Replies, Reply, SnacError
from aimserver.services.odir import (
    MAX_RESULTS,
    SEARCH_CAP,
    DirectoryPrivacy,
    NoMatch,
    email_query,
)
from aimserver.store.interfaces import (
    DirectoryEntry,
    DirectoryQuery,
    IDirectoryStore,
    IFeedbagStore,
    StoreError,
)
from aimserver.wire.codes import FoodGroup, SnacErrorCode, UserLookup
from aimserver.wire.snac import SnacHeader
from aimserver.wire.tlv import Tlv, TlvList

TAG_SCREEN_NAME = 0x0001


class UserLookupService:
    log = Logger()

    def __init__(
        self, registry: UserRegistry, store: IDirectoryStore, feedbags: IFeedbagStore
    ) -> None:
        self.store = store
        self.privacy = DirectoryPrivacy(registry, feedbags)

    def handlers(self) -> HandlerTable:
        return {(FoodGroup.USER_LOOKUP, UserLookup.FIND_BY_EMAIL): self.find_by_email}

    def find_by_email(
        self, session: SessionInstance, request: SnacHeader, body: bytes
    ) -> Deferred[Replies]:
        try:
            email = email_query(body)
        except NoMatch:
            raise SnacError(SnacErrorCode.NO_MATCH) from None
        searcher = session.user_key

        def reply(entries: list[DirectoryEntry]) -> Replies:
            if not entries:
                raise SnacError(SnacErrorCode.NO_MATCH)
            shown = entries[:MAX_RESULTS]
            tlvs = TlvList(Tlv(TAG_SCREEN_NAME, e.screen_name.encode("ascii")) for e in shown)
            return [Reply(FoodGroup.USER_LOOKUP, UserLookup.FIND_REPLY, tlvs.pack_list())]

        def failed(failure: Failure) -> None:
            failure.trap(StoreError)
            self.log.info(
                "{searcher}: lookup by e-mail failed: {error}",
                searcher=searcher,
                error=str(failure.value),
            )
            raise SnacError(SnacErrorCode.SERVICE_UNAVAILABLE)

        d = self.store.search_directory(DirectoryQuery(email=email), SEARCH_CAP)
        d.addErrback(failed)
        d.addCallback(lambda entries: self.privacy.visible_to(searcher, entries))
        return d.addCallback(reply)

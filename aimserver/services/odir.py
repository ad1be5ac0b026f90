# -*- test-case-name: tests.test_service_odir,tests.test_e2e_odir -*-
"""ODir (0x000F): directory search, on a service connection (01,04 for 0x000F).

0F,02 → 0F,03 searches the directory records (MULTISESSION.md §14: one per
user, whichever session wrote it). Which search is Go's choice
(FAMILIES.md §ODir), by the first of these tags the request carries:

* 0x0005 e-mail: accounts with that address whose registration status lets
  them be found by it (2 or 3); their name and address fields show only if
  they allow directory searches;
* 0x000B interest keyword: users who allow searches with that keyword;
* 0x0001 first or 0x0002 last name: users who allow searches whose record
  has every name-and-address field the request fills in (0x0001-0x0004,
  0x0006-0x0008, 0x000C, 0x000D, 0x0021);
* none of them, or a name search with neither name filled in: status 0x0004.

Values match ignoring ASCII case; an address is read as Admin reads one
(``admin.parse_email``), so one that no account could have set matches
nothing. A value longer than any stored one can be (128 bytes; 254 for an
address) is 0F,01 0x000E, as a body that does not parse. Users who block the
searcher (their permit/deny settings: ``privacy.Privacy``, the live ones of
a user signed on, else read from its stored feedbag) are left out; the user
is always found by itself. At most ``MAX_RESULTS`` (25) users are sent: a
search that finds more that the searcher may see, or ``SEARCH_CAP`` (100)
matches in all, answers 0x0003 ("too many results, narrow your search")
with none, so that a search cannot page through the directory. Each result
is the block Go sends: first and last name, state, city, country (empty
when unset) and the screen name.

0F,04 → 0F,05 lists the keywords users who allow searches have set, in
byte order, at most ``MAX_KEYWORDS`` (100), each a top-level keyword (kind
2, id 0): this server has no categories. Making the list reads the whole
directory table, so the reply is kept for ``KEYWORD_LIST_LIFETIME`` seconds
(a keyword set meanwhile shows up after at most that long).

A store that fails answers 0F,03 status 0x0001 (unavailable), or 0F,01
0x0005 for the keyword list.
"""

from __future__ import annotations

from collections.abc import Sequence

from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from aimserver.registry import SessionInstance, UserRegistry
from aimserver.services.admin import parse_email
from aimserver.services.base import HandlerTable, Replies, Reply, SnacError, bounded
from aimserver.services.locate import DIRECTORY_TAGS
from aimserver.services.privacy import privacy_of
from aimserver.store.interfaces import (
    MAX_DIRECTORY_FIELD_BYTES,
    DirectoryEntry,
    DirectoryFields,
    DirectoryQuery,
    Feedbag,
    IDirectoryStore,
    IFeedbagStore,
    StoreError,
)
from aimserver.wire.codes import AdminError, FoodGroup, ODir, ODirStatus, SnacErrorCode
from aimserver.wire.odir import KEYWORD, KeywordItem, KeywordListReply, ODirInfoReply
from aimserver.wire.screenname import normalize
from aimserver.wire.snac import SnacHeader
from aimserver.wire.tlv import Tlv, TlvList

FAMILIES = (FoodGroup.OSERVICE, FoodGroup.ODIR)

log = Logger()

#: The most users a search shows (ODir 0F,03, UserLookup 0A,03).
MAX_RESULTS = 25
#: The most matches a search reads from the store before leaving out those
#: who block the searcher (one privacy check each).
SEARCH_CAP = 100
MAX_KEYWORDS = 100
KEYWORD_LIST_LIFETIME = 300.0
#: The 0F,05 status (Go; the only one known).
KEYWORD_LIST_OK = 0x0001

TAG_FIRST_NAME = 0x0001
TAG_LAST_NAME = 0x0002
TAG_EMAIL = 0x0005
TAG_SCREEN_NAME = 0x0009
TAG_KEYWORD = 0x000B
#: The name-and-address tags of a search and the record field each one names
#: (the tags of Locate 02,09, less the charset).
SEARCH_TAGS = {tag: name for tag, name in DIRECTORY_TAGS.items() if name != "charset"}
#: What a result shows, in Go's order, then 0x0009 the screen name.
RESULT_TAGS = (
    (TAG_FIRST_NAME, "first_name"),
    (TAG_LAST_NAME, "last_name"),
    (0x0007, "state"),
    (0x0008, "city"),
    (0x0006, "country"),
)


class NoMatch(Exception):
    """A search whose value no account can have (an empty or non-ASCII
    address, an empty keyword): no results, without asking the store."""


def parse_query(tlvs: TlvList) -> DirectoryQuery | None:
    """The search a 0F,02 asks for, or None when it names none (status 0x0004).

    :raises NoMatch: it asks for something nothing matches.
    :raises SnacError: 0x000E, a value is longer than any stored one can be.
    """
    email = tlvs.get(TAG_EMAIL)
    if email is not None:
        return DirectoryQuery(email=email_query(email))
    keyword = tlvs.get(TAG_KEYWORD)
    if keyword is not None:
        if not bounded(keyword, MAX_DIRECTORY_FIELD_BYTES, "search keyword"):
            raise NoMatch()
        return DirectoryQuery(keyword=keyword)
    values = {}
    for tag, name in SEARCH_TAGS.items():
        value = tlvs.get(tag)
        if value:
            values[name] = bounded(value, MAX_DIRECTORY_FIELD_BYTES, "search field")
    if "first_name" not in values and "last_name" not in values:
        return None
    return DirectoryQuery(fields=DirectoryFields(**values))


def email_query(raw: bytes) -> str:
    """A searched e-mail address (ODir 0x0005, UserLookup 0A,02) in the form
    addresses are kept, read as Admin reads the one it sets.

    :raises NoMatch: not an address (empty, not ASCII, no ``local@domain``):
        no account can have it.
    :raises SnacError: 0x000E, longer than any address can be.
    """
    email = parse_email(raw)
    if email == AdminError.INVALID_EMAIL_LENGTH:
        log.info("search refused: e-mail address of {length} bytes", length=len(raw))
        raise SnacError(SnacErrorCode.BUSTED_SNAC_PAYLOAD)
    if isinstance(email, AdminError):
        raise NoMatch()
    return email


def result_block(entry: DirectoryEntry) -> TlvList:
    tlvs = [Tlv(tag, getattr(entry.fields, name)) for tag, name in RESULT_TAGS]
    tlvs.append(Tlv(TAG_SCREEN_NAME, entry.screen_name.encode("ascii")))
    return TlvList(tlvs)


def info_reply(status: int, entries: Sequence[DirectoryEntry] = ()) -> Replies:
    body = ODirInfoReply(status, tuple(result_block(e) for e in entries)).pack()
    return [Reply(FoodGroup.ODIR, ODir.INFO_REPLY, body)]


class DirectoryPrivacy:
    """Takes out of search results the users who block the searcher."""

    log = Logger()

    def __init__(self, registry: UserRegistry, feedbags: IFeedbagStore) -> None:
        self.registry = registry
        self.feedbags = feedbags

    def visible_to(
        self, searcher_key: str, entries: Sequence[DirectoryEntry]
    ) -> Deferred[list[DirectoryEntry]]:
        """The ``entries`` whose users let ``searcher_key`` see them, in order:
        a signed-on user's live settings (closed while they are being read),
        anyone else's read from the stored feedbag (one read each: callers
        bound the entries). A read that fails leaves its user out."""
        checks = [self._allows(entry, searcher_key) for entry in entries]
        allowed = defer.gatherResults(checks, consumeErrors=True)
        return allowed.addCallback(
            lambda oks: [entry for entry, ok in zip(entries, oks, strict=True) if ok]
        )

    def _allows(self, entry: DirectoryEntry, searcher_key: str) -> Deferred[bool]:
        key = normalize(entry.screen_name)
        if key == searcher_key:
            return defer.succeed(True)
        user = self.registry.by_key(key)
        if user is not None and user.privacy_loaded:
            privacy = user.privacy
            return defer.succeed(privacy is None or privacy.allows(searcher_key))

        def stored(bag: Feedbag) -> bool:
            privacy = privacy_of(bag.items)
            return privacy is None or privacy.allows(searcher_key)

        def failed(failure: Failure) -> bool:
            self.log.failure(
                "reading the privacy settings of {screen_name} for a search",
                failure,
                screen_name=entry.screen_name,
            )
            return False

        return self.feedbags.get_feedbag(entry.screen_name).addCallbacks(stored, failed)


class ODirService:
    """Directory search over the store's directory records."""

    log = Logger()

    def __init__(
        self,
        registry: UserRegistry,
        store: IDirectoryStore,
        feedbags: IFeedbagStore,
        clock: IReactorTime,
    ) -> None:
        self.registry = registry
        self.store = store
        self.clock = clock
        self.privacy = DirectoryPrivacy(registry, feedbags)
        #: The 0F,05 body and until when it may be sent again.
        self._keyword_list: tuple[float, bytes] | None = None

    def handlers(self) -> HandlerTable:
        f = FoodGroup.ODIR
        return {
            (f, ODir.INFO_QUERY): self.info_query,
            (f, ODir.KEYWORD_LIST_QUERY): self.keyword_list_query,
        }

    def info_query(
        self, session: SessionInstance, request: SnacHeader, body: bytes
    ) -> Replies | Deferred[Replies]:
        tlvs = TlvList.unpack_list(body, "odir info query")
        try:
            query = parse_query(tlvs)
        except NoMatch:
            return info_reply(ODirStatus.OK)
        if query is None:
            return info_reply(ODirStatus.NAME_MISSING)
        searcher = session.user_key

        def found(entries: list[DirectoryEntry]) -> Deferred[Replies]:
            # Users who block the searcher are left out before counting: were
            # they counted, one of them could turn 25 results into "too many"
            # and so show that it exists and matches. At SEARCH_CAP matches
            # the rest are not read and more may be visible than were found,
            # so that is "too many" too, whoever blocks whom: a blocker can
            # only tip a search that SEARCH_CAP - 1 others match as well,
            # where one user among a hundred cannot be told apart.
            capped = len(entries) >= SEARCH_CAP
            shown = self.privacy.visible_to(searcher, entries)
            return shown.addCallback(lambda visible: counted(visible, capped))

        def counted(visible: list[DirectoryEntry], capped: bool) -> Replies:
            if capped or len(visible) > MAX_RESULTS:
                self.log.info(
                    "{searcher}: directory search refused, over {limit} results",
                    searcher=searcher,
                    limit=MAX_RESULTS,
                )
                return info_reply(ODirStatus.TOO_MANY_RESULTS)
            return info_reply(ODirStatus.OK, visible)

        def failed(failure: Failure) -> Replies:
            failure.trap(StoreError)
            self.log.info(
                "{searcher}: directory search failed: {error}",
                searcher=searcher,
                error=str(failure.value),
            )
            return info_reply(ODirStatus.UNAVAILABLE)

        d = self.store.search_directory(query, SEARCH_CAP)
        return d.addCallback(found).addErrback(failed)

    def keyword_list_query(
        self, session: SessionInstance, request: SnacHeader, body: bytes
    ) -> Replies | Deferred[Replies]:
        """0F,04 → 0F,05; the body (empty) is not read."""
        now = self.clock.seconds()
        cached = self._keyword_list
        if cached is not None and cached[0] > now:
            return [Reply(FoodGroup.ODIR, ODir.KEYWORD_LIST_REPLY, cached[1])]

        def reply(keywords: list[bytes]) -> Replies:
            items = tuple(KeywordItem(KEYWORD, 0, keyword) for keyword in keywords)
            body = KeywordListReply(KEYWORD_LIST_OK, items).pack()
            self._keyword_list = (now + KEYWORD_LIST_LIFETIME, body)
            return [Reply(FoodGroup.ODIR, ODir.KEYWORD_LIST_REPLY, body)]

        def failed(failure: Failure) -> None:
            failure.trap(StoreError)
            self.log.info("keyword list failed: {error}", error=str(failure.value))
            raise SnacError(SnacErrorCode.SERVICE_UNAVAILABLE)

        return self.store.interest_keywords(MAX_KEYWORDS).addCallbacks(reply, failed)

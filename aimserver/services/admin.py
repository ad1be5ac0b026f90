# -*- test-case-name: tests.test_service_admin,tests.test_e2e_admin -*-
"""Admin (0x0007): account settings, on a service connection (01,04 for 0x0007).

Every setting is the user's (MULTISESSION.md §4), kept in the account record:
whichever session changes it, it changes for all of them and for the next
login. FAMILIES.md §Admin has the layouts and codes.

* 07,02 → 07,03: the formatted screen name (0x0001), the e-mail address
  (0x0011, empty for none) and the registration status (0x0013) the request
  names (libpurple asks for one at a time; several are answered together, in
  the order asked). A request naming none of them gets 07,01 0x0008.
* 07,04 → 07,05: one change per request, the first of these the request
  carries (Go's order): display format, e-mail, registration status,
  password. A refusal is a 07,05 with TLV 0x0008 (the code) and 0x0004 (an
  empty URL); a password change always answers an empty 0x0002 first, and a
  refusal adds 0x0008 only. A request with none of them gets 07,01 0x0008.

  - 0x0001: 3-16 characters (else 0x000B), a valid screen name (else
    0x0006), the same name in other case or spacing (else 0x0001). Once it
    is stored the user's sessions get 01,0F and those who see the user a
    03,0B, both in the new form.
  - 0x0011: at most 254 characters (0x000D), a plain ASCII ``local@domain``
    (0x0008); kept in lower case, which the reply echoes. A different
    address is unconfirmed.
  - 0x0013: a u16 of 1, 2 or 3 (else 0x0009).
  - 0x0002 with 0x0012: the old password is required (0x000F when missing or
    empty) and must be the account's (0x0002), checked against the stored
    credentials (not a cached copy) as sent and, failing that, un-roasted;
    the new one must be 4-16 bytes (0x000C). Its bytes are hashed as sent,
    as a roasted login does, so any charset works for the client that set
    it. After five wrong old passwords in ten minutes a user's next changes
    get 0x0013 until the ten minutes are over. Each change counts as wrong
    from the moment it asks for the stored credentials until they show the
    old password right, so that changes sent at once, on several
    connections, get no more guesses between them. The user's other
    sessions stay signed on (each proved the password when it signed on);
    the old password stops working for logins at once (docs/multisession.md).
* 07,06 → 07,07: 0x0023 with no e-mail address on file, 0x001E if already
  confirmed, else the account is marked confirmed and 0x0000 (nothing is
  mailed: this server sends no mail). The user class never carried the
  "unconfirmed" bit, so nothing else changes.

Store failures answer 07,05 with 0x0013, or 07,01 0x0005 for a query or a
confirmation.
"""

from __future__ import annotations

import hmac
import struct
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from aimserver.registry import SessionInstance, User, UserRegistry
from aimserver.services.base import HandlerTable, Replies, Reply, SnacError, acting_user, then
from aimserver.services.presence import Presence
from aimserver.store.credentials import (
    MAX_PASSWORD_LENGTH,
    MIN_PASSWORD_LENGTH,
    credentials_for,
    roast,
    strong_digest,
    weak_digest,
)
from aimserver.store.interfaces import (
    MAX_EMAIL_LENGTH,
    REGISTRATION_FULL,
    REGISTRATION_NONE,
    Account,
    IAccountStore,
    InvalidEmail,
    StoreError,
    account_now,
    check_email,
)
from aimserver.wire.admin import PERMISSIONS_READ_WRITE, AdminInfoReply, ConfirmReply
from aimserver.wire.codes import (
    Admin,
    AdminConfirmStatus,
    AdminError,
    FoodGroup,
    SnacErrorCode,
)
from aimserver.wire.screenname import is_valid_screen_name, normalize
from aimserver.wire.snac import SnacHeader
from aimserver.wire.tlv import Tlv, TlvList

FAMILIES = (FoodGroup.OSERVICE, FoodGroup.ADMIN)

TAG_SCREEN_NAME = 0x0001
TAG_NEW_PASSWORD = 0x0002
TAG_ERROR_URL = 0x0004
TAG_ERROR_CODE = 0x0008
TAG_EMAIL = 0x0011
TAG_OLD_PASSWORD = 0x0012
TAG_REGISTRATION = 0x0013
#: What 07,02 answers, in no particular order (the reply follows the request).
QUERYABLE = frozenset({TAG_SCREEN_NAME, TAG_EMAIL, TAG_REGISTRATION})

MIN_FORMAT_LENGTH = 3
MAX_FORMAT_LENGTH = 16
#: Wrong old passwords a user may give within ``PASSWORD_FAILURE_WINDOW``
#: seconds before password changes are refused for the rest of it.
MAX_PASSWORD_FAILURES = 5
PASSWORD_FAILURE_WINDOW = 600.0
#: Users whose failures are remembered at once; past it the oldest go.
MAX_TRACKED_FAILURES = 10_000


def format_problem(raw: bytes, key: str) -> AdminError | None:
    """Why 0x0001 ``raw`` may not become the display form of the account
    ``key`` (normalized), or None."""
    if not MIN_FORMAT_LENGTH <= len(raw) <= MAX_FORMAT_LENGTH:
        return AdminError.INVALID_NICKNAME_LENGTH
    try:
        name = raw.decode("ascii")
    except UnicodeDecodeError:
        return AdminError.INVALID_NICKNAME
    if not is_valid_screen_name(name):
        return AdminError.INVALID_NICKNAME
    if normalize(name) != key:
        return AdminError.VALIDATE_NICKNAME
    return None


def parse_email(raw: bytes) -> str | AdminError:
    """The address a 0x0011 sets, in the form it is kept; or why not."""
    if len(raw) > MAX_EMAIL_LENGTH:
        return AdminError.INVALID_EMAIL_LENGTH
    try:
        email = check_email(raw.decode("ascii"))
    except (UnicodeDecodeError, InvalidEmail):
        return AdminError.INVALID_EMAIL
    return email or AdminError.INVALID_EMAIL


def password_matches(account: Account, given: bytes) -> bool:
    """Whether ``given`` is the account's password: as sent (libpurple, Go)
    or un-roasted (in case a client roasts it), against either stored digest
    (an account registered through BUCP has only one that works). Every
    comparison runs, in constant time."""
    key = account.auth_key.encode("ascii")
    matched = False
    for candidate in (given, roast(given)):
        matched |= hmac.compare_digest(weak_digest(key, candidate), account.weak_md5)
        matched |= hmac.compare_digest(strong_digest(key, candidate), account.strong_md5)
    return matched


def info_reply(subtype: int, *tlvs: Tlv) -> Replies:
    return [
        Reply(
            FoodGroup.ADMIN, subtype, AdminInfoReply(PERMISSIONS_READ_WRITE, TlvList(tlvs)).pack()
        )
    ]


def change_refused(code: int) -> Replies:
    """07,05 refusing a format, e-mail or registration change."""
    return info_reply(
        Admin.INFO_CHANGE_REPLY, Tlv.u16(TAG_ERROR_CODE, code), Tlv(TAG_ERROR_URL, b"")
    )


def password_reply(code: int | None = None) -> Replies:
    """07,05 to a password change: an empty 0x0002, then the code of a refusal."""
    tlvs = [Tlv.empty(TAG_NEW_PASSWORD)]
    if code is not None:
        tlvs.append(Tlv.u16(TAG_ERROR_CODE, code))
    return info_reply(Admin.INFO_CHANGE_REPLY, *tlvs)


class AdminService:
    """The Admin food group over the account store."""

    log = Logger()

    def __init__(
        self,
        registry: UserRegistry,
        presence: Presence,
        store: IAccountStore,
        clock: IReactorTime,
    ) -> None:
        self.registry = registry
        self.presence = presence
        self.store = store
        self.clock = clock
        #: normalized name -> (wrong old passwords, when the first of them came).
        self._failures: dict[str, tuple[int, float]] = {}

    def handlers(self) -> HandlerTable:
        f = FoodGroup.ADMIN
        return {
            (f, Admin.INFO_QUERY): self.info_query,
            (f, Admin.INFO_CHANGE): self.info_change,
            (f, Admin.CONFIRM_REQUEST): self.confirm,
        }

    # -- 07,02 -----------------------------------------------------------------------

    def info_query(
        self, session: SessionInstance, request: SnacHeader, body: bytes
    ) -> Replies | Deferred[Replies]:
        tlvs = TlvList.unpack_list(body, "admin info query")
        wanted = list(dict.fromkeys(t.tag for t in tlvs if t.tag in QUERYABLE))
        if not wanted:
            raise SnacError(SnacErrorCode.NOT_SUPPORTED_BY_HOST)
        user = acting_user(self.registry, session)

        def reply(account: Account | None) -> Replies:
            if account is None:
                raise SnacError(SnacErrorCode.SERVICE_UNAVAILABLE)
            values = {
                TAG_SCREEN_NAME: account.screen_name.encode("ascii"),
                TAG_EMAIL: account.email.encode("ascii"),
                TAG_REGISTRATION: struct.pack("!H", account.registration_status),
            }
            return info_reply(Admin.INFO_REPLY, *(Tlv(tag, values[tag]) for tag in wanted))

        return self._reading(account_now(self.store, user.screen_name), reply, user)

    # -- 07,04 -----------------------------------------------------------------------

    def info_change(
        self, session: SessionInstance, request: SnacHeader, body: bytes
    ) -> Replies | Deferred[Replies]:
        tlvs = TlvList.unpack_list(body, "admin info change")
        user = acting_user(self.registry, session)
        display = tlvs.get(TAG_SCREEN_NAME)
        if display is not None:
            return self._change_format(session, user, display)
        email = tlvs.get(TAG_EMAIL)
        if email is not None:
            return self._change_email(session, user, email)
        registration = tlvs.get(TAG_REGISTRATION)
        if registration is not None:
            return self._change_registration(session, user, registration)
        new_password = tlvs.get(TAG_NEW_PASSWORD)
        if new_password is not None:
            return self._change_password(session, user, new_password, tlvs.get(TAG_OLD_PASSWORD))
        raise SnacError(SnacErrorCode.NOT_SUPPORTED_BY_HOST)

    def _change_format(
        self, session: SessionInstance, user: User, raw: bytes
    ) -> Replies | Deferred[Replies]:
        problem = format_problem(raw, user.key)
        if problem is not None:
            return self._refused(session, user, "display format", problem)
        display = raw.decode("ascii")

        def stored(found: bool) -> Replies:
            if not found:
                return self._refused(session, user, "display format", AdminError.ALL_OTHER_ERRORS)
            self._changed(session, user, "display format")
            self._renamed(user, display)
            return info_reply(Admin.INFO_CHANGE_REPLY, Tlv(TAG_SCREEN_NAME, raw))

        written = self.store.set_screen_name_format(user.screen_name, display)
        return self._writing(written, stored, session, user, "display format")

    def _renamed(self, user: User, display: str) -> None:
        """The user now shows as ``display``: its sessions are told (01,0F),
        and whoever sees it gets the new form (03,0B). It is the user signed
        on now, which may be a new sign-on since the request was made."""
        current = self.registry.by_key(user.key)
        if current is None:
            return
        current.screen_name = display
        # Forget what watchers were told: the aggregate is the same, but the
        # name in it is not, so announce() sends a fresh 03,0B to those who
        # may see the user (nobody while it is invisible).
        current.announced = None
        self.presence.announce(current)
        self.presence.send_self_info(current)

    def _change_email(
        self, session: SessionInstance, user: User, raw: bytes
    ) -> Replies | Deferred[Replies]:
        email = parse_email(raw)
        if isinstance(email, AdminError):
            return self._refused(session, user, "e-mail", email)

        def stored(found: bool) -> Replies:
            if not found:
                return self._refused(session, user, "e-mail", AdminError.ALL_OTHER_ERRORS)
            self._changed(session, user, "e-mail address")
            return info_reply(Admin.INFO_CHANGE_REPLY, Tlv(TAG_EMAIL, email.encode("ascii")))

        written = self.store.set_email(user.screen_name, email)
        return self._writing(written, stored, session, user, "e-mail")

    def _change_registration(
        self, session: SessionInstance, user: User, raw: bytes
    ) -> Replies | Deferred[Replies]:
        status = int.from_bytes(raw, "big") if len(raw) == 2 else 0
        if not REGISTRATION_NONE <= status <= REGISTRATION_FULL:
            return self._refused(session, user, "registration", AdminError.INVALID_REGISTRATION)

        def stored(found: bool) -> Replies:
            if not found:
                return self._refused(session, user, "registration", AdminError.ALL_OTHER_ERRORS)
            self._changed(session, user, "registration status")
            return info_reply(Admin.INFO_CHANGE_REPLY, Tlv.u16(TAG_REGISTRATION, status))

        written = self.store.set_registration_status(user.screen_name, status)
        return self._writing(written, stored, session, user, "registration")

    def _change_password(
        self, session: SessionInstance, user: User, new: bytes, old: bytes | None
    ) -> Replies | Deferred[Replies]:
        what = "password"
        if not old:
            self._log_refusal(session, user, what, AdminError.NEED_OLD_PASSWORD)
            return password_reply(AdminError.NEED_OLD_PASSWORD)
        # Counted as a wrong guess now, before the asynchronous read, and
        # un-counted once the old password proves right (or nothing was
        # checked): a check against the count afterwards would let changes
        # sent together all pass it.
        attempt = self._attempt(user.key)
        if attempt is None:
            self._log_refusal(
                session, user, "password (too many wrong ones)", AdminError.ALL_OTHER_ERRORS
            )
            return password_reply(AdminError.ALL_OTHER_ERRORS)

        def check(found: dict[str, Account]) -> Replies | Deferred[Replies]:
            account = found.get(user.key)
            if account is None:
                self._uncount(user.key, attempt)
                self._log_refusal(session, user, what, AdminError.ALL_OTHER_ERRORS)
                return password_reply(AdminError.ALL_OTHER_ERRORS)
            if not password_matches(account, old):
                self._log_refusal(session, user, what, AdminError.VALIDATE_PASSWORD)
                return password_reply(AdminError.VALIDATE_PASSWORD)
            self._uncount(user.key, attempt)
            if not MIN_PASSWORD_LENGTH <= len(new) <= MAX_PASSWORD_LENGTH:
                self._log_refusal(session, user, what, AdminError.INVALID_PASSWORD_LENGTH)
                return password_reply(AdminError.INVALID_PASSWORD_LENGTH)
            written = self.store.set_credentials(
                user.screen_name, credentials_for(new), account.auth_key
            )
            return written.addCallback(replaced)

        def replaced(changed: bool) -> Replies:
            if not changed:
                # Deleted, or its password changed since it was read.
                self._log_refusal(session, user, what, AdminError.ALL_OTHER_ERRORS)
                return password_reply(AdminError.ALL_OTHER_ERRORS)
            self._failures.pop(user.key, None)
            self._changed(session, user, "password")
            return password_reply()

        def failed(failure: Failure) -> Replies:
            failure.trap(StoreError)
            self._store_failed(failure, user, what)
            return password_reply(AdminError.ALL_OTHER_ERRORS)

        def unchecked(failure: Failure) -> Failure:
            self._uncount(user.key, attempt)
            return failure

        # The stored credentials, not the cache's copy: get_accounts is never cached.
        read = self.store.get_accounts([user.screen_name])
        return read.addErrback(unchecked).addCallback(check).addErrback(failed)

    def _attempt(self, key: str) -> float | None:
        """Count a password change of the user as a wrong guess: None if its
        guesses are used up, else when the window it counts in started
        (for ``_uncount``)."""
        now = self.clock.seconds()
        count, since = self._failures.pop(key, (0, now))
        if now - since >= PASSWORD_FAILURE_WINDOW:
            count, since = 0, now
        if count >= MAX_PASSWORD_FAILURES:
            self._failures[key] = (count, since)
            return None
        while len(self._failures) >= MAX_TRACKED_FAILURES:
            del self._failures[next(iter(self._failures))]
        self._failures[key] = (count + 1, since)
        return since

    def _uncount(self, key: str, since: float) -> None:
        """Take back a guess ``_attempt`` counted in the window that started
        at ``since`` (gone or over: nothing to take back)."""
        entry = self._failures.get(key)
        if entry is None or entry[1] != since:
            return
        count = entry[0] - 1
        if count > 0:
            self._failures[key] = (count, since)
        else:
            del self._failures[key]

    # -- 07,06 -----------------------------------------------------------------------

    def confirm(
        self, session: SessionInstance, request: SnacHeader, body: bytes
    ) -> Replies | Deferred[Replies]:
        """07,06 → 07,07; the body (empty for every client) is not read."""
        user = acting_user(self.registry, session)

        def reply(status: int) -> Replies:
            return [Reply(FoodGroup.ADMIN, Admin.CONFIRM_REPLY, ConfirmReply(status).pack())]

        def confirmed(found: bool) -> Replies:
            if not found:
                raise SnacError(SnacErrorCode.SERVICE_UNAVAILABLE)
            self._changed(session, user, "confirmation")
            return reply(AdminConfirmStatus.EMAIL_SENT)

        def check(account: Account | None) -> Replies | Deferred[Replies]:
            if account is None:
                raise SnacError(SnacErrorCode.SERVICE_UNAVAILABLE)
            if not account.email:
                return reply(AdminConfirmStatus.NO_EMAIL)
            if account.confirmed:
                return reply(AdminConfirmStatus.ALREADY_CONFIRMED)
            written = self.store.set_confirmed(user.screen_name, True)
            return self._reading(written, confirmed, user)

        return self._reading(account_now(self.store, user.screen_name), check, user)

    # -- helpers -----------------------------------------------------------------------

    def _reading(self, value: Any, f: Callable[[Any], Any], user: User) -> Any:
        """``f(value)`` now or once ``value`` fires; a store failure is 0x0005."""

        def failed(failure: Failure) -> None:
            failure.trap(StoreError)
            self._store_failed(failure, user, "account")
            raise SnacError(SnacErrorCode.SERVICE_UNAVAILABLE)

        result = then(value, f)
        if isinstance(result, Deferred):
            result.addErrback(failed)
        return result

    def _writing(
        self,
        written: Deferred[bool],
        f: Callable[[bool], Replies],
        session: SessionInstance,
        user: User,
        what: str,
    ) -> Deferred[Replies]:
        """``f(found)`` once the write lands; a refused write is 0x0013."""

        def failed(failure: Failure) -> Replies:
            failure.trap(StoreError)
            self._store_failed(failure, user, what)
            return change_refused(AdminError.ALL_OTHER_ERRORS)

        return written.addCallbacks(f, failed)

    def _refused(self, session: SessionInstance, user: User, what: str, code: int) -> Replies:
        self._log_refusal(session, user, what, code)
        return change_refused(code)

    def _log_refusal(self, session: SessionInstance, user: User, what: str, code: int) -> None:
        self.log.info(
            "{screen_name} (instance {instance}): {what} change refused ({code:#06x})",
            screen_name=user.screen_name,
            instance=session.instance_id,
            what=what,
            code=code,
        )

    def _changed(self, session: SessionInstance, user: User, what: str) -> None:
        self.log.info(
            "{screen_name} (instance {instance}) changed the account's {what}",
            screen_name=user.screen_name,
            instance=session.instance_id,
            what=what,
        )

    def _store_failed(self, failure: Failure, user: User, what: str) -> None:
        self.log.info(
            "{what} of {screen_name}: the store refused: {error}",
            what=what,
            screen_name=user.screen_name,
            error=str(failure.value),
        )

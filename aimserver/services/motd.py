# -*- test-case-name: tests.test_service_motd,tests.test_e2e_api -*-
"""The message of the day (MULTISESSION.md §20): shown once per user, not
per session. The first session of a user that comes online after the MOTD
changed gets it, as a system IM; the user's other and later sessions do
not, and a restart does not show it again: the store keeps the digest of
the MOTD each user was shown. Set from the INI (``[motd] text``) and live
through the management API."""

from __future__ import annotations

import hashlib
from typing import Any

from twisted.logger import Logger

from aimserver.registry import SessionInstance, User, UserRegistry
from aimserver.services.icbm import system_message
from aimserver.store.interfaces import IMotdStore

#: The longest MOTD, in UTF-8 bytes (it goes out as one IM).
MAX_MOTD_LENGTH = 1024


class MotdService:
    log = Logger()

    def __init__(self, registry: UserRegistry, store: IMotdStore, text: str = "") -> None:
        self.registry = registry
        self.store = store
        self.set_text(text)

    def set_text(self, text: str) -> None:
        """A new MOTD ("" for none): every user is shown it once more."""
        if len(text.encode("utf-8")) > MAX_MOTD_LENGTH:
            raise ValueError(f"a MOTD has at most {MAX_MOTD_LENGTH} bytes")
        self.text = text
        self.digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:32] if text else ""

    def session_online(self, session: SessionInstance) -> None:
        """A session came online: the user's first since the MOTD changed
        gets it, unless the store says it was shown already."""
        user = self.registry.user_of(session)
        if not self.text or user is None or user.motd_digest == self.digest:
            return
        # Claimed now, so that the user's sessions coming online while the
        # store answers do not get it too.
        user.motd_digest = digest = self.digest
        d = self.store.get_motd_seen(user.key)
        d.addCallback(self._seen, session, user, self.text, digest)
        d.addErrback(
            lambda failure: self.log.failure("MOTD for {user}", failure, user=user.screen_name)
        )

    def _seen(
        self, seen: str | None, session: SessionInstance, user: User, text: str, digest: str
    ) -> Any:
        if seen == digest:
            return None
        if session.closed or not self.registry.deliver([session], system_message(text)):
            # Gone meanwhile: the user's next session gets it.
            user.motd_digest = None
            return None
        return self.store.set_motd_seen(user.key, digest)

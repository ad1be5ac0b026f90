# -*- test-case-name: tests.test_console -*-
"""The admin console over SSH: a ``twisted.conch`` manhole whose namespace
is the live server (``aimserver.console``).

Login is by public key (an OpenSSH ``authorized_keys`` file, read at each
login) or by password, checked against a PBKDF2 hash from the INI so that no
password is written down; only the ``[manhole] user`` name is accepted.
The SSH host key is an Ed25519 key made at the first start and kept in a
file readable by the server's user only (by default next to the database).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives.asymmetric import ed25519
from twisted.conch import manhole_ssh
from twisted.conch.checkers import IAuthorizedKeysDB, SSHPublicKeyChecker, readAuthorizedKeyFile
from twisted.conch.error import ValidPublicKey
from twisted.conch.insults import insults
from twisted.conch.manhole import ColoredManhole
from twisted.conch.ssh import keys
from twisted.cred import credentials, error
from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.portal import Portal
from twisted.internet import defer, threads
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from aimserver import console
from aimserver.config import Config

if TYPE_CHECKING:
    from aimserver.server import AimServer

__all__ = [
    "AuthorizedKeysFile",
    "PasswordHashChecker",
    "check_password",
    "hash_password",
    "host_key_path",
    "load_host_key",
    "manhole_factory",
]

log = Logger()

HASH_SCHEME = "pbkdf2_sha256"
#: OWASP's 2023 advice for PBKDF2-HMAC-SHA256 (about 0.2 s here, off the
#: reactor thread). The count is part of the hash, so raising it later
#: leaves older hashes valid.
HASH_ITERATIONS = 600_000
SALT_SIZE = 16


def hash_password(password: str, iterations: int | None = None, salt: bytes | None = None) -> str:
    """``pbkdf2_sha256$<iterations>$<salt hex>$<hash hex>`` of ``password``
    (UTF-8), for ``[manhole] password_hash``; ``HASH_ITERATIONS`` by default."""
    if iterations is None:
        iterations = HASH_ITERATIONS
    if salt is None:
        salt = secrets.token_bytes(SALT_SIZE)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt, iterations)
    return f"{HASH_SCHEME}${iterations}${salt.hex()}${digest.hex()}"


def check_password(password: bytes, encoded: str) -> bool:
    """``password`` matches ``encoded`` (a ``hash_password`` result); False
    for a malformed hash. Slow on purpose: call it off the reactor thread."""
    try:
        scheme, iterations, salt, expected = encoded.split("$")
        if scheme != HASH_SCHEME:
            return False
        digest = hashlib.pbkdf2_hmac("sha256", password, bytes.fromhex(salt), int(iterations))
        return hmac.compare_digest(digest, bytes.fromhex(expected))
    except ValueError:
        return False


@implementer(ICredentialsChecker)
class PasswordHashChecker:
    """The one console user's password, checked against its hash on the
    reactor's thread pool (PBKDF2 is slow by design).

    ``run(f, *args)`` calls ``f`` and returns a Deferred of its result
    (tests pass ``defer.maybeDeferred`` to check inline).
    """

    credentialInterfaces = (credentials.IUsernamePassword,)

    def __init__(
        self,
        user: str,
        password_hash: str,
        reactor: Any,
        run: Callable[..., defer.Deferred[bool]] | None = None,
    ) -> None:
        self.user = user.encode("utf-8")
        self.password_hash = password_hash
        self._run = run or (
            lambda f, *args: threads.deferToThreadPool(reactor, reactor.getThreadPool(), f, *args)
        )

    def requestAvatarId(self, creds: credentials.IUsernamePassword) -> defer.Deferred[bytes]:
        # Hash even for a wrong user name: the answer takes as long either way.
        d = self._run(check_password, creds.password, self.password_hash)

        def checked(matches: bool) -> bytes:
            if matches and hmac.compare_digest(creds.username, self.user):
                return creds.username
            log.info(
                "manhole: wrong password for {user!r}",
                user=creds.username.decode("utf-8", "replace"),
            )
            raise error.UnauthorizedLogin()

        return d.addCallback(checked)


@implementer(IAuthorizedKeysDB)
class AuthorizedKeysFile:
    """The keys of an OpenSSH ``authorized_keys`` file, for the console user
    only; read at each login, so edits apply at once."""

    def __init__(self, user: str, path: str) -> None:
        self.user = user.encode("utf-8")
        self.path = path

    def getAuthorizedKeys(self, avatarId: bytes) -> Iterator[keys.Key]:  # noqa: N802, N803
        if not hmac.compare_digest(avatarId, self.user):
            return iter(())
        try:
            with open(self.path, "rb") as f:
                return iter(list(readAuthorizedKeyFile(f)))
        except OSError as e:
            log.warn("manhole: cannot read {path}: {error}", path=self.path, error=e.strerror)
            return iter(())


class _KeyChecker(SSHPublicKeyChecker):
    """``SSHPublicKeyChecker`` that logs the keys it refuses."""

    def requestAvatarId(self, creds: credentials.ISSHPrivateKey) -> defer.Deferred[bytes]:  # noqa: N802
        def refused(failure: Failure) -> Failure:
            # ValidPublicKey is the "try signing with it" answer to a query.
            if failure.check(error.UnauthorizedLogin) and not failure.check(ValidPublicKey):
                log.info(
                    "manhole: refused key {fingerprint} for {user!r}",
                    fingerprint=keys.Key.fromString(creds.blob).fingerprint(
                        keys.FingerprintFormats.SHA256_BASE64
                    ),
                    user=creds.username.decode("utf-8", "replace"),
                )
            return failure

        return super().requestAvatarId(creds).addErrback(refused)


class _Realm(manhole_ssh.TerminalRealm):
    """A Python prompt per login, with a fresh namespace over the live server."""

    def __init__(self, server: AimServer) -> None:
        super().__init__()
        self.chainedProtocolFactory = lambda: insults.ServerProtocol(
            ColoredManhole, console.namespace(server)
        )

    def requestAvatar(self, avatarId: bytes, mind: Any, *interfaces: Any) -> Any:
        interface, avatar, _ = super().requestAvatar(avatarId, mind, *interfaces)
        user = avatarId.decode("utf-8", "replace")
        log.info("manhole: {user!r} logged in", user=user)
        return interface, avatar, lambda: log.info("manhole: {user!r} logged out", user=user)


def host_key_path(config: Config) -> str:
    """Where the host key is kept: ``[manhole] host_key``, or next to the database."""
    return config.manhole.host_key or f"{config.server.db}.manhole_host_key"


def load_host_key(path: str) -> keys.Key:
    """The host key in ``path``, made there (Ed25519, mode 0600) if there is
    no file yet.

    :raises OSError: it cannot be read or written.
    :raises keys.BadKeyError: the file holds no usable private key.
    """
    try:
        return keys.Key.fromFile(path)
    except FileNotFoundError:
        pass
    key = keys.Key(ed25519.Ed25519PrivateKey.generate())
    # O_EXCL: never overwrite a key another process made meanwhile.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.toString("openssh"))
    log.info(
        "manhole: made the SSH host key {path} ({fingerprint})",
        path=path,
        fingerprint=key.fingerprint(keys.FingerprintFormats.SHA256_BASE64),
    )
    return key


def manhole_factory(
    server: AimServer, host_key: keys.Key, reactor: Any
) -> manhole_ssh.ConchFactory:
    """The SSH server factory of the console over ``server``, with the logins
    of ``server.config.manhole`` (at least one must be set)."""
    settings = server.config.manhole
    checkers: list[ICredentialsChecker] = []
    if settings.authorized_keys:
        checkers.append(_KeyChecker(AuthorizedKeysFile(settings.user, settings.authorized_keys)))
    if settings.password_hash:
        checkers.append(PasswordHashChecker(settings.user, settings.password_hash, reactor))
    if not checkers:
        raise ValueError("the manhole needs [manhole] authorized_keys or password_hash")
    factory = manhole_ssh.ConchFactory(Portal(_Realm(server), checkers))
    # Instance dicts: ConchFactory's class-level ones are shared by every factory.
    factory.publicKeys = {host_key.sshType(): host_key.public()}
    factory.privateKeys = {host_key.sshType(): host_key}
    return factory

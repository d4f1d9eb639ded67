"""Kafka client security from the settings: the TLS context and the SASL credentials,
built here without aiokafka (sidecar.sink.kafka hands them to its clients).

Files are read when this is built, at start-up, so a missing or unreadable file is one
line and exit 2 before anything else starts; only the OAUTHBEARER token file is read
again, whenever it changes, because a token agent rewrites it.
"""

from __future__ import annotations

import os
import ssl
import threading
from dataclasses import dataclass, field
from pathlib import Path

from sidecar.config import KafkaSettings, flag_of
from sidecar.errors import StartupError


class SecurityFileError(StartupError, OSError):
    """A security file that cannot be used; names the option and the file. An OSError
    too: if it happens when a client is recreated later, Kafka is "unreachable" and
    retried, as for any I/O error, instead of ending the sink."""


def read_secret(option: str, path: Path) -> str:
    """The first line of a secret file, without its newline (how Kubernetes Secrets and
    `echo` write them); never echoed in an error."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise SecurityFileError(f"cannot read {flag_of(option)} {path}: {why}") from None
    secret = text.splitlines()[0].strip() if text.strip() else ""
    if not secret:
        raise SecurityFileError(f"{flag_of(option)} {path} is empty")
    return secret


class TokenFile:
    """An OAUTHBEARER token file, re-read when it changes (inode, size or mtime), so a
    rotated token is used from the next authentication on."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._seen: tuple[int, int, int] | None = None
        self._token = ""
        self._lock = threading.Lock()
        self.read()  # fail at start-up, not at the first connection

    def read(self) -> str:
        with self._lock:
            try:
                st = os.stat(self.path)
            except OSError as exc:
                raise SecurityFileError(
                    f"cannot read --sasl-oauth-token-file {self.path}: {exc.strerror}"
                ) from None
            stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
            if stamp != self._seen:
                self._token = read_secret("sasl_oauth_token_file", self.path)
                self._seen = stamp
            return self._token


@dataclass(frozen=True)
class ClientSecurity:
    """What a Kafka client needs to reach the brokers; `repr` shows no secret."""

    security_protocol: str
    ssl_context: ssl.SSLContext | None = None
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: str | None = field(default=None, repr=False)
    token_file: TokenFile | None = None


def client_security(settings: KafkaSettings) -> ClientSecurity:
    """Build the TLS context and read the secrets; raises StartupError (one line naming
    the option and the file) if a file cannot be used."""
    proto = settings.security_protocol
    context = ssl_context(settings) if proto in ("SSL", "SASL_SSL") else None
    mech = settings.sasl_mechanism if proto.startswith("SASL_") else None
    if mech is None:
        return ClientSecurity(proto, context)
    if mech == "OAUTHBEARER":
        assert settings.sasl_oauth_token_file is not None  # the model checked it
        return ClientSecurity(
            proto, context, mech, token_file=TokenFile(settings.sasl_oauth_token_file)
        )
    if settings.sasl_password_file is not None:
        password = read_secret("sasl_password_file", settings.sasl_password_file)
    else:
        assert settings.sasl_password is not None  # the model checked it
        password = settings.sasl_password.get_secret_value()
    return ClientSecurity(proto, context, mech, settings.sasl_username, password)


def ssl_context(settings: KafkaSettings) -> ssl.SSLContext:
    ca = settings.ssl_ca_file
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    if ca is not None:
        try:
            context.load_verify_locations(cafile=str(ca))
        except (OSError, ssl.SSLError) as exc:
            raise SecurityFileError(f"cannot use --ssl-ca-file {ca}: {_why(exc)}") from None
    context.check_hostname = settings.ssl_check_hostname
    if settings.ssl_cert_file is not None and settings.ssl_key_file is not None:
        password = None
        if settings.ssl_key_password_file is not None:
            password = read_secret("ssl_key_password_file", settings.ssl_key_password_file)
        try:
            context.load_cert_chain(
                str(settings.ssl_cert_file), str(settings.ssl_key_file), password=password
            )
        except (OSError, ssl.SSLError) as exc:
            raise SecurityFileError(
                f"cannot use --ssl-cert-file {settings.ssl_cert_file} with --ssl-key-file "
                f"{settings.ssl_key_file}: {_why(exc)}"
            ) from None
    return context


def _why(exc: OSError | ssl.SSLError) -> str:
    if isinstance(exc, ssl.SSLError):
        # e.g. "[SSL] PEM lib (_ssl.c:3900)" -> the reason code says more: "PEM_LIB",
        # "KEY_VALUES_MISMATCH", "BAD_DECRYPT" (a wrong key password).
        reason = getattr(exc, "reason", None)
        hints = {
            "KEY_VALUES_MISMATCH": "the key does not belong to the certificate",
            "BAD_DECRYPT": "wrong key password (--ssl-key-password-file)",
            "PEM_LIB": "not a PEM file, or an encrypted key without the right password",
            "NO_CERTIFICATE_OR_CRL_FOUND": "no certificate in the file",
        }
        return hints.get(str(reason), str(reason or exc))
    return exc.strerror or str(exc)

"""Why Kafka cannot be used, as a reason code (what /readyz shows, PROTOCOL §8) and a
one-line detail for people (what the log and `sidecar check` print).

Reasons split in two: those that waiting heals (the brokers are away) and those that
only a change of configuration heals (a certificate, a password, a missing topic);
the second kind fails readiness. Exceptions of the Python standard library are
classified here; sidecar.sink.kafka classifies aiokafka's own before falling back here.
"""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass
from enum import StrEnum


class Reason(StrEnum):
    UNREACHABLE = "unreachable"  # no answer: refused, timed out, name not resolved
    NOT_ACKNOWLEDGING = "not_acknowledging"  # connected, but records wait unacknowledged
    TLS_VERIFICATION_FAILED = "tls_verification_failed"  # CA, expiry or host name
    TLS_HANDSHAKE_FAILED = "tls_handshake_failed"  # e.g. the broker wants a client cert
    AUTHENTICATION_FAILED = "authentication_failed"  # SASL refused the credentials
    AUTHORIZATION_FAILED = "authorization_failed"  # not allowed to use the topic
    TOPIC_MISSING = "topic_missing"
    TOPIC_INVALID = "topic_invalid"
    SECURITY_FILE = "security_file"  # a certificate, key or secret file is unusable
    KAFKA_ERROR = "kafka_error"  # anything else Kafka answered


# Reasons that waiting cannot heal: they fail /readyz (PROTOCOL §8).
CONFIGURATION = frozenset(
    {
        Reason.TLS_VERIFICATION_FAILED,
        Reason.TLS_HANDSHAKE_FAILED,
        Reason.AUTHENTICATION_FAILED,
        Reason.AUTHORIZATION_FAILED,
        Reason.TOPIC_MISSING,
        Reason.TOPIC_INVALID,
        Reason.SECURITY_FILE,
    }
)


@dataclass(frozen=True)
class KafkaProblem:
    reason: Reason
    detail: str

    @property
    def heals(self) -> bool:
        """True if waiting may heal it; False if the configuration must change."""
        return self.reason not in CONFIGURATION

    def __str__(self) -> str:
        return f"{self.reason}: {self.detail}"


class KafkaUnusable(Exception):
    """Kafka or the topic cannot be used; carries the problem."""

    def __init__(self, problem: KafkaProblem) -> None:
        super().__init__(str(problem))
        self.problem = problem


def classify_os_error(exc: BaseException, where: str) -> KafkaProblem:
    """A failure to connect to `where` (host:port), from the standard library."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        # verify_message: "certificate has expired", "unable to get local issuer
        # certificate" (another CA), "Hostname mismatch, certificate is not valid for ..."
        why = exc.verify_message or exc.reason or "certificate verify failed"
        return KafkaProblem(
            Reason.TLS_VERIFICATION_FAILED,
            f"{where}: the broker's certificate was not accepted: {why} "
            "(see --ssl-ca-file, --ssl-check-hostname)",
        )
    if isinstance(exc, ssl.SSLError):
        reason = str(exc.reason or exc).lower().replace("_", " ")
        hint = ""
        if "certificate required" in reason or "bad certificate" in reason:
            hint = " (the broker requires a client certificate: --ssl-cert-file/--ssl-key-file)"
        elif "wrong version number" in reason or "record layer" in reason:
            hint = " (is this a TLS listener? see --security-protocol)"
        return KafkaProblem(
            Reason.TLS_HANDSHAKE_FAILED, f"{where}: TLS handshake failed: {reason}{hint}"
        )
    if isinstance(exc, TimeoutError):
        return KafkaProblem(Reason.UNREACHABLE, f"{where}: no answer (timed out)")
    if isinstance(exc, OSError):
        # asyncio's "Connect call failed (...)" says less than the errno's own text.
        why = os.strerror(exc.errno) if exc.errno else str(exc) or type(exc).__name__
        return KafkaProblem(Reason.UNREACHABLE, f"{where}: {why}")
    return KafkaProblem(Reason.KAFKA_ERROR, f"{where}: {type(exc).__name__}: {exc}")

"""The settings model: every option of every command is one field here.

A field's description is its `--help` text; its name gives the flag (`--flush-interval-ms`)
and the environment variable (`SIDECAR_FLUSH_INTERVAL_MS`); sidecar.settings_cli derives
the typer options from these classes. A flag wins over the environment, which wins over
the default. Durations are seconds unless the name ends in `_ms`; sizes are bytes.

Fields are grouped by the part of the data path they configure; a command's settings
class is the groups it needs, so `run`, `check` and `tail` share one definition of the
Kafka connection and security options.

To add an option: add a field with `setting(...)`, a default and a whole-sentence
description (what it does, the default's meaning, the unit, what each choice means).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_core import PydanticCustomError
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

Compression = Literal["none", "gzip", "snappy", "lz4", "zstd"]
OnDisconnect = Literal["end", "keep"]
LogFormat = Literal["text", "json"]
LogLevel = Literal["debug", "info", "warning", "error"]
SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"]

MiB = 1024 * 1024
ENV_PREFIX = "SIDECAR_"
# Kafka's record batch header plus one record's framing, key and our headers, rounded
# up: a frame of --max-frame-bytes must fit in a produce request with these around it.
RECORD_OVERHEAD_BYTES = 4096


def setting(
    default: Any,
    help: str,
    *,
    flag: str | None = None,
    cli: bool = True,
    show: str | None = None,
    octal: bool = False,
    comma_list: bool = False,
    **constraints: Any,
) -> Any:
    """A field of the settings model. `help` is the option's help text; `flag` overrides
    the derived declaration (`--uvloop/--no-uvloop`); `cli=False` keeps the field out of
    the command line (secrets: environment only); `show` is the default as --help prints
    it; `octal` takes and shows the value as an octal string (file modes); `comma_list`
    takes a tuple as one comma-separated string (flag and environment alike). A callable
    default is called when the settings are read."""
    extra: dict[str, Any] = {"cli": cli, "octal": octal, "comma_list": comma_list}
    if flag is not None:
        extra["flag"] = flag
    if show is not None:
        extra["show"] = show
    if callable(default):  # computed when the settings are read (from the environment)
        return Field(
            default_factory=default, description=help, json_schema_extra=extra, **constraints
        )
    return Field(default, description=help, json_schema_extra=extra, **constraints)


def combo_error(message: str) -> PydanticCustomError:
    """A rejected setting or combination, with the message as written (pydantic would
    prefix "Value error, "); a combination's message names its settings by their flags.
    Braces are doubled: pydantic formats the message with its context."""
    return PydanticCustomError("setting", message.replace("{", "{{").replace("}", "}}"))


class _Settings(BaseSettings):
    # The --help section the group's options are listed under.
    panel: ClassVar[str] = "Options"
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        frozen=True,
        extra="forbid",
        case_sensitive=False,
        # An empty variable (`SIDECAR_SSL_CA_FILE=`) means unset, as shells and manifests
        # often write it.
        env_ignore_empty=True,
    )


# The default socket folder when XDG_RUNTIME_DIR is not set; run creates it if missing.
RUN_FOLDER = Path("/run/sidecar")


def default_socket_path() -> Path:
    """`$XDG_RUNTIME_DIR/sidecar.sock`, else `/run/sidecar/sidecar.sock`: never a
    world-writable folder such as /tmp, where another user could bind it first."""
    runtime_dir = os.environ.get("XDG_RUNTIME_DIR")
    return Path(runtime_dir) / "sidecar.sock" if runtime_dir else RUN_FOLDER / "sidecar.sock"


def _comma_list(v: Any) -> Any:
    """`"1000, 1001"` (a flag or SIDECAR_* variable) -> (1000, 1001)."""
    if isinstance(v, str):
        try:
            return tuple(int(x) for x in v.split(",") if x.strip())
        except ValueError:
            raise combo_error(f"{v!r} is not a comma-separated list of numbers") from None
    return v


class SocketPathSettings(_Settings):
    panel: ClassVar[str] = "Socket"

    socket: Path = setting(
        default_socket_path,
        "Path of the Unix socket agents write to; run creates it, the client commands "
        "connect to it. Default: $XDG_RUNTIME_DIR/sidecar.sock, else "
        "/run/sidecar/sidecar.sock (run creates /run/sidecar if it may). run refuses a "
        "folder that a user other than itself or root could write into, unless sticky.",
        show="$XDG_RUNTIME_DIR/sidecar.sock or /run/sidecar/sidecar.sock",
    )


class SocketSettings(SocketPathSettings):
    socket_mode: int = setting(
        0o660,
        "File mode of the socket, as an octal number: who may connect (0660: the owner "
        "and the group).",
        octal=True,
        ge=0,
        le=0o777,
    )
    max_frame_bytes: int = setting(
        MiB,
        "Longest accepted line, in bytes; a longer one is skipped and answered with "
        "frame_too_large.",
        ge=64,
    )
    max_reply_bytes: int = setting(
        MiB,
        "Unread replies kept per client, in bytes; past it further replies to that client "
        "are dropped and counted.",
        ge=1024,
    )
    allowed_uids: Annotated[tuple[int, ...], NoDecode] = setting(
        (),
        "Peer uids that may connect, comma-separated (read from the connection with "
        "SO_PEERCRED); with --allowed-gids, a peer listed in either is admitted. Default: "
        "anyone who can open the socket. A refused peer is closed at once, logged and "
        "counted.",
        comma_list=True,
        show="anyone",
    )
    allowed_gids: Annotated[tuple[int, ...], NoDecode] = setting(
        (),
        "Peer gids that may connect, comma-separated: the peer's primary group or one of "
        "its supplementary groups.",
        comma_list=True,
        show="anyone",
    )
    listen_backlog: int = setting(
        1024,
        "Connections the kernel queues on the socket before run accepts them (the listen "
        "backlog; the kernel caps it at net.core.somaxconn).",
        ge=1,
        le=65535,
    )

    _ids = field_validator("allowed_uids", "allowed_gids", mode="before")(_comma_list)

    @field_validator("socket_mode", mode="before")
    @classmethod
    def _octal(cls, v: Any) -> Any:
        if isinstance(v, str):
            try:
                return int(v, 8)
            except ValueError:
                raise combo_error(f"{v!r} is not an octal file mode such as 0660") from None
        return v


class TransformSettings(_Settings):
    panel: ClassVar[str] = "Coalescing and streams"

    flush_interval_ms: int = setting(
        50,
        "Coalescing window per stream, in milliseconds: deltas arriving within it are "
        "merged into one record; 0 turns coalescing off (one record per delta).",
        ge=0,
    )
    max_buffered_chars: int = setting(
        128,
        "Flush a stream at once when this many characters of text are pending, before its "
        "window ends.",
        ge=1,
    )
    closed_stream_ttl: float = setting(
        600.0,
        "How long a closed stream is remembered, in seconds: frames for it within this "
        "time are rejected with stream_closed.",
        ge=0,
    )
    max_open_stream_bytes: int = setting(
        128 * MiB,
        "Memory for the state of open streams, in bytes (about 1 KB an agentex stream); "
        "past it run stops reading the sockets until streams end (by the idle timeout, "
        "since no frame is read meanwhile) and fall to three quarters of it. A guard "
        "against streams that are opened and never ended.",
        ge=4096,
    )
    max_closed_stream_bytes: int = setting(
        8 * MiB,
        "Memory for remembering closed streams, in bytes (about 200 bytes a stream, "
        "whatever its ids' length); when it is full the oldest closed stream is forgotten "
        "before --closed-stream-ttl (counted in sidecar_closed_streams_forgotten_early_total), "
        "and a frame for it would open it again.",
        ge=4096,
    )
    stream_idle_timeout: float = setting(
        300.0,
        "End a stream (terminal_reason idle_timeout) when no frame arrived for it for "
        "this long, in seconds.",
        gt=0,
    )
    on_disconnect: OnDisconnect = setting(
        "end",
        "What happens to a client's open streams when it disconnects: end ends each with "
        "a done (terminal_reason disconnect); keep leaves them open for a reconnect.",
    )

    @property
    def flush_interval(self) -> float:
        return self.flush_interval_ms / 1000.0


class KafkaSettings(_Settings):
    """Reaching Kafka: shared by every command that talks to it (run, check, tail)."""

    panel: ClassVar[str] = "Kafka connection"

    bootstrap_servers: str = setting(
        "localhost:9092",
        "Kafka brokers to bootstrap from, as host:port[,host:port...].",
    )
    topic: str = setting(
        "task-updates",
        "Kafka topic the records go to (and that check and tail read); it must exist: "
        "nothing here creates it.",
        min_length=1,
        max_length=249,
    )
    client_id: str = setting("sidecar", "Kafka client id, as brokers log and quota it.")

    security_protocol: SecurityProtocol = setting(
        "PLAINTEXT",
        "How to reach the brokers: PLAINTEXT (no TLS, no authentication), SSL (TLS), "
        "SASL_PLAINTEXT (SASL authentication without TLS) or SASL_SSL (SASL over TLS).",
    )
    ssl_ca_file: Path | None = setting(
        None,
        "PEM file of the CA certificates that sign the brokers' certificates (SSL, "
        "SASL_SSL); by default the system's trusted CAs.",
    )
    ssl_cert_file: Path | None = setting(
        None,
        "PEM file of this client's certificate (and chain), for brokers that require "
        "client certificates (mutual TLS); needs --ssl-key-file.",
    )
    ssl_key_file: Path | None = setting(
        None, "PEM file of the private key of --ssl-cert-file (mutual TLS)."
    )
    ssl_key_password_file: Path | None = setting(
        None, "File holding the password of an encrypted --ssl-key-file; by default none."
    )
    ssl_check_hostname: bool = setting(
        True,
        "Check that the broker's certificate names the host connected to; turn off only "
        "for brokers reached by an address their certificate does not name.",
    )
    sasl_mechanism: SaslMechanism | None = setting(
        None,
        "SASL mechanism, required with SASL_PLAINTEXT and SASL_SSL: PLAIN or SCRAM-SHA-256 "
        "/ SCRAM-SHA-512 (with --sasl-username and a password), or OAUTHBEARER (with "
        "--sasl-oauth-token-file).",
    )
    sasl_username: str | None = setting(None, "SASL user name, for PLAIN and SCRAM-SHA-256/512.")
    sasl_password_file: Path | None = setting(
        None,
        "File holding the SASL password (PLAIN, SCRAM); or set SIDECAR_SASL_PASSWORD. "
        "There is no flag for the password itself: it would show in ps.",
    )
    sasl_password: SecretStr | None = setting(
        None,
        "The SASL password (environment only: SIDECAR_SASL_PASSWORD).",
        cli=False,
    )
    sasl_oauth_token_file: Path | None = setting(
        None,
        "File holding the OAUTHBEARER token (a JWT); re-read whenever it changes, so a "
        "Kubernetes projected token or a token agent can rotate it.",
    )

    @field_validator("bootstrap_servers")
    @classmethod
    def _check_bootstrap(cls, v: str) -> str:
        hosts = [h.strip() for h in v.split(",") if h.strip()]
        if not hosts or any(":" not in h for h in hosts):
            raise combo_error("expected host:port[,host:port...]")
        return ",".join(hosts)

    @field_validator("topic")
    @classmethod
    def _check_topic(cls, v: str) -> str:
        # Kafka's own rule (Topic.validate): legal characters, and not "." or "..".
        if v in (".", "..") or any(not (c.isascii() and (c.isalnum() or c in "._-")) for c in v):
            raise combo_error(
                f"{v!r} is not a valid Kafka topic name (ASCII letters, digits, '.', '_' "
                "and '-' only, and not '.' or '..')"
            )
        return v

    @model_validator(mode="after")
    def _check_security(self) -> KafkaSettings:
        proto = self.security_protocol
        tls = proto in ("SSL", "SASL_SSL")
        sasl = proto.startswith("SASL_")
        if not tls:
            for name in ("ssl_ca_file", "ssl_cert_file", "ssl_key_file", "ssl_key_password_file"):
                if getattr(self, name) is not None:
                    raise combo_error(
                        f"{flag_of(name)} is set but --security-protocol is {proto}: "
                        "use SSL or SASL_SSL for TLS"
                    )
        if (self.ssl_cert_file is None) != (self.ssl_key_file is None):
            raise combo_error("--ssl-cert-file and --ssl-key-file go together (mutual TLS)")
        if self.ssl_key_password_file is not None and self.ssl_key_file is None:
            raise combo_error("--ssl-key-password-file is set without --ssl-key-file")
        given = [
            n
            for n in (
                "sasl_mechanism",
                "sasl_username",
                "sasl_password_file",
                "sasl_oauth_token_file",
            )
            if getattr(self, n) is not None
        ]
        if not sasl:
            if given or self.sasl_password is not None:
                what = flag_of(given[0]) if given else "SIDECAR_SASL_PASSWORD"
                raise combo_error(
                    f"{what} is set but --security-protocol is {proto}: "
                    "use SASL_PLAINTEXT or SASL_SSL for SASL"
                )
            return self
        mech = self.sasl_mechanism
        if mech is None:
            raise combo_error(f"--security-protocol {proto} needs --sasl-mechanism")
        if mech == "OAUTHBEARER":
            if self.sasl_oauth_token_file is None:
                raise combo_error("--sasl-mechanism OAUTHBEARER needs --sasl-oauth-token-file")
            for name in ("sasl_username", "sasl_password_file"):
                if getattr(self, name) is not None:
                    raise combo_error(f"{flag_of(name)} does not apply to OAUTHBEARER")
            return self
        if self.sasl_oauth_token_file is not None:
            raise combo_error(f"--sasl-oauth-token-file does not apply to {mech}")
        if not self.sasl_username:
            raise combo_error(f"--sasl-mechanism {mech} needs --sasl-username")
        if self.sasl_password_file is None and self.sasl_password is None:
            raise combo_error(
                f"--sasl-mechanism {mech} needs a password: --sasl-password-file or "
                "SIDECAR_SASL_PASSWORD"
            )
        if self.sasl_password_file is not None and self.sasl_password is not None:
            raise combo_error("give --sasl-password-file or SIDECAR_SASL_PASSWORD, not both")
        return self


class ProducerSettings(_Settings):
    panel: ClassVar[str] = "Kafka producer"

    linger_ms: int = setting(
        20,
        "How long a partition's records wait to fill a batch before it is sent, in "
        "milliseconds. A stream's first delta and its terminal do not wait: their "
        "partition's batch goes at once (or as soon as the one in flight is acknowledged).",
        ge=0,
    )
    compression: Compression = setting(
        "none",
        "Compression of record batches: none, gzip, snappy, lz4 or zstd.",
    )
    max_batch_bytes: int = setting(
        512 * 1024,
        "Largest record batch per partition, in bytes; at most --max-request-bytes.",
        ge=1024,
    )
    max_request_bytes: int = setting(
        2 * MiB,
        "Largest produce request, in bytes; a record larger than this fails with "
        "delivery_failed, so it must hold a frame of --max-frame-bytes.",
        ge=1024,
    )
    request_timeout_ms: int = setting(
        30_000,
        "How long to wait for a broker to answer one request, in milliseconds.",
        ge=100,
    )
    delivery_timeout_ms: int = setting(
        120_000,
        "How long a record may wait for Kafka's acknowledgement, retries included, before "
        "it fails with delivery_failed, in milliseconds; at least --request-timeout-ms "
        "plus --linger-ms.",
        ge=100,
    )
    max_pending_bytes: int = setting(
        64 * MiB,
        "Bytes of records accepted and not yet acknowledged by Kafka, plus unfinished "
        "lines held; past it run stops reading the sockets (backpressure) until they fall "
        "to three quarters, and terminals of streams ended meanwhile wait for room.",
        ge=1024,
    )

    @property
    def compression_type(self) -> str | None:
        return None if self.compression == "none" else self.compression


class LogSettings(_Settings):
    panel: ClassVar[str] = "Logging"

    log_level: LogLevel = setting(
        "info", "Least severe log level written: debug, info, warning or error."
    )
    log_format: LogFormat = setting(
        "text",
        "Log line format on standard error: text (for people) or json (one JSON object "
        "per line, RFC 3339 timestamps, for log collectors).",
    )


class OpsSettings(_Settings):
    panel: ClassVar[str] = "Operations"

    shutdown_timeout: float = setting(
        25.0,
        "Hard deadline from SIGTERM to exit, in seconds: ending streams and waiting for "
        "Kafka to acknowledge them. Exit is never later than this plus one second, "
        "whatever Kafka does; records still unacknowledged then are logged and the exit "
        "code is 1.",
        gt=0,
    )
    http_host: str = setting(
        "127.0.0.1",
        "Address the operations endpoint (/metrics, /healthz, /readyz) listens on. It has "
        "no authentication: the default keeps it on loopback; set what the probes need "
        "(0.0.0.0 for the kubelet's probes by pod IP).",
    )
    http_port: int = setting(
        8081,
        "TCP port of the operations endpoint (/metrics, /healthz, /readyz); 0 turns it off.",
        ge=0,
        le=65535,
    )
    require_kafka: bool = setting(
        False,
        "Fail /readyz while Kafka is unreachable; by default an outage does not, because "
        "the sidecar keeps accepting and retries.",
    )
    uvloop: bool = setting(
        True, "Run on uvloop when it is installed; --no-uvloop uses asyncio's own loop."
    )


class Config(
    SocketSettings, TransformSettings, ProducerSettings, KafkaSettings, OpsSettings, LogSettings
):
    """Everything `sidecar run` takes (and `sidecar check` validates)."""

    @model_validator(mode="after")
    def _check_combinations(self) -> Config:
        if self.delivery_timeout_ms < self.request_timeout_ms + self.linger_ms:
            raise combo_error(
                f"--delivery-timeout-ms ({self.delivery_timeout_ms}) must be at least "
                f"--request-timeout-ms + --linger-ms ({self.request_timeout_ms + self.linger_ms})"
            )
        if self.max_batch_bytes > self.max_request_bytes:
            raise combo_error(
                f"--max-batch-bytes ({self.max_batch_bytes}) must not exceed "
                f"--max-request-bytes ({self.max_request_bytes})"
            )
        if self.max_frame_bytes + RECORD_OVERHEAD_BYTES > self.max_request_bytes:
            raise combo_error(
                f"--max-frame-bytes ({self.max_frame_bytes}) plus {RECORD_OVERHEAD_BYTES} "
                f"bytes of record overhead must fit in --max-request-bytes "
                f"({self.max_request_bytes}): such a frame could never be delivered"
            )
        return self


class TailSettings(KafkaSettings, LogSettings):
    """What `sidecar tail` takes besides its own display options."""


def flag_of(field: str) -> str:
    return "--" + field.replace("_", "-")


def env_of(field: str) -> str:
    return ENV_PREFIX + field.upper()

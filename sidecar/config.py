"""Validated run-time configuration: the CLI parses into this, the server reads only this."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

Compression = Literal["none", "gzip", "snappy", "lz4", "zstd"]
OnDisconnect = Literal["end", "keep"]
LogFormat = Literal["text", "json"]

MiB = 1024 * 1024

# The default socket folder when XDG_RUNTIME_DIR is not set; created at start if missing.
RUN_FOLDER = Path("/run/sidecar")


def default_socket_path() -> Path:
    """`$XDG_RUNTIME_DIR/sidecar.sock`, else `/run/sidecar/sidecar.sock`: never a
    world-writable folder such as /tmp, where another user could bind it first."""
    runtime_dir = os.environ.get("XDG_RUNTIME_DIR")
    return Path(runtime_dir) / "sidecar.sock" if runtime_dir else RUN_FOLDER / "sidecar.sock"


DEFAULT_SOCKET = default_socket_path()  # as the command line shows it


class Config(BaseModel):
    """Everything `sidecar run` takes. Durations in seconds unless the name ends in `_ms`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # Source: the Unix socket.
    socket: Path = Field(default_factory=default_socket_path)
    socket_mode: int = Field(default=0o660, ge=0, le=0o777)
    max_frame_bytes: int = Field(default=MiB, ge=64)
    max_reply_bytes: int = Field(default=MiB, ge=1024)
    # Who may connect (PROTOCOL §1): both empty admits anyone who can open the socket.
    allowed_uids: tuple[int, ...] = ()
    allowed_gids: tuple[int, ...] = ()

    # Transform: coalescing and stream lifecycle.
    flush_interval_ms: int = Field(default=50, ge=0)
    max_buffered_chars: int = Field(default=128, ge=1)
    closed_stream_ttl: float = Field(default=600.0, ge=0)
    stream_idle_timeout: float = Field(default=300.0, gt=0)
    on_disconnect: OnDisconnect = "end"

    # Sink: Kafka.
    bootstrap_servers: str = "localhost:9092"
    topic: str = Field(default="task-updates", min_length=1, max_length=249)
    client_id: str = "sidecar"
    linger_ms: int = Field(default=5, ge=0)
    compression: Compression = "none"
    max_batch_bytes: int = Field(default=512 * 1024, ge=1024)
    max_request_bytes: int = Field(default=2 * MiB, ge=1024)
    request_timeout_ms: int = Field(default=30_000, ge=100)
    delivery_timeout_ms: int = Field(default=120_000, ge=100)
    max_pending_bytes: int = Field(default=64 * MiB, ge=1024)

    # Lifecycle and operations.
    shutdown_timeout: float = Field(default=25.0, gt=0)
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8081, ge=0, le=65535)
    require_kafka: bool = False
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: LogFormat = "text"
    uvloop: bool = True

    @field_validator("bootstrap_servers")
    @classmethod
    def _check_bootstrap(cls, v: str) -> str:
        hosts = [h.strip() for h in v.split(",") if h.strip()]
        if not hosts or any(":" not in h for h in hosts):
            raise ValueError("expected host:port[,host:port...]")
        return ",".join(hosts)

    @property
    def flush_interval(self) -> float:
        return self.flush_interval_ms / 1000.0

    @property
    def compression_type(self) -> str | None:
        return None if self.compression == "none" else self.compression

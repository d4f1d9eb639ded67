"""sidecar-client: what an agent process needs to talk to the sidecar (PROTOCOL §2-3),
and what a consumer needs to read its streams back (PROTOCOL §5).

- `open_sidecar` / `SidecarClient`: the async, reconnecting client; `SyncSidecar` the
  blocking one. Each `send` returns a `Delivery`: an `Ack`, or an error saying why not.
- `sidecar_client.agentex.SidecarStreamRepository`: agentex's StreamRepository on the
  sidecar (extra `[agentex]`; `subscribe` also needs `[kafka]`).
- `sidecar_client.reassemble`: records back into agentex TaskMessageContent.
- `sidecar_client.protocol`: the sans-IO wire protocol, shared with the sidecar.
"""

from importlib.metadata import PackageNotFoundError, version

from sidecar_client.delivery import (
    Ack,
    BufferFull,
    ClientClosed,
    Delivery,
    DeliveryError,
    FrameRejected,
    NotDelivered,
    SidecarError,
    SidecarUnavailable,
)
from sidecar_client.sidecar import SidecarClient, default_socket_path, open_sidecar
from sidecar_client.sync import SyncDelivery, SyncSidecar

try:
    __version__ = version("sidecar-client")
except PackageNotFoundError:  # running from a source tree without install
    __version__ = "0.0.0+unknown"

__all__ = [
    "Ack",
    "BufferFull",
    "ClientClosed",
    "Delivery",
    "DeliveryError",
    "FrameRejected",
    "NotDelivered",
    "SidecarClient",
    "SidecarError",
    "SidecarUnavailable",
    "SyncDelivery",
    "SyncSidecar",
    "__version__",
    "default_socket_path",
    "open_sidecar",
]

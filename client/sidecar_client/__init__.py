"""sidecar-client: what an agent process needs to talk to the sidecar (PROTOCOL §2-3),
and what a consumer needs to read its streams back (PROTOCOL §5)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("sidecar-client")
except PackageNotFoundError:  # running from a source tree without install
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]

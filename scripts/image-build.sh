#!/usr/bin/env bash
# Build the sidecar image with podman from the Dockerfile, never contacting a registry for
# the base (`--pull=never`: scripts/podman-setup.sh makes the local stand-in for
# python:3.11-slim). Layers are cached by podman, so a rebuild with nothing changed takes
# seconds. Prints the image's size.
#   scripts/image-build.sh [TAG]          (default: localhost/sidecar:<version>)
set -euo pipefail
cd "$(dirname "$0")/.."
version=$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml | head -n1)
TAG=${1:-${SIDECAR_IMAGE:-localhost/sidecar:$version}}

# pip inside the build needs what pip needs on this host: where the egress re-signs TLS,
# the host's CA bundle (named by its pip configuration). Both are bind-mounted into the RUN
# steps only; nothing of them ends up in a layer.
mounts=()
ca=/etc/ssl/certs/ca-certificates.crt
[ -r "$ca" ] && mounts+=(-v "$ca:$ca:ro")
[ -r /etc/pip.conf ] && mounts+=(-v /etc/pip.conf:/etc/pip.conf:ro)

build=(podman build --pull=never --network=host "${mounts[@]}" --layers)
# The build stage gets a tag of its own, so the prune below (the untagged images every
# rebuild leaves) keeps its layers as the cache for the next build.
"${build[@]}" --target build -t localhost/sidecar-build:cache . >&2
"${build[@]}" -t "$TAG" . >&2
podman image prune -f >/dev/null
size=$(podman image inspect "$TAG" --format '{{.Size}}')
echo "image $TAG: $((size / 1000000)) MB" >&2

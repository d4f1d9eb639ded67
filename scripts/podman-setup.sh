#!/usr/bin/env bash
# Make this machine able to build and run the project's images with podman, without a Docker
# engine or a registry: install podman/runc/debootstrap from apt, write the containers.conf this
# machine kind needs, and build a local stand-in for `python:3.11-slim` with debootstrap.
# Idempotent and fast (about a second) when everything is there already; CI runs it on a fresh
# machine through `make test`. Needs root (apt, rootful podman).
#   scripts/podman-setup.sh            # all of the above
# Env: SIDECAR_BASE_IMAGE (default localhost/python:3.11-slim), DEBOOTSTRAP_CACHE (the .debs).
set -euo pipefail
BASE=${SIDECAR_BASE_IMAGE:-localhost/python:3.11-slim}
CACHE=${DEBOOTSTRAP_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/sidecar/debootstrap}
log() { printf 'podman-setup: %s\n' "$*" >&2; }

if [ "$(id -u)" != 0 ]; then
    log "needs root (apt-get, rootful podman); run it as root or install podman yourself"
    exit 2
fi

# 1. Packages. fuse-overlayfs/slirp4netns/uidmap only matter for rootless use: not installed.
if ! command -v podman >/dev/null || ! command -v runc >/dev/null \
        || ! command -v debootstrap >/dev/null; then
    log "installing podman, runc, debootstrap (apt)"
    apt-get -o DPkg::Lock::Timeout=300 update -qq
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq \
        --no-install-recommends \
        podman runc debootstrap netavark aardvark-dns conmon catatonit iptables >/dev/null
fi

# 2. Runtime settings. runc, not crun: crun refuses the hybrid cgroup v1+v2 mount of this
# machine kind. Lower ulimits: root here lacks CAP_SYS_RESOURCE and the hard nofile limit is
# below the 1048576 that rootful podman asks for, so runc cannot set it. netavark, named:
# Debian's podman also ships a CNI config, and a fresh store would otherwise weigh the two.
CONF=/etc/containers/containers.conf
if ! grep -q '^runtime = "runc"' "$CONF" 2>/dev/null \
        || ! grep -q '^network_backend = "netavark"' "$CONF"; then
    log "writing $CONF"
    mkdir -p /etc/containers
    hard=$(ulimit -Hn)
    cat > "$CONF" <<CONF
[containers]
default_ulimits = ["nofile=$hard:$hard", "nproc=4096:4096"]
[engine]
runtime = "runc"
[network]
network_backend = "netavark"
CONF
fi

# 3. The stand-in base image, built once per machine (podman storage persists).
if podman image exists "$BASE"; then
    exit 0
fi
log "building $BASE with debootstrap (2-3 minutes, once)"
mirror=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
mirror=${mirror:-http://deb.debian.org/debian}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$CACHE"
root=$work/rootfs
debootstrap --variant=minbase --cache-dir="$CACHE" \
    --include=python3.11,python3-venv,python3-pip,ca-certificates \
    bookworm "$root" "$mirror" >"$work/debootstrap.log" 2>&1 \
    || { tail -n 30 "$work/debootstrap.log" >&2; exit 1; }
# Debian's PEP 668 marker: the official image (Python in /usr/local) has none, and with it
# `pip install` into the system interpreter fails with externally-managed-environment.
rm -f "$root/usr/lib/python3.11/EXTERNALLY-MANAGED"
ln -sf /usr/bin/python3 "$root/usr/local/bin/python"
chroot "$root" apt-get clean
rm -rf "$root"/var/lib/apt/lists/*
tar -C "$root" -c . | podman import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' --change 'CMD ["python3"]' - "$BASE" >/dev/null
log "built $BASE"

#!/usr/bin/env bash
# Builds, once, the Go programs that check the deploy manifests (tests/deploy): helm,
# kustomize, and tools/psa (the upstream Pod Security admission checks, offline). Each is
# built from the Go module proxy at a pinned version into a cache folder named after that
# version (psa: after a hash of its sources), so a second run costs nothing; `make test`
# calls this first. Prints NAME=PATH for each tool.
#
# Cold (empty Go caches), on 2 shared cores: 292 s, 309 s of CPU, helm most of it. Needs Go
# (PATH or /usr/local/go).
set -euo pipefail

HELM_VERSION=v3.22.0
KUSTOMIZE_VERSION=v5.8.1   # v5.8.2+ need a newer Go than 1.26

root=$(cd "$(dirname "$0")/.." && pwd)
cache=${SIDECAR_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/sidecar/tools}
go=${GO:-$(command -v go || echo /usr/local/go/bin/go)}
if [ ! -x "$go" ]; then
    echo "deploy-tools: no Go toolchain (looked for go on PATH and /usr/local/go/bin/go; set GO=)" >&2
    exit 1
fi
export GOTOOLCHAIN=local GOFLAGS=-buildvcs=false
mkdir -p "$cache"

psa_hash=$(cat "$root"/tools/psa/go.mod "$root"/tools/psa/go.sum "$root"/tools/psa/*.go \
    | sha256sum | cut -c1-16)
helm=$cache/helm-$HELM_VERSION/helm
kustomize=$cache/kustomize-$KUSTOMIZE_VERSION/kustomize
psa=$cache/psa-$psa_hash/psa

# One builder at a time (parallel `make test` runs share the cache); a build goes to a
# temporary folder and is renamed into place, so a killed build leaves nothing half-made.
exec 9>"$cache/.lock"
flock 9

build() {  # build DEST COMMAND...: run COMMAND with GOBIN (or -o) in a fresh folder
    local dest=$1; shift
    [ -x "$dest" ] && return 0
    local tmp
    tmp=$(mktemp -d "$cache/.build.XXXXXX")
    local started=$SECONDS
    if ! (export GOBIN=$tmp; "$@" "$tmp") >"$tmp/log" 2>&1; then
        echo "deploy-tools: building $(basename "$dest") failed:" >&2
        tail -20 "$tmp/log" >&2
        rm -rf "$tmp"
        return 1
    fi
    mkdir -p "$(dirname "$dest")"
    mv "$tmp/$(basename "$dest")" "$dest"
    rm -rf "$tmp"
    echo "deploy-tools: built $(basename "$dest") in $((SECONDS - started)) s" >&2
}
go_install() { "$go" install "$1"; }
go_build_psa() { (cd "$root/tools/psa" && "$go" build -o "$1/psa" .); }

# Concurrently: downloads of one overlap compiling of another (2 cores).
build "$psa" go_build_psa & p1=$!
build "$kustomize" go_install "sigs.k8s.io/kustomize/kustomize/v5@$KUSTOMIZE_VERSION" & p2=$!
build "$helm" go_install "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" & p3=$!
status=0
for p in $p1 $p2 $p3; do wait "$p" || status=1; done
[ $status -eq 0 ] || exit 1

echo "HELM=$helm"
echo "KUSTOMIZE=$kustomize"
echo "PSA=$psa"

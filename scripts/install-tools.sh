#!/usr/bin/env bash
# Installs every external tool node-bootstrap needs, at pinned versions, into
# .tools/ (git-ignored). Safe to run again: each step is a no-op when its
# pinned version is already there.
set -euo pipefail

TEMPORAL_CLI_VERSION=1.5.1
SPIRE_VERSION=1.15.3

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="$ROOT/.tools"
BIN="$TOOLS/bin"
mkdir -p "$BIN"

log() { printf '[install-tools] %s\n' "$*" >&2; }

stamp_ok() { [[ -f "$TOOLS/$1.version" && "$(cat "$TOOLS/$1.version")" == "$2" && -x "$BIN/$1" ]]; }

# --- Debian packages: WireGuard userspace tooling for the lab ---------------
apt_packages=(wireguard-tools wireguard-go iproute2 iputils-ping)
missing=()
for p in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  log "apt-get install ${missing[*]}"
  SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

export GOBIN="$BIN"
export GOFLAGS="${GOFLAGS:-} -modcacherw"

# --- Temporal CLI (dev server + Web UI) -------------------------------------
if ! stamp_ok temporal "$TEMPORAL_CLI_VERSION"; then
  log "building temporal CLI v$TEMPORAL_CLI_VERSION"
  CGO_ENABLED=0 go install \
    -ldflags "-X github.com/temporalio/cli/temporalcli.Version=$TEMPORAL_CLI_VERSION" \
    "github.com/temporalio/cli/cmd/temporal@v$TEMPORAL_CLI_VERSION"
  echo "$TEMPORAL_CLI_VERSION" >"$TOOLS/temporal.version"
fi

# --- SPIRE server + agent (cgo for the sqlite3 datastore) --------------------
if ! stamp_ok spire-server "$SPIRE_VERSION" || ! stamp_ok spire-agent "$SPIRE_VERSION"; then
  log "building SPIRE v$SPIRE_VERSION"
  CGO_ENABLED=1 go install \
    "github.com/spiffe/spire/cmd/spire-server@v$SPIRE_VERSION" \
    "github.com/spiffe/spire/cmd/spire-agent@v$SPIRE_VERSION"
  echo "$SPIRE_VERSION" >"$TOOLS/spire-server.version"
  echo "$SPIRE_VERSION" >"$TOOLS/spire-agent.version"
fi

log "tools ready in $BIN"

#!/usr/bin/env bash
# Installs every external tool node-bootstrap needs, at pinned versions, into
# .tools/ (git-ignored). Safe to run again: each step is a no-op when its
# pinned version is already there.
set -euo pipefail

TEMPORAL_CLI_VERSION=1.5.1
SPIRE_VERSION=1.15.3
# Bump when the build recipe below changes, so installed binaries are rebuilt.
SPIRE_BUILD_REV=2

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="$ROOT/.tools"
BIN="$TOOLS/bin"
mkdir -p "$BIN"

log() { printf '[install-tools] %s\n' "$*" >&2; }
die() { printf '[install-tools] error: %s\n' "$*" >&2; exit 1; }

command -v go >/dev/null || die "Go >= 1.26 is required (https://go.dev/dl); it builds temporal and SPIRE"
command -v gcc >/dev/null || die "gcc is required (cgo, for SPIRE's sqlite3 datastore): apt-get install gcc"

stamp_ok() { [[ -f "$TOOLS/$1.version" && "$(cat "$TOOLS/$1.version")" == "$2" && -x "$BIN/$1" ]]; }

# --- Debian packages: WireGuard userspace tooling for the lab ---------------
# curl: the bowtie driver reads the Bowtie client's local API on the node with it.
# swtpm, swtpm-tools (swtpm_setup, swtpm_localca; certtool from gnutls-bin), tpm2-tools and
# the swtpm TCTI: a software TPM per lab node for the tpm_devid attestor (lab/tpm.ts).
apt_packages=(wireguard-tools wireguard-go iproute2 iputils-ping openssh-server openssh-client curl
  swtpm swtpm-tools gnutls-bin tpm2-tools libtss2-tcti-swtpm0)
missing=()
for p in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  log "apt-get install ${missing[*]}"
  SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO=sudo
  command -v apt-get >/dev/null || die "apt-get not found: install ${missing[*]} with your package manager"
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
# `go install spire@version` asks the proxy for the module's version list to
# check deprecation, which the proxy here refuses; downloading the pinned
# module and building inside it needs only that version.
if ! stamp_ok spire-server "$SPIRE_VERSION+$SPIRE_BUILD_REV" || ! stamp_ok spire-agent "$SPIRE_VERSION+$SPIRE_BUILD_REV"; then
  log "building SPIRE v$SPIRE_VERSION (spire-server, spire-agent; cgo)"
  spire_mod="$(cd /tmp && go mod download -json "github.com/spiffe/spire@v$SPIRE_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
  [[ -d "$spire_mod" ]] || die "could not download github.com/spiffe/spire@v$SPIRE_VERSION"
  # The module proxy here refuses one dependency of a plugin we never use
  # (the EJBCA UpstreamAuthority). Build from a copy with that one plugin
  # unregistered; everything else is SPIRE's own source at the pinned tag.
  src="$TOOLS/src/spire-$SPIRE_VERSION"
  rm -rf "$src" && mkdir -p "$TOOLS/src" && cp -r "$spire_mod" "$src" && chmod -R u+w "$src"
  catalog="$src/pkg/server/catalog/upstreamauthority.go"
  grep -q 'upstreamauthority/ejbca"' "$catalog" || die "SPIRE source layout changed: $catalog"
  sed -i -e '/upstreamauthority\/ejbca"/d' -e '/ejbca\.BuiltIn(),/d' "$catalog"
  ldflags="-X github.com/spiffe/spire/pkg/common/version.gittag=$SPIRE_VERSION"
  (cd "$src" && CGO_ENABLED=1 go build -trimpath -ldflags "$ldflags" -o "$BIN/spire-agent" ./cmd/spire-agent \
    && CGO_ENABLED=1 go build -trimpath -ldflags "$ldflags" -o "$BIN/spire-server" ./cmd/spire-server) \
    || die "SPIRE build failed"
  echo "$SPIRE_VERSION+$SPIRE_BUILD_REV" >"$TOOLS/spire-server.version"
  echo "$SPIRE_VERSION+$SPIRE_BUILD_REV" >"$TOOLS/spire-agent.version"
fi

# --- The lab's demo workload (lab/demo-workload/: Go, go-spiffe) ---------------
# Stamped with its source's hash: a change to it rebuilds it.
demo_src="$ROOT/lab/demo-workload"
demo_ldflags="-s -w"
demo_rev="$( (echo "$demo_ldflags" && cat "$demo_src/go.mod" "$demo_src/go.sum" "$demo_src"/*.go) | sha256sum | cut -c1-16)"
if ! stamp_ok demo-workload "$demo_rev"; then
  log "building the lab's demo workload"
  (cd "$demo_src" && CGO_ENABLED=0 go build -trimpath -ldflags "$demo_ldflags" -o "$BIN/demo-workload" .) || die "demo workload build failed"
  echo "$demo_rev" >"$TOOLS/demo-workload.version"
fi

log "tools ready in $BIN"

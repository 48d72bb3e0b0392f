#!/usr/bin/env bash
# The system packages Tessera's demo and test suite need, on Debian or Ubuntu. `make install` (and
# so `make demo` and `make test`) runs it first. When everything is there it only checks (no apt,
# well under a second); otherwise it installs what is missing with apt-get, through sudo when not
# root.
#   system.sh            check, then install what is missing
#   system.sh check      list what is missing; exit 1 if anything is
#   system.sh chromium   print the Chromium the browser tests drive (the tests ask this script)
#   system.sh go         print the newest Go >= 1.21 installed (deploy/tools/install.sh uses it)
#
# What it needs, and the Debian package that provides it:
#   make, python3 >= 3.11 with venv and headers   make, python3, python3-venv, python3-dev
#   gcc and GMP (fedalgo's Montgomery C loops)    gcc, libgmp-dev
#   Java >= 17 and Maven (the Kafka broker)       openjdk-17-jre-headless (or the default JRE), maven
#   bubblewrap, setpriv, prlimit (step sandbox)   bubblewrap, util-linux
#   PostgreSQL server (the tests' database)       postgresql
#   Chromium (the dashboard's browser tests)      chromium
#   Go >= 1.21 (builds helm and kubeconform)      golang-go
#   openssl (deploy.sh keygen)                    openssl
set -euo pipefail

die() { echo "system.sh: $*" >&2; exit 1; }

# The one Chromium lookup: the browser tests run `system.sh chromium` rather than guessing.
chromium_path() {
  local name
  for name in "${TESSERA_CHROMIUM:-}" chromium chromium-browser; do
    [ -n "$name" ] || continue
    if command -v "$name" >/dev/null 2>&1; then command -v "$name"; return 0; fi
  done
  return 1
}

java_major() { java -version 2>&1 | sed -nE '1s/.*version "(1\.)?([0-9]+).*/\2/p'; }

# Go's minor version (1.NN → NN) of the go binary $1; 0 when it does not run.
go_minor() { "$1" env GOVERSION 2>/dev/null | sed -nE 's/^go1\.([0-9]+).*/\1/p' | grep . || echo 0; }

# The newest go found where Go gets installed: PATH, the upstream tarball's place, Debian's.
find_go() {
  local best="" best_minor=0 candidate minor
  for candidate in "$(command -v go 2>/dev/null || true)" /usr/local/go/bin/go \
    /usr/lib/go-1.*/bin/go; do
    [ -x "$candidate" ] || continue
    minor=$(go_minor "$candidate")
    if [ "$minor" -gt "$best_minor" ]; then best="$candidate" best_minor=$minor; fi
  done
  [ -n "$best" ] && echo "$best"
}

python_ok() {
  python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null
}

missing=()
need() { missing+=("$1"); }

survey() {
  missing=()
  command -v make >/dev/null || need make
  command -v python3 >/dev/null || need python3
  if command -v python3 >/dev/null; then
    python3 -c 'import ensurepip, venv' 2>/dev/null || need python3-venv
    python3 -c 'import os, sys, sysconfig
sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' ||
      need python3-dev
  fi
  command -v gcc >/dev/null || need gcc
  [ -e /usr/include/gmp.h ] || ls /usr/include/*/gmp.h >/dev/null 2>&1 || need libgmp-dev
  if ! command -v java >/dev/null || [ "$(java_major)" -lt 17 ]; then need JAVA; fi
  command -v mvn >/dev/null || need maven
  command -v bwrap >/dev/null || need bubblewrap
  # runuser (as root, postgres.sh's cluster user) lives in /usr/sbin, off a user's PATH.
  { command -v setpriv && command -v prlimit; } >/dev/null && [ -x /usr/sbin/runuser ] ||
    need util-linux
  ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null ||
    need postgresql
  chromium_path >/dev/null || need chromium
  [ -n "$(find_go)" ] || need golang-go
  command -v openssl >/dev/null || need openssl
}

# JAVA stands for Java 17: Debian 12 ships it as its default, newer releases may only have newer.
debian_packages() {
  local p
  for p in "${missing[@]}"; do
    if [ "$p" != JAVA ]; then echo "$p"
    elif apt-cache show openjdk-17-jre-headless >/dev/null 2>&1; then echo openjdk-17-jre-headless
    else echo default-jre-headless
    fi
  done
}

install_missing() {
  command -v apt-get >/dev/null ||
    die "missing: ${missing[*]}; this script installs them on Debian or Ubuntu only (apt-get)"
  local sudo=()
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || die "missing: ${missing[*]}; run this script as root (no sudo)"
    sudo=(sudo)
  fi
  echo "system.sh: installing the missing Debian packages: ${missing[*]}" >&2
  "${sudo[@]}" apt-get update -q
  mapfile -t pkgs < <(debian_packages)
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -q --no-install-recommends \
    "${pkgs[@]}"
}

# A Go too old for the deploy tools only matters to `make test`'s deploy tests: say how to fix it
# here, and let deploy/tools/install.sh fail with the same words if it is still too old then.
warn_old_go() {
  local go
  go=$(find_go) || return 0
  [ "$(go_minor "$go")" -ge 21 ] && return 0
  echo "system.sh: $go is older than Go 1.21, which building helm needs: install golang-1.21-go" \
    "or newer (Debian 12: from bookworm-backports) or Go from https://go.dev/dl" >&2
}

case "${1:-install}" in
  chromium)
    chromium_path || die "no Chromium found (chromium or chromium-browser on PATH, or" \
      "\$TESSERA_CHROMIUM): run deploy/setup/system.sh"
    ;;
  go)
    go=$(find_go) && [ "$(go_minor "$go")" -ge 21 ] || {
      warn_old_go
      die "no Go >= 1.21 found (deploy/setup/system.sh installs golang-go)"
    }
    echo "$go"
    ;;
  check)
    survey
    [ "${#missing[@]}" -eq 0 ] || die "missing: ${missing[*]} (deploy/setup/system.sh installs them)"
    ;;
  install)
    if command -v python3 >/dev/null && ! python_ok; then
      die "Python >= 3.11 is needed; $(python3 --version 2>&1) is installed"
    fi
    survey
    if [ "${#missing[@]}" -gt 0 ]; then
      install_missing
      survey
      [ "${#missing[@]}" -eq 0 ] || die "still missing after apt-get install: ${missing[*]}"
    fi
    warn_old_go
    ;;
  *) die "usage: system.sh [install | check | chromium]" ;;
esac

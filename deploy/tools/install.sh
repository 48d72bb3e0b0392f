#!/usr/bin/env bash
# Install the deploy tools into .cache/ (git-ignored), offline apart from the Go module proxy:
#   .cache/bin/helm                 built with `go install helm.sh/helm/v3/cmd/helm@HELM_VERSION`
#   .cache/bin/kubeconform          built with `go install github.com/yannh/kubeconform/...`
#   .cache/k8s-schemas/<version>/   strict JSON schemas made from the Kubernetes OpenAPI spec
#                                   inside the k8s.io/kubernetes module zip (no GitHub needed)
# Idempotent: what is already there at the pinned version is kept. Needs Go >= 1.21 (it fetches
# the toolchain helm asks for) and python3; deploy/setup/system.sh installs both.
set -euo pipefail

HELM_VERSION="${HELM_VERSION:-v3.21.4}"
KUBECONFORM_VERSION="${KUBECONFORM_VERSION:-v0.7.0}"
K8S_VERSION="${K8S_VERSION:-v1.35.4}"

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
bin="$root/.cache/bin"
schemas="$root/.cache/k8s-schemas/$K8S_VERSION"
# Built tools are also kept outside the work tree, so that a fresh clone on the same machine
# (CI's) copies them instead of building again.
shared="${TESSERA_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tessera-deploy-tools}"
mkdir -p "$bin" "$shared"

die() { echo "deploy/tools/install.sh: $*" >&2; exit 1; }
go_bin="$("$root/deploy/setup/system.sh" go)" || die "no Go >= 1.21 to build the tools with"
PATH="$(dirname "$go_bin"):$PATH"
command -v python3 >/dev/null || die "python3 is not installed"
# helm and kubeconform want a newer Go than Debian's: Go >= 1.21 fetches the toolchain a module
# asks for through the module proxy, unless told not to (Debian's go.env says GOTOOLCHAIN=local).
export GOTOOLCHAIN="${GOTOOLCHAIN:-auto}"

export GOFLAGS="${GOFLAGS:+$GOFLAGS }-mod=mod"
export GOBIN="$bin"

stamp() { echo "$bin/.$1-$2"; }

install_go_tool() { # name module version build-tag [go install flags...]
  local name="$1" module="$2" version="$3" tag="$4"
  shift 4
  if [ -x "$bin/$name" ] && [ -e "$(stamp "$name" "$tag")" ]; then
    return
  fi
  if [ -x "$shared/$name-$tag" ]; then
    cp "$shared/$name-$tag" "$bin/$name"
  else
    echo "building $name $version (go install $module@$version; minutes on a new machine) ..." >&2
    go install "$@" "$module@$version"
    cp "$bin/$name" "$shared/$name-$tag"
  fi
  rm -f "$bin/.$name-"*
  touch "$(stamp "$name" "$tag")"
}

# What helm's own Makefile sets: its version, and the Kubernetes version `helm template` and
# `helm lint` assume without a cluster (else v1.20, which a chart's kubeVersion may refuse).
k8s_minor="$(echo "$K8S_VERSION" | cut -d. -f2)"
helm_ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
for pkg in pkg/chartutil pkg/lint/rules; do
  helm_ldflags+=" -X helm.sh/helm/v3/$pkg.k8sVersionMajor=1"
  helm_ldflags+=" -X helm.sh/helm/v3/$pkg.k8sVersionMinor=$k8s_minor"
done
install_go_tool helm helm.sh/helm/v3/cmd/helm "$HELM_VERSION" "$HELM_VERSION-k8s1.$k8s_minor" \
  -ldflags "$helm_ldflags"
install_go_tool kubeconform github.com/yannh/kubeconform/cmd/kubeconform "$KUBECONFORM_VERSION" \
  "$KUBECONFORM_VERSION"

if [ ! -e "$schemas/.complete" ] && [ -e "$shared/k8s-schemas-$K8S_VERSION/.complete" ]; then
  mkdir -p "$(dirname "$schemas")"
  cp -r "$shared/k8s-schemas-$K8S_VERSION" "$schemas"
fi
if [ ! -e "$schemas/.complete" ]; then
  echo "making Kubernetes $K8S_VERSION JSON schemas from the k8s.io/kubernetes module ..." >&2
  zip="$(cd "$root" && go mod download -json "k8s.io/kubernetes@$K8S_VERSION" |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["Zip"])')"
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  python3 - "$zip" "k8s.io/kubernetes@$K8S_VERSION/api/openapi-spec/swagger.json" \
    "$tmp/swagger.json" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    open(sys.argv[3], "wb").write(z.read(sys.argv[2]))
PY
  rm -rf "$schemas"
  python3 "$root/deploy/tools/k8s_schemas.py" "$tmp/swagger.json" "$schemas"
  touch "$schemas/.complete"
  rm -rf "$shared/k8s-schemas-$K8S_VERSION"
  cp -r "$schemas" "$shared/k8s-schemas-$K8S_VERSION"
fi

"$bin/helm" version --short >&2
"$bin/kubeconform" -v >&2
echo "deploy tools ready: $bin (helm, kubeconform), schemas in $schemas" >&2

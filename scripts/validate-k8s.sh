#!/usr/bin/env bash
# Validates the Kubernetes manifests in deploy/kubernetes against the
# Kubernetes API schemas (kubernetes-validate, schemas bundled, offline),
# and checks that the ConfigMap's gateway.yaml is a config protogate accepts.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v kubernetes-validate >/dev/null 2>&1; then
  python3 -m pip install --quiet --disable-pip-version-check 'kubernetes-validate>=1.31,<2'
fi
# The kustomization is not a Kubernetes API object.
manifests=$(ls deploy/kubernetes/*.yaml | grep -v kustomization.yaml)
kubernetes-validate --strict --kubernetes-version 1.31.0 $manifests

# The embedded gateway.yaml must be a config protogate accepts. Its backends'
# cluster host names do not resolve here; that is a warning, not an error.
config=$(mktemp -d)
trap 'rm -rf "$config"' EXIT
python3 - "$config/gateway.yaml" "$PWD/protos" <<'PY'
import sys
import yaml  # installed with kubernetes-validate

out, protos = sys.argv[1], sys.argv[2]
with open("deploy/kubernetes/configmap.yaml") as f:
    text = yaml.safe_load(f)["data"]["gateway.yaml"]
with open(out, "w") as f:
    f.write(text.replace("/etc/protogate/protos", protos))
PY
cargo build --quiet --bin protogate
"${CARGO_TARGET_DIR:-target}"/debug/protogate check --config "$config/gateway.yaml" >/dev/null
echo "deploy/kubernetes: manifests valid, gateway.yaml accepted"

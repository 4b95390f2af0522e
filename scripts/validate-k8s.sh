#!/usr/bin/env bash
# Validates the Kubernetes manifests in deploy/kubernetes against the
# Kubernetes API schemas (kubernetes-validate, schemas bundled, offline),
# and checks that the ConfigMap's gateway.yaml is a config protogate accepts.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v kubernetes-validate >/dev/null 2>&1; then
  python3 -m pip install --quiet --disable-pip-version-check 'kubernetes-validate>=1.31,<2'
fi
# The kustomizations are not Kubernetes API objects. The scale-out overlay's
# patches are partial objects; its Secret and Redis are whole ones.
manifests=$(ls deploy/kubernetes/*.yaml | grep -v kustomization.yaml)
kubernetes-validate --strict --kubernetes-version 1.31.0 $manifests \
  deploy/kubernetes/scale-out/secret.yaml deploy/kubernetes/scale-out/redis.yaml

# The embedded gateway.yaml must be a config protogate accepts. Its backends'
# cluster host names do not resolve here; that is a warning, not an error.
config=$(mktemp -d)
trap 'rm -rf "$config"' EXIT
cargo build --quiet --bin protogate
for map in deploy/kubernetes/configmap.yaml deploy/kubernetes/scale-out/configmap.yaml; do
  python3 - "$config/gateway.yaml" "$PWD/protos" "$map" <<'PY'
import sys
import yaml  # installed with kubernetes-validate

out, protos, source = sys.argv[1], sys.argv[2], sys.argv[3]
with open(source) as f:
    text = yaml.safe_load(f)["data"]["gateway.yaml"]
with open(out, "w") as f:
    f.write(text.replace("/etc/protogate/protos", protos))
PY
  # The scale-out config names its passwords by environment variable.
  ETCD_PASSWORD=x REDIS_PASSWORD=x "${CARGO_TARGET_DIR:-target}"/debug/protogate check \
    --config "$config/gateway.yaml" >/dev/null
done
echo "deploy/kubernetes: manifests valid, both gateway.yaml accepted"

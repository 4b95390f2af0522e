#!/usr/bin/env bash
# gateway.yaml, the Kubernetes ConfigMap's copy and the README's config
# snippets against the JSON Schema `protogate config-schema` prints, with an
# independent validator (Python's jsonschema, Draft 2020-12), and the
# committed docs/gateway.schema.json against the one the binary prints.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --quiet --locked --bin protogate
schema="$(mktemp)"
trap 'rm -f "$schema"' EXIT
"${CARGO_TARGET_DIR:-target}"/debug/protogate config-schema >"$schema"
if ! cmp -s "$schema" docs/gateway.schema.json; then
  echo "docs/gateway.schema.json is not what protogate config-schema prints; run:" >&2
  echo "  cargo run -q -- config-schema > docs/gateway.schema.json" >&2
  exit 1
fi
venv="${CARGO_TARGET_DIR:-target}/venv-config-schema"
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import jsonschema, yaml" 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check 'jsonschema>=4.18,<5' 'pyyaml>=6,<7'
fi
"$venv/bin/python" scripts/validate-config-schema.py "$schema"

#!/usr/bin/env bash
# Validates the example API's golden OpenAPI document against the OpenAPI 3.1 schema.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! python3 -c 'import openapi_spec_validator' 2>/dev/null; then
  python3 -m pip install --quiet --disable-pip-version-check 'openapi-spec-validator>=0.7,<1'
fi
python3 -m openapi_spec_validator tests/golden/shop.openapi.json

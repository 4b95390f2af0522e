#!/usr/bin/env python3
"""Validates config files against the JSON Schema `protogate config-schema`
prints, with the independent `jsonschema` validator (Draft 2020-12):

    validate-config-schema.py SCHEMA.json

Checked: gateway.yaml, the gateway.yaml embedded in the Kubernetes
ConfigMap, and every ```yaml block of README.md that is a config (top-level
keys of gateway.yaml, and no `...` standing for a section shown elsewhere;
those are checked without the required `backends`, as a snippet shows one
section).
"""
import copy
import json
import re
import sys

import jsonschema
import yaml

class Loader(yaml.SafeLoader):
    """YAML as protogate reads it: `2026-11-01` is text, not a date."""


Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}

schema = json.load(open(sys.argv[1]))
validator = jsonschema.Draft202012Validator(schema)
snippet = copy.deepcopy(schema)
snippet.pop("required", None)
snippet_validator = jsonschema.Draft202012Validator(snippet)
failures = 0


def check(name, text, v):
    global failures
    doc = yaml.load(text, Loader=Loader)
    errors = sorted(v.iter_errors(doc), key=lambda e: list(e.path))
    for e in errors:
        failures += 1
        path = "/".join(str(p) for p in e.path) or "(top)"
        print(f"{name}: {path}: {e.message}")
    return not errors


checked = 0
check("gateway.yaml", open("gateway.yaml").read(), validator)
checked += 1
configmap = yaml.load(open("deploy/kubernetes/configmap.yaml"), Loader=Loader)
check("deploy/kubernetes/configmap.yaml (data.gateway.yaml)", configmap["data"]["gateway.yaml"], validator)
checked += 1
keys = set(schema["properties"])
readme = open("README.md").read()
for i, m in enumerate(re.finditer(r"```yaml\n(.*?)```", readme, re.S)):
    # `{ ... }` stands for a section shown elsewhere.
    if "..." in m.group(1):
        continue
    try:
        doc = yaml.load(m.group(1), Loader=Loader)
    except yaml.YAMLError:
        continue
    if not isinstance(doc, dict) or not set(doc) <= keys:
        continue
    line = readme[: m.start()].count("\n") + 1
    check(f"README.md:{line}", m.group(1), snippet_validator)
    checked += 1
if failures:
    sys.exit(f"config schema: {failures} error(s)")
print(f"config schema: {checked} configs valid")

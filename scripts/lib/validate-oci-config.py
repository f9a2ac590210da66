#!/usr/bin/env python3
"""Validates OCI runtime configs against the runtime-spec's JSON schema.

usage: validate-oci-config.py CONFIG.json...

The schema comes from Debian's golang-github-opencontainers-specs-dev (installed
by scripts/setup); validation by python3-jsonschema. Prints one line per error
and exits 1 if any config is invalid.
"""
import json
import pathlib
import sys

import jsonschema

SCHEMA_DIR = pathlib.Path(
    "/usr/share/gocode/src/github.com/opencontainers/runtime-spec/schema"
)


def main(paths):
    schema_path = SCHEMA_DIR / "config-schema.json"
    schema = json.loads(schema_path.read_text())
    resolver = jsonschema.RefResolver(base_uri=schema_path.as_uri(), referrer=schema)
    validator = jsonschema.Draft4Validator(schema, resolver=resolver)
    bad = 0
    for path in paths:
        config = json.loads(pathlib.Path(path).read_text())
        for error in validator.iter_errors(config):
            where = "/".join(str(p) for p in error.absolute_path) or "(top)"
            print(f"{path}: {where}: {error.message}")
            bad += 1
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Schemas of the JSON files that travel with a published artifact: test-hw reports, bundle.json.

Read through runtime.loader. What a later npukit adds is tolerated; what these keys hold is not
open to doubt.
"""

from __future__ import annotations

from runtime.loader import Schema

BUNDLE_SCHEMA = 1  # bundle.json's "schema"
SHA256: Schema = {"type": "string", "pattern": "^[0-9a-f]{64}$"}

#: `<variant>.test-hw.json` beside an artifact, and `test-hw.json` inside a bundle
REPORT_SCHEMA: Schema = {
    "type": "object",
    "required": ["passed", "backend", "manifest_sha256"],
    "properties": {
        "kernel": {"type": "string"},
        "variant": {"type": "string"},
        "backend": {"type": "string"},
        "passed": {"type": "boolean"},
        "reason": {"type": "string"},
        "error": {"type": "string"},
        "flags": {"type": "array", "items": {"type": "string"}},
        "warnings": {"type": "array", "items": {"type": "string"}},
        "saturation": {"type": "object", "additionalProperties": {"type": "number"}},
        "cases": {"type": "array", "items": {"type": "object"}},
        "timing": {"type": "object", "additionalProperties": {"type": "number"}},
        "seconds": {"type": "number"},
        "manifest_sha256": SHA256,
    },
}

#: `bundle.json` inside a bundle: what it is and whether it was verified on an NPU
BUNDLE_INFO_SCHEMA: Schema = {
    "type": "object",
    "required": ["schema", "kernel", "variant", "version", "manifest_sha256", "verification"],
    "properties": {
        "schema": {"const": BUNDLE_SCHEMA},
        "kernel": {"type": "string"},
        "variant": {"type": "string"},
        "version": {"type": "string", "minLength": 1},
        "manifest_sha256": SHA256,
        "verification": {
            "type": "object",
            "required": ["status"],
            "properties": {
                "status": {"enum": ["verified", "unverified"]},
                "reason": {"type": ["string", "null"]},
                "report": {"type": ["string", "null"]},
                "summary": {"type": ["object", "null"]},
            },
        },
    },
}

"""Checks openapi-schema.yaml as a Bedrock agent action group needs it: OpenAPI 3.0, the six finops operations, each
with an operationId and description, every parameter described with a schema, JSON bodies and responses.
Run by `make test` with the project's virtualenv (PyYAML comes with moto)."""

import re
import sys

import yaml

EXPECTED = {
    # account_id: the account an instance is in, in a deployment over an organization (the tools read it there).
    "analyse_underutilised_resources": ("get", {"region", "lookback_days", "account_id"}),
    "get_instance_details": ("get", {"instance_id", "account_id"}),
    "get_utilisation": ("get", {"instance_id", "days", "account_id"}),
    "estimate_savings": ("get", {"instance_type", "region"}),
    "stop_resource": ("post", {"resource_id"}),
    "request_termination_approval": ("post", {"instance_id", "justification"}),
}


def fail(message):
    print(f"openapi-schema.yaml: {message}")
    sys.exit(1)


def main(path):
    doc = yaml.safe_load(open(path))
    if not str(doc.get("openapi", "")).startswith("3.0"):
        fail("must be OpenAPI 3.0.x (Bedrock action groups)")
    for key in ("title", "version"):
        if key not in doc.get("info", {}):
            fail(f"info.{key} missing")
    seen = {}
    for route, methods in doc["paths"].items():
        for method, op in methods.items():
            op_id = op.get("operationId") or fail(f"{method} {route}: no operationId")
            if not op.get("description"):
                fail(f"{op_id}: no description (the agent chooses tools by it)")
            names = set()
            for param in op.get("parameters", []):
                for key in ("name", "in", "description", "schema"):
                    if key not in param:
                        fail(f"{op_id}: parameter without {key}")
                if param["in"] == "path" and f"{{{param['name']}}}" not in route:
                    fail(f"{op_id}: path parameter {param['name']} not in {route}")
                names.add(param["name"])
            for placeholder in re.findall(r"{(\w+)}", route):
                if placeholder not in names:
                    fail(f"{op_id}: {route} has no parameter for {placeholder}")
            body = op.get("requestBody")
            if body:
                schema = body["content"]["application/json"]["schema"]
                names |= set(schema.get("properties", {}))
            if "application/json" not in op["responses"]["200"].get("content", {}):
                fail(f"{op_id}: 200 response must be application/json")
            seen[op_id] = (method, names)
    if seen != EXPECTED:
        fail(f"operations differ from the agent-tools handler: {seen} != {EXPECTED}")
    print(f"openapi-schema.yaml: {len(seen)} operations valid for a Bedrock action group")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "openapi-schema.yaml")

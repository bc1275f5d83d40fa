"""Prints the member-roles template that the hub's StackSet carries as a string, for cfn-lint.

Usage: python member_template.py HUB_TEMPLATE.json > member.json

The string is an Fn::Join of text and the hub functions' role ARNs (tokens the hub stack resolves); each token is
replaced by a placeholder role ARN, which is what the member stack would receive.
"""

import json
import sys


def main():
    hub = json.load(open(sys.argv[1]))
    stack_sets = [r for r in hub["Resources"].values() if r["Type"] == "AWS::CloudFormation::StackSet"]
    if len(stack_sets) != 1:
        sys.exit(f"{sys.argv[1]}: expected one StackSet, found {len(stack_sets)}")
    body = stack_sets[0]["Properties"]["TemplateBody"]
    parts = body["Fn::Join"][1] if isinstance(body, dict) else [body]
    text = "".join(p if isinstance(p, str) else "arn:aws:iam::123456789012:role/hub-function-role" for p in parts)
    json.dump(json.loads(text), sys.stdout, indent=1)


if __name__ == "__main__":
    main()

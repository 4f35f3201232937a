#!/usr/bin/env python3
"""Offline checks of infra/template.yaml (run by `make test-infra`).

1. The SAM transform itself (aws-sam-translator), which catches event-source and
   policy mistakes cfn-lint does not; the result is written as JSON for cfn-guard.
2. Structure that the guard DSL cannot express: every function has a role of its own.

Local code locations are replaced by S3 placeholders first, as `sam package` would
(`--artifacts BUCKET` names the bucket; the emulator deployment uploads stand-ins).

Usage: check_template.py TEMPLATE OUT_JSON [--artifacts BUCKET]
"""
import argparse
import json
import os
import sys
from collections import Counter
from pathlib import Path

from cfnlint.decode import decode
from samtranslator.translator.transform import transform


class NoManagedPolicies:
    """The template uses no AWS managed policies, so nothing needs an IAM call."""

    def load(self):
        return {}


def packaged(template, bucket):
    """What `sam package` makes of local paths: S3 locations."""
    for name, r in template["Resources"].items():
        props = r.get("Properties", {})
        if r["Type"] == "AWS::Serverless::Function" and not str(props.get("CodeUri", "")).startswith("s3://"):
            props["CodeUri"] = f"s3://{bucket}/{name}.zip"
        if r["Type"] == "AWS::Serverless::Application" and isinstance(props.get("Location"), str):
            props["Location"] = f"https://s3.amazonaws.com/{bucket}/{props['Location']}"
    return template


def translate(template_path, artifacts):
    """The template as CloudFormation JSON, after `sam package` and the SAM transform."""
    # The translator needs a region to build ARNs; it makes no call.
    os.environ.setdefault("AWS_DEFAULT_REGION", "eu-north-1")
    template, matches = decode(str(template_path))
    if matches:
        sys.exit(f"{template_path}: cannot parse: {matches}")
    return transform(packaged(template, artifacts), {}, NoManagedPolicies())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("template", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--artifacts", default="naerdata-artifacts")
    args = ap.parse_args()
    template_path, out_path = args.template, args.out
    try:
        translated = translate(template_path, args.artifacts)
    except Exception as e:  # noqa: BLE001 - the translator reports every problem as one
        sys.exit(f"SAM transform failed: {e}")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(translated, indent=1, default=str))

    resources = translated["Resources"]
    functions = {k: v for k, v in resources.items() if v["Type"] == "AWS::Lambda::Function"}
    roles = Counter()
    problems = []
    for name, fn in functions.items():
        role = fn["Properties"].get("Role")
        if not (isinstance(role, dict) and "Fn::GetAtt" in role):
            problems.append(f"{name}: Role must be a role declared in the template")
            continue
        target = role["Fn::GetAtt"][0]
        if resources.get(target, {}).get("Type") != "AWS::IAM::Role":
            problems.append(f"{name}: Role {target} is not an AWS::IAM::Role")
        roles[target] += 1
    problems += [f"role {r} is shared by {n} functions" for r, n in roles.items() if n > 1]
    mappings = [k for k, v in resources.items() if v["Type"] == "AWS::Lambda::EventSourceMapping"]
    schedules = [k for k, v in resources.items() if v["Type"] == "AWS::Events::Rule"]
    # receive and process read SQS; the monitor runs on a schedule.
    if len(functions) < 3 or len(mappings) < 2 or not schedules:
        problems.append(f"expected two SQS-triggered functions and a scheduled one: {len(functions)} "
                        f"functions, {len(mappings)} event source mappings, {len(schedules)} schedules")
    for p in problems:
        print(f"FAIL {p}")
    print(f"SAM transform: {len(resources)} resources ({len(functions)} functions, "
          f"{len(mappings)} event source mappings) -> {out_path}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

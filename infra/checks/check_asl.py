#!/usr/bin/env python3
"""Offline checks of the template's Step Functions state machines (make test-infra).

Each AWS::StepFunctions::StateMachine of the transformed template (check_template.py
writes it) has its Amazon States Language definition rebuilt from the DefinitionString
(intrinsic functions and DefinitionSubstitutions become placeholder ARNs) and written
to target/infra/asl/<name>.asl.json; then:

1. `asl-validator` (npm, pinned in the Makefile) validates it against the ASL schema,
   including the JSONPath and intrinsic-function syntax.
2. What the schema cannot say: the machine has a deadline (TimeoutSeconds), and every
   Task has a timeout, retries and a Catch that ends in a Fail state, so no failure
   ends a run as a success and none runs forever.

Usage: check_asl.py TRANSFORMED_JSON OUT_DIR VALIDATOR
"""
import json
import subprocess
import sys
from pathlib import Path

PLACEHOLDER = "arn:aws:lambda:eu-north-1:123456789012:function:placeholder"


def text(part):
    """A DefinitionString part: a string, or an intrinsic (a placeholder ARN)."""
    return part if isinstance(part, str) else PLACEHOLDER


def definition(props):
    d = props["DefinitionString"]
    if isinstance(d, dict) and "Fn::Join" in d:
        sep, parts = d["Fn::Join"]
        d = sep.join(text(p) for p in parts)
    elif isinstance(d, dict) and "Fn::Sub" in d:
        d = d["Fn::Sub"] if isinstance(d["Fn::Sub"], str) else d["Fn::Sub"][0]
    for name in props.get("DefinitionSubstitutions", {}):
        d = d.replace("${" + name + "}", PLACEHOLDER)
    return json.loads(d)


def problems_of(name, asl):
    out = []
    if not isinstance(asl.get("TimeoutSeconds"), int):
        out.append(f"{name}: no TimeoutSeconds for the whole run")
    states = asl["States"]
    for s, st in states.items():
        if st["Type"] != "Task":
            continue
        if not isinstance(st.get("TimeoutSeconds"), int):
            out.append(f"{name}.{s}: a Task without TimeoutSeconds")
        if not st.get("Retry"):
            out.append(f"{name}.{s}: a Task without Retry")
        catches = st.get("Catch", [])
        if not any("States.ALL" in c["ErrorEquals"] and states.get(c["Next"], {}).get("Type") == "Fail"
                   for c in catches):
            out.append(f"{name}.{s}: no Catch of States.ALL that ends in a Fail state")
    return out


def main():
    transformed, out_dir, validator = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
    resources = json.loads(transformed.read_text())["Resources"]
    machines = {k: v for k, v in resources.items() if v["Type"] == "AWS::StepFunctions::StateMachine"}
    if not machines:
        sys.exit("no state machine in the template")
    out_dir.mkdir(parents=True, exist_ok=True)
    failed = 0
    for name, r in sorted(machines.items()):
        asl = definition(r["Properties"])
        path = out_dir / f"{name}.asl.json"
        path.write_text(json.dumps(asl, indent=2))
        run = subprocess.run([validator, "--json-path", str(path)], capture_output=True, text=True)
        if run.returncode != 0:
            print(f"FAIL {name}: asl-validator: {run.stdout}{run.stderr}")
            failed += 1
        for p in problems_of(name, asl):
            print(f"FAIL {p}")
            failed += 1
        if run.returncode == 0:
            print(f"{name}: valid ASL ({len(asl['States'])} states) -> {path}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

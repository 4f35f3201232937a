#!/usr/bin/env python3
"""Deploys infra/template.yaml into a moto server and checks what it created.

The SAM transform runs offline (check_template.py), stand-in code zips go to an
artifacts bucket, and the stack is created with CloudFormation in the emulator. Then
the resources are read back through their own APIs and compared with the intent:
versioned, KMS-encrypted, private buckets; queues with redrive policies; the ledger
table with its index; the key, the secret, the roles, the functions, the schedules and
the publication's state machine.

moto's CloudFormation creates no Glue resources and applies no bucket or queue
policies (it reports success anyway). So: the Glue tables are created through the
Glue API from the same generated definitions (infra/catalog.yaml), the policies are
checked as documents by cfn-guard (make test-infra), and the S3 -> SQS notification
is applied through the S3 API when the emulator left it out.

Prints the stack outputs as one JSON line (last line of stdout); exit status 1 when a
check fails. Usage: deploy_emulator.py --endpoint URL [--env test]
"""
import argparse
import io
import json
import re
import sys
import zipfile
from pathlib import Path

import boto3

sys.path.insert(0, str(Path(__file__).parent))
from check_template import translate  # noqa: E402
from cfnlint.decode import decode  # noqa: E402

INFRA = Path(__file__).resolve().parent.parent
REGION = "eu-north-1"
ARTIFACTS = "naerdata-artifacts"

# Filled from the template in main().
SUPPLIERS = []


def suppliers(template):
    """The suppliers as the template's generated parameters name them
    (`<Stem>AccountId`), in the template's order."""
    return [k[: -len("AccountId")] for k in template["Parameters"] if k.endswith("AccountId")]


class Checks:
    def __init__(self):
        self.failed = 0

    def expect(self, ok, what):
        print(f"{'PASS' if ok else 'FAIL'} {what}", file=sys.stderr)
        self.failed += 0 if ok else 1

    def gap(self, what, instead="cfn-guard checks it in the template"):
        """Something the emulator's CloudFormation does not create or apply. Said aloud
        so nobody reads it as a pass; `instead` says what covers it."""
        print(f"GAP  {what}: moto's CloudFormation skips it; {instead}", file=sys.stderr)


def resolve(value, names):
    """Ref and Fn::Sub of the given names only (parameters, pseudo parameters); `${!x}`
    is Fn::Sub's escape for a literal `${x}`. Enough for the key policy and the catalog."""
    if isinstance(value, dict) and set(value) == {"Ref"} and value["Ref"] in names:
        return names[value["Ref"]]
    if isinstance(value, dict) and set(value) == {"Fn::Sub"} and isinstance(value["Fn::Sub"], str):
        text = re.sub(r"\$\{([\w:]+)\}", lambda m: names.get(m.group(1), m.group(0)), value["Fn::Sub"])
        return text.replace("${!", "${")
    if isinstance(value, dict):
        return {k: resolve(v, names) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve(v, names) for v in value]
    return value


def stub_zip():
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("bootstrap", "#!/bin/sh\n# stand-in: the emulator never runs it\n")
    return buf.getvalue()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--endpoint", required=True)
    ap.add_argument("--env", default="test")
    ap.add_argument("--detach-event-sources", action="store_true",
                    help="disable the event source mappings after checking them: moto's own would "
                         "take the messages and try to run the function in Docker; the test "
                         "harness stands in for them")
    args = ap.parse_args()
    kw = dict(endpoint_url=args.endpoint, region_name=REGION,
              aws_access_key_id="testing", aws_secret_access_key="testing")
    c = {n: boto3.client(n, **kw) for n in
         ["s3", "sqs", "dynamodb", "kms", "secretsmanager", "iam", "lambda", "glue",
          "cloudformation", "events", "stepfunctions"]}
    checks = Checks()

    translated = translate(INFRA / "template.yaml", ARTIFACTS)
    global SUPPLIERS
    SUPPLIERS = suppliers(translated)
    checks.expect(len(SUPPLIERS) >= 5, f"supplier parameters in the template: {SUPPLIERS}")
    # The Glue tables come through the Glue API below (the emulator skips Glue).
    catalog_stack = [k for k, v in translated["Resources"].items()
                     if v["Type"] == "AWS::CloudFormation::Stack"]
    for k in catalog_stack:
        del translated["Resources"][k]

    # moto keeps a KMS key policy given as an object unparsed and then fails every call
    # on the key; CloudFormation also takes the policy as a JSON string, so pass that.
    ids = {"AWS::AccountId": "123456789012", "AWS::Region": REGION, "AWS::Partition": "aws",
           "EnvironmentName": args.env}
    keys = [k for k, v in translated["Resources"].items() if v["Type"] == "AWS::KMS::Key"]
    for k in keys:
        props = translated["Resources"][k]["Properties"]
        props["KeyPolicy"] = json.dumps(resolve(props["KeyPolicy"], ids))

    c["s3"].create_bucket(Bucket=ARTIFACTS, CreateBucketConfiguration={"LocationConstraint": REGION})
    for name, r in translated["Resources"].items():
        if r["Type"] == "AWS::Lambda::Function":
            c["s3"].put_object(Bucket=ARTIFACTS, Key=f"{name}.zip", Body=stub_zip())
    stack = f"naerdata-{args.env}"
    c["cloudformation"].create_stack(
        StackName=stack, TemplateBody=json.dumps(translated, default=str),
        Parameters=[{"ParameterKey": "EnvironmentName", "ParameterValue": args.env},
                    {"ParameterKey": "Architecture", "ParameterValue": "x86_64"}]
        + [p for n, source in enumerate(SUPPLIERS, start=1) for p in [
            {"ParameterKey": f"{source}AccountId", "ParameterValue": f"{n:012d}"},
            {"ParameterKey": f"{source}ExternalId", "ParameterValue": f"naerdata-test-{source.lower()}-external-id"}]],
        Capabilities=["CAPABILITY_NAMED_IAM", "CAPABILITY_AUTO_EXPAND"])
    desc = c["cloudformation"].describe_stacks(StackName=stack)["Stacks"][0]
    checks.expect(desc["StackStatus"] == "CREATE_COMPLETE", f"stack {stack} {desc['StackStatus']}")
    out = {o["OutputKey"]: o["OutputValue"] for o in desc.get("Outputs", [])}
    created = {r["LogicalResourceId"] for r in
               c["cloudformation"].list_stack_resources(StackName=stack)["StackResourceSummaries"]}
    for name, r in sorted(translated["Resources"].items()):
        if name not in created:
            checks.gap(f"{r['Type']} {name}", "cfn-lint, checkov and cfn-guard check its definition")

    # The secret, as the template declares it (empty), when the emulator skipped it;
    # then its first key, as `naerdata --aws keys init` puts it.
    if "LakeKeySecret" not in out:
        import secrets as pysecrets
        name = f"naerdata-{args.env}/lake-key"
        c["secretsmanager"].create_secret(Name=name, KmsKeyId=out["SecretsKey"])
        c["secretsmanager"].put_secret_value(
            SecretId=name, SecretString=json.dumps({"version": 1, "key_hex": pysecrets.token_hex(32)}))
        out["LakeKeySecret"] = name

    # Buckets: versioned (the lake not), KMS with the key of their kind of data, private.
    kms_of = {"LandingBucket": "LandingKey", "ReceiptsBucket": "LandingKey", "QuarantineBucket": "LandingKey",
              "LakeBucket": "DataKey", "TrailBucket": "DataKey"}
    for key in ["LandingBucket", "LakeBucket", "ReceiptsBucket", "QuarantineBucket", "TrailBucket"]:
        b = out[key]
        v = c["s3"].get_bucket_versioning(Bucket=b).get("Status")
        if key == "LakeBucket":
            # History is the Delta log; a purge must leave no noncurrent copy.
            checks.expect(v is None, f"{key} {b} keeps no versions ({v})")
        elif v is None:
            checks.gap(f"{key} versioning")
        else:
            checks.expect(v == "Enabled", f"{key} {b} versioned ({v})")
        rule = c["s3"].get_bucket_encryption(Bucket=b)["ServerSideEncryptionConfiguration"]["Rules"][0]
        sse = rule["ApplyServerSideEncryptionByDefault"]
        checks.expect(sse["SSEAlgorithm"] == "aws:kms" and sse.get("KMSMasterKeyID") == out[kms_of[key]],
                      f"{key} encrypted with {kms_of[key]}")
        try:
            pab = c["s3"].get_public_access_block(Bucket=b)["PublicAccessBlockConfiguration"]
            checks.expect(all(pab.values()), f"{key} blocks public access")
        except c["s3"].exceptions.ClientError as e:
            if "NoSuchPublicAccessBlockConfiguration" not in str(e):
                raise
            checks.gap(f"{key} public access block")

    # Queues: encrypted, work queues with a DLQ after 5 receives.
    for q, dlq in [("ReceiveQueue", "ReceiveDeadLetterQueue"), ("ProcessQueue", "ProcessDeadLetterQueue"),
                   ("ExtractQueue", "ExtractDeadLetterQueue")]:
        a = c["sqs"].get_queue_attributes(QueueUrl=out[q], AttributeNames=["All"])["Attributes"]
        dlq_arn = c["sqs"].get_queue_attributes(
            QueueUrl=out[dlq], AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        redrive = json.loads(a.get("RedrivePolicy", "{}"))
        checks.expect(redrive.get("deadLetterTargetArn") == dlq_arn
                      and int(redrive.get("maxReceiveCount", 0)) == 5,
                      f"{q} redrives to {dlq} after 5 receives")
        checks.expect(bool(a.get("KmsMasterKeyId")), f"{q} encrypted")
        out[f"{q}Arn"] = a["QueueArn"]

    # The ledger: the key and index the code queries.
    t = c["dynamodb"].describe_table(TableName=out["LedgerTable"])["Table"]
    checks.expect([k["AttributeName"] for k in t["KeySchema"]] == ["pk"], "ledger key pk")
    gsi = {g["IndexName"]: [k["AttributeName"] for k in g["KeySchema"]]
           for g in t.get("GlobalSecondaryIndexes", [])}
    checks.expect(gsi.get("by_dataset") == ["dataset", "received_at"], f"ledger index by_dataset ({gsi})")
    checks.expect(t.get("BillingModeSummary", {}).get("BillingMode") == "PAY_PER_REQUEST", "ledger on demand")

    # Landing: Object Lock in governance mode (moto's CloudFormation leaves it out).
    try:
        lock = c["s3"].get_object_lock_configuration(Bucket=out["LandingBucket"])["ObjectLockConfiguration"]
        checks.expect(lock["Rule"]["DefaultRetention"]["Mode"] == "GOVERNANCE", "landing Object Lock governance")
    except c["s3"].exceptions.ClientError as e:
        if "ObjectLockConfigurationNotFound" not in str(e):
            raise
        checks.gap("LandingBucket Object Lock")

    # Three KMS keys, each enabled and rotating; the secret the process function reads.
    arns = {out[k] for k in ["DataKey", "LandingKey", "SecretsKey"]}
    checks.expect(len(arns) == 3, "three separate KMS keys (lake, raw data, secrets)")
    for k in ["DataKey", "LandingKey", "SecretsKey"]:
        key_id = out[k].split("/")[-1]
        checks.expect(c["kms"].describe_key(KeyId=key_id)["KeyMetadata"]["Enabled"], f"{k} enabled")
        checks.expect(c["kms"].get_key_rotation_status(KeyId=key_id)["KeyRotationEnabled"], f"{k} rotates")
    checks.expect(c["secretsmanager"].describe_secret(SecretId=out["LakeKeySecret"]).get("KmsKeyId")
                  in (out["SecretsKey"], out["SecretsKey"].split("/")[-1]), "lake key secret under the secrets key")
    secret = json.loads(c["secretsmanager"].get_secret_value(SecretId=out["LakeKeySecret"])["SecretString"])
    checks.expect(secret.get("version") == 1 and re.fullmatch(r"[0-9a-f]{64}", secret.get("key_hex", "")),
                  "lake key secret is version 1 with 64 hex characters")

    # Functions, each with its own role, and their SQS sources.
    roles = set()
    for fn in ["receive", "process", "publish"]:
        f = c["lambda"].get_function(FunctionName=f"naerdata-{args.env}-{fn}")["Configuration"]
        checks.expect(f["Runtime"] == "provided.al2023", f"{fn} runtime {f['Runtime']}")
        role = f["Role"].split("/")[-1]
        checks.expect(role == f"naerdata-{args.env}-{fn}", f"{fn} runs as its own role ({role})")
        roles.add(role)
        c["iam"].get_role(RoleName=role)
        maps = c["lambda"].list_event_source_mappings(FunctionName=f["FunctionName"])["EventSourceMappings"]
        checks.expect(len(maps) == 1 and maps[0].get("FunctionResponseTypes") == ["ReportBatchItemFailures"],
                      f"{fn} reads its queue with partial batch responses")
        if args.detach_event_sources:
            for m in maps:
                c["lambda"].update_event_source_mapping(UUID=m["UUID"], Enabled=False)
    for n, source in enumerate(SUPPLIERS, start=1):
        trust = c["iam"].get_role(RoleName=f"naerdata-{args.env}-supplier-{source.lower()}")["Role"][
            "AssumeRolePolicyDocument"]
        trust = json.loads(trust) if isinstance(trust, str) else trust
        st = trust["Statement"][0]
        checks.expect(st["Principal"]["AWS"] == f"arn:aws:iam::{n:012d}:root"
                      and st["Condition"]["StringEquals"]["sts:ExternalId"] == f"naerdata-test-{source.lower()}-external-id",
                      f"supplier {source} trusted from its own account with its ExternalId")
    # The monitor runs on a schedule only: its own role, no queue.
    f = c["lambda"].get_function(FunctionName=f"naerdata-{args.env}-monitor")["Configuration"]
    role = f["Role"].split("/")[-1]
    checks.expect(role == f"naerdata-{args.env}-monitor", f"monitor runs as its own role ({role})")
    roles.add(role)
    # Lake maintenance (compaction, retention of the Delta tables): the publish binary
    # with a role of its own, which alone may delete lake files.
    f = c["lambda"].get_function(FunctionName=f"naerdata-{args.env}-maintain")["Configuration"]
    role = f["Role"].split("/")[-1]
    checks.expect(role == f"naerdata-{args.env}-maintain", f"maintain runs as its own role ({role})")
    roles.add(role)
    checks.expect(len(roles) == 5, "five function roles")

    # The daily monitor and publish: EventBridge rules; the monitor's invokes the
    # function, the publication's starts the publish state machine.
    machine = f"naerdata-{args.env}-publish"
    for fn, target in [("monitor", f":function:naerdata-{args.env}-monitor"),
                       ("publish", f":stateMachine:{machine}")]:
        rule = f"naerdata-{args.env}-{fn}-daily"
        try:
            r = c["events"].describe_rule(Name=rule)
            checks.expect(r["ScheduleExpression"].startswith("cron("), f"{rule} {r['ScheduleExpression']}")
            targets = c["events"].list_targets_by_rule(Rule=rule)["Targets"]
            checks.expect(any(t["Arn"].endswith(target) for t in targets),
                          f"{rule} targets ...{target}")
        except c["events"].exceptions.ResourceNotFoundException:
            checks.gap(f"the schedule {rule}")

    # The publication's state machine: its definition as the template declares it, run
    # as its own role, which may invoke the publish function and nothing else of ours.
    arn = out["PublishStateMachine"]
    sm = c["stepfunctions"].describe_state_machine(stateMachineArn=arn)
    checks.expect(sm["name"] == machine and sm["roleArn"].endswith(f"/naerdata-{args.env}-publish-orchestration"),
                  f"state machine {sm['name']} runs as {sm['roleArn'].split('/')[-1]}")
    asl = json.loads(sm["definition"])
    task = asl["States"].get("Publish", {})
    function = task.get("Parameters", {}).get("FunctionName", "")
    if function == "${PublishFunctionArn}":
        # moto stores the definition without applying DefinitionSubstitutions: check
        # what the template substitutes instead.
        checks.gap("the state machine's DefinitionSubstitutions",
                   "the transformed template's substitution is checked here instead")
        subs = translated["Resources"]["PublishStateMachine"]["Properties"]["DefinitionSubstitutions"]
        checks.expect(subs.get("PublishFunctionArn") == {"Fn::GetAtt": ["PublishFunction", "Arn"]},
                      "the state machine's Publish step invokes the publish function (by substitution)")
    else:
        checks.expect(function.endswith(f":function:naerdata-{args.env}-publish"),
                      "the state machine's Publish step invokes the publish function")
    checks.expect(bool(task.get("Retry")) and task.get("TimeoutSeconds") == 960 and asl.get("TimeoutSeconds") == 7200,
                  "the Publish step retries with a 960 s timeout; the run has a 7200 s deadline")
    rule = f"naerdata-{args.env}-maintain"
    try:
        targets = c["events"].list_targets_by_rule(Rule=rule)["Targets"]
        maintain = [t for t in targets if t["Arn"].endswith(f":function:naerdata-{args.env}-maintain")]
        checks.expect(len(maintain) == 1, f"{rule} invokes the maintain function")
        checks.expect(bool(maintain) and json.loads(maintain[0].get("Input", "{}")).get("maintain", {})
                      .get("retention_days") == 30, f"{rule} passes the retention (30 days)")
    except c["events"].exceptions.ResourceNotFoundException:
        checks.gap(f"the schedule {rule}")

    # Glue: the database and the generated tables, through the Glue API.
    db = f"naerdata_{args.env}"
    try:
        c["glue"].get_database(Name=db)
    except c["glue"].exceptions.EntityNotFoundException:
        c["glue"].create_database(DatabaseInput={"Name": db})
    catalog, matches = decode(str(INFRA / "catalog.yaml"))
    params = {"LakeBucket": out["LakeBucket"], "DatabaseName": db}
    for r in catalog["Resources"].values():
        c["glue"].create_table(DatabaseName=db, TableInput=resolve(r["Properties"]["TableInput"], params))
    tables = c["glue"].get_tables(DatabaseName=db)["TableList"]
    checks.expect(len(tables) == len(catalog["Resources"]) > 0, f"{len(tables)} Glue tables")
    delta = [t["Name"] for t in tables if t.get("Parameters", {}).get("table_type") == "DELTA"]
    checks.expect("almenpraksis_diagnose" in delta and "quality_metrics" in delta,
                  f"{len(delta)} Glue tables declared as Delta tables for Athena")

    # Athena: the workgroups, created through the Athena API from the template's
    # definitions when the emulator skipped them, then read back. The publish function
    # sends the marts' SQL to the publication's workgroup, and its role reaches no other.
    athena = boto3.client("athena", **kw)
    defaults = {k: p.get("Default") for k, p in translated["Parameters"].items()}
    names = {**defaults, "EnvironmentName": args.env, "AWS::AccountId": "123456789012",
             "AWS::Region": REGION, "AthenaResultsBucket": f"naerdata-{args.env}-123456789012-{REGION}-athena"}

    def emulated(value):
        value = resolve(value, names)
        if isinstance(value, dict) and set(value) == {"Fn::GetAtt"}:
            return f"arn:aws:kms:{REGION}:123456789012:key/emulated-{value['Fn::GetAtt'][0]}"
        if isinstance(value, dict):
            return {k: emulated(v) for k, v in value.items()}
        return value

    existing = {w["Name"] for w in athena.list_work_groups()["WorkGroups"]}
    for name, r in sorted(translated["Resources"].items()):
        if r["Type"] != "AWS::Athena::WorkGroup":
            continue
        props = emulated(r["Properties"])
        if props["Name"] not in existing:
            checks.gap(f"AWS::Athena::WorkGroup {name}", "created here through the Athena API")
            config = props["WorkGroupConfiguration"]
            config["BytesScannedCutoffPerQuery"] = int(config["BytesScannedCutoffPerQuery"])
            athena.create_work_group(Name=props["Name"], Description=props["Description"],
                                     Configuration=config)
    publish_wg = f"naerdata-{args.env}-publish"
    wg = athena.get_work_group(WorkGroup=publish_wg)["WorkGroup"]["Configuration"]
    checks.expect(wg.get("EngineVersion", {}).get("SelectedEngineVersion") == "Athena engine version 3"
                  and wg.get("EnforceWorkGroupConfiguration") is True
                  and wg.get("BytesScannedCutoffPerQuery") == int(defaults["PublishBytesScannedCutoff"])
                  and wg.get("ResultConfiguration", {}).get("OutputLocation", "").endswith("-athena/publish/")
                  and wg["ResultConfiguration"].get("EncryptionConfiguration", {}).get("EncryptionOption") == "SSE_KMS",
                  f"workgroup {publish_wg}: engine v3, enforced, a bytes cutoff, encrypted results under publish/")
    env = c["lambda"].get_function(FunctionName=f"naerdata-{args.env}-publish")["Configuration"]["Environment"]["Variables"]
    declared = translated["Resources"]["PublishFunction"]["Properties"]["Environment"]["Variables"]
    if "NAERDATA_ATHENA_WORKGROUP" not in env:
        checks.gap("the publish function's variables naming the workgroup and the Glue database "
                   "(it drops a variable that refers to a resource it skipped)",
                   "the transformed template's variables are checked here instead")
        env = declared
    checks.expect(env.get("NAERDATA_ATHENA_WORKGROUP") in ({"Ref": "PublishWorkGroup"}, publish_wg)
                  and env.get("NAERDATA_GLUE_DATABASE") in ({"Ref": "GlueDatabase"}, f"naerdata_{args.env}"),
                  "the publish function is given the publication's workgroup and the Glue database")
    rights = [st for p in translated["Resources"]["PublishRole"]["Properties"]["Policies"]
              for st in p["PolicyDocument"]["Statement"]
              if any(a.startswith("athena:") for a in (st["Action"] if isinstance(st["Action"], list) else [st["Action"]]))]
    checks.expect(len(rights) == 1 and rights[0]["Resource"].get("Fn::Sub", "").endswith(":workgroup/${PublishWorkGroup}"),
                  "the publish role's Athena rights name the publication's workgroup alone")

    # The S3 -> SQS notification (applied here when the emulator skipped it).
    n = c["s3"].get_bucket_notification_configuration(Bucket=out["LandingBucket"])
    if not n.get("QueueConfigurations"):
        print("note: the emulator did not apply the landing notification; applying it", file=sys.stderr)
        c["s3"].put_bucket_notification_configuration(
            Bucket=out["LandingBucket"],
            NotificationConfiguration={"QueueConfigurations": [
                {"QueueArn": out["ReceiveQueueArn"], "Events": ["s3:ObjectCreated:*"]}]})

    print(json.dumps(out))
    return 1 if checks.failed else 0


if __name__ == "__main__":
    sys.exit(main())

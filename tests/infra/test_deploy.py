"""template.yaml, translated offline with aws-sam-translator, created as a CloudFormation stack
on the local endpoint (moto), then checked through the AWS APIs. Stack and resource names are
unique per run (Prefix parameter), so nothing collides with the `aula` table of the Rust tests.

moto's CloudFormation cannot create AWS::SecretsManager::Secret, AWS::S3::BucketPolicy and
AWS::ApiGatewayV2::Api/Stage (it skips them, and a Ref to the skipped secret drops the
AULA_SECRETS_ARN variable), and ignores TTL, PITR, table SSE and bucket lifecycle/public-access
settings; those are checked from the template text in test_template.py. It has no CloudFront
resources at all: the stack here is created WITHOUT the distribution, its origin access control,
cache and response-headers policies, the SPA function and the outputs naming them (conftest
for_moto); those are checked from the template text in test_cloudfront.py, and cfn-lint and
`sam validate --lint` check the full template."""

import ast
import json

import pytest

from conftest import (FUNCTIONS, REGION, app_parameters, client, code_bucket, delete_bucket,
                      delete_stack, for_moto, packaged, unique, wait)


@pytest.fixture(scope="module")
def stack(app):
    cfn, s3 = client("cloudformation"), client("s3")
    bucket = code_bucket()
    prefix = unique("t")
    name = unique("aulainfra-")
    template, dropped = for_moto(packaged(app, bucket))
    cfn.create_stack(StackName=name, TemplateBody=json.dumps(template),
                     Parameters=app_parameters(prefix), Capabilities=["CAPABILITY_NAMED_IAM"])
    status = wait(cfn, name)
    try:
        assert status["StackStatus"] == "CREATE_COMPLETE", status
        resources = {r["LogicalResourceId"]: r.get("PhysicalResourceId")
                     for r in cfn.list_stack_resources(StackName=name)["StackResourceSummaries"]}
        outputs = {o["OutputKey"]: o["OutputValue"]
                   for o in cfn.describe_stacks(StackName=name)["Stacks"][0].get("Outputs", [])}
        yield {"name": name, "prefix": prefix, "resources": resources, "template": template,
               "dropped": dropped, "outputs": outputs}
    finally:
        try:
            delete_stack(REGION, name, prefix)
        finally:
            delete_bucket(s3, bucket)
        leftover = [t for t in client("dynamodb").list_tables()["TableNames"] if t == prefix]
        assert not leftover, f"stack deletion left {leftover}"


def test_table_exists_with_keys_indexes_and_region_tag(stack):
    ddb = client("dynamodb")
    t = ddb.describe_table(TableName=stack["prefix"])["Table"]
    assert stack["resources"]["Table"] == stack["prefix"]
    assert [k["AttributeName"] for k in t["KeySchema"]] == ["pk", "sk"]
    assert {i["IndexName"] for i in t["GlobalSecondaryIndexes"]} == {"gsi1", "gsi2"}
    assert t["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    tags = ddb.list_tags_of_resource(ResourceArn=t["TableArn"])["Tags"]
    assert {"Key": "aula:data-location", "Value": "DE-Frankfurt"} in tags
    # TTL: moto's CloudFormation ignores TimeToLiveSpecification (DescribeTimeToLive would say
    # DISABLED here); test_template.py checks it in the template.


def test_buckets_exist_encrypted(stack):
    s3 = client("s3")
    for kind in ("exports", "log-archive", "web"):
        name = f"{stack['prefix']}-{kind}-123456789012-{REGION}"
        assert name in stack["resources"].values(), name
        s3.head_bucket(Bucket=name)
        enc = s3.get_bucket_encryption(Bucket=name)["ServerSideEncryptionConfiguration"]
        assert enc["Rules"][0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"


def test_lifecycle_rules_are_in_the_deployed_template(stack):
    # moto's CloudFormation drops LifecycleConfiguration (GetBucketLifecycleConfiguration says
    # NoSuchLifecycleConfiguration), so read the template the stack was created from.
    body = client("cloudformation").get_template(StackName=stack["name"])["TemplateBody"]
    body = body if isinstance(body, dict) else json.loads(body)
    days = {b: body["Resources"][b]["Properties"]["LifecycleConfiguration"]["Rules"][0]["ExpirationInDays"]
            for b in ("ExportBucket", "LogArchiveBucket")}
    assert days == {"ExportBucket": 1, "LogArchiveBucket": 30}


@pytest.mark.parametrize("fn", FUNCTIONS)
def test_function_exists_with_runtime_role_and_environment(stack, fn):
    p = stack["prefix"]
    cfg = client("lambda").get_function_configuration(FunctionName=f"{p}-{fn}")
    assert cfg["Runtime"] == "provided.al2023"
    # moto's CloudFormation ignores Architectures (it reports x86_64): read the template.
    props = stack["template"]["Resources"][f"{fn.capitalize()}Function"]["Properties"]
    assert props["Architectures"] == ["arm64"]
    assert cfg["Handler"] == "bootstrap"
    assert cfg["Role"].endswith(f":role/{p}-{fn}-{REGION}")
    # Lambda environment values are strings; moto keeps a mapped number as a number.
    env = {k: str(v) for k, v in cfg["Environment"]["Variables"].items()}
    if fn == "rooms":
        # join answers name the TURN server beside the placed node ({host}, {node} filled in
        # per answer); AULA_TURN_SECRET_ARN is dropped by moto like AULA_SECRETS_ARN below
        assert env.pop("AULA_TURN_URLS") == (
            "turn:{host}:3478?transport=udp,turn:{host}:3478?transport=tcp,"
            "turns:{node}-turn.media.aula.example.org:443?transport=tcp")
    assert env == {
        "AULA_PUBLIC_URL": "https://aula.example.org",
        "AULA_SELF_REGISTRATION": "false",
        "AULA_SUPERVISORY_AUTHORITY": "Landesbeauftragte für Datenschutz, Musterstadt",
        "AULA_DATA_PROTECTION_OFFICER": "Datenschutzbeauftragte des Ministeriums, dsb@ministerium.example",
        "AULA_TABLE": p,
        "AULA_EXPORT_BUCKET": f"{p}-exports-123456789012-{REGION}",
        "AULA_LOG_BUCKET": f"{p}-log-archive-123456789012-{REGION}",
        "AULA_PROCESSING_LOCATION": "AWS eu-central-1 (Frankfurt am Main, Germany)",
        "AULA_BACKUP_DAYS": "7",
        # the NodeCapacity parameter's default: the admins' forecast counts nodes with it
        "AULA_NODE_CAPACITY": "500",
        "RUST_LOG": "info",
        # AULA_SECRETS_ARN: {"Ref": "KeysSecret"} is dropped by moto (no Secrets Manager in its
        # CloudFormation); checked in the translated template below.
    }
    tpl_env = props["Environment"]["Variables"]
    assert tpl_env["AULA_SECRETS_ARN"] == {"Ref": "KeysSecret"}
    assert not any(k in env for k in ("AULA_SIGNING_KEY", "AULA_HASH_SECRET"))


@pytest.mark.parametrize("fn", FUNCTIONS)
def test_log_group_is_kept_30_days(stack, fn):
    name = f"/aws/lambda/{stack['prefix']}-{fn}"
    groups = client("logs").describe_log_groups(logGroupNamePrefix=name)["logGroups"]
    assert [(g["logGroupName"], g.get("retentionInDays")) for g in groups] == [(name, 30)]


@pytest.mark.parametrize("fn", FUNCTIONS)
def test_role_has_only_its_inline_policy(stack, fn):
    iam = client("iam")
    role = f"{stack['prefix']}-{fn}-{REGION}"
    assert iam.list_role_policies(RoleName=role)["PolicyNames"] == [f"aula-{fn}"]
    assert iam.list_attached_role_policies(RoleName=role)["AttachedPolicies"] == []
    doc = iam.get_role_policy(RoleName=role, PolicyName=f"aula-{fn}")["PolicyDocument"]
    if not isinstance(doc, dict):  # moto returns the document as a Python repr
        doc = ast.literal_eval(doc)
    table_arn = client("dynamodb").describe_table(TableName=stack["prefix"])["Table"]["TableArn"]
    # (the Keys statement loses its Resource in moto: the secret it refers to is skipped)
    resources = {r for s in doc["Statement"] for r in
                 (s["Resource"] if isinstance(s.get("Resource"), list) else [s.get("Resource")])}
    assert table_arn in resources and "*" not in resources


def test_public_key_parameter_is_a_plain_string(stack):
    p = client("ssm").get_parameter(Name=f"/{stack['prefix']}/signing-public-key")["Parameter"]
    assert p["Type"] == "String" and p["Value"].startswith("MCowBQYDK2VwAyEA")


def test_only_the_cloudfront_resources_were_left_out(stack, app):
    # What for_moto dropped is exactly the CloudFront part, so everything else was created here.
    assert stack["dropped"] == {"Distribution", "WebOriginAccessControl", "WebCachePolicy",
                                "SpaRewriteFunction", "SecurityHeadersPolicy",
                                "ApiOriginRequestPolicy"}
    assert set(app["Outputs"]) - set(stack["template"]["Outputs"]) == {
        "DistributionId", "DistributionDomainName"}


def test_web_bucket_output_names_the_frontend_bucket(stack):
    assert stack["outputs"]["WebBucketName"] == f"{stack['prefix']}-web-123456789012-{REGION}"


def test_the_fleet_planner_exists_with_its_role_and_runs_on_two_schedules(stack):
    p = stack["prefix"]
    cfg = client("lambda").get_function_configuration(FunctionName=f"{p}-planner")
    assert cfg["Role"].endswith(f":role/{p}-planner-{REGION}")
    env = {k: str(v) for k, v in cfg["Environment"]["Variables"].items()}
    assert (env["AULA_FLEET_GROUP"], env["AULA_FLEET_MIN_NODES"], env["AULA_FLEET_MAX_NODES"],
            env["AULA_NODE_CAPACITY"]) == (f"{p}-media-nodes", "2", "40", "500")
    rules = client("events").list_rule_names_by_target(TargetArn=cfg["FunctionArn"])["RuleNames"]
    crons = {client("events").describe_rule(Name=r)["ScheduleExpression"] for r in rules}
    assert crons == {"cron(0 17 * * ? *)", "cron(30 4 * * ? *)"}

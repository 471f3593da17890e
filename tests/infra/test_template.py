"""What the templates promise, read from the template text: the parts the local endpoint cannot
show (moto's CloudFormation ignores TimeToLiveSpecification, PointInTimeRecoverySpecification,
SSESpecification's CFN spelling, and an S3 bucket's lifecycle, public-access block, ownership
and versioning; it skips AWS::SecretsManager::Secret, AWS::S3::BucketPolicy and
AWS::ApiGatewayV2::* entirely) plus the shape of functions, logs and secrets."""

import json
import re

import pytest

from conftest import FUNCTIONS

BUCKETS = {"ExportBucket": 1, "LogArchiveBucket": 30, "WebBucket": None}
ENV = {"AULA_SECRETS_ARN", "AULA_PUBLIC_URL", "AULA_MEDIA_NODE_URL", "AULA_SELF_REGISTRATION",
       "AULA_SUPERVISORY_AUTHORITY", "AULA_DATA_PROTECTION_OFFICER",
       "AULA_TABLE", "AULA_EXPORT_BUCKET", "AULA_LOG_BUCKET", "RUST_LOG"}


def res(t, name):
    return t["Resources"][name]["Properties"]


def of_type(t, typ):
    return {k: v for k, v in t["Resources"].items() if v["Type"] == typ}


def test_table_ttl_is_on_expires_at(app):
    # moto's CloudFormation ignores TimeToLiveSpecification, so TTL is checked here, not via
    # DescribeTimeToLive on the deployed stack.
    assert res(app, "Table")["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}


def test_table_has_the_key_design_pitr_and_encryption(app):
    t = res(app, "Table")
    assert t["BillingMode"] == "PAY_PER_REQUEST"
    assert t["KeySchema"] == [{"AttributeName": "pk", "KeyType": "HASH"},
                              {"AttributeName": "sk", "KeyType": "RANGE"}]
    idx = {i["IndexName"]: i for i in t["GlobalSecondaryIndexes"]}
    assert set(idx) == {"gsi1", "gsi2"}
    for n, i in idx.items():
        assert [k["AttributeName"] for k in i["KeySchema"]] == [f"{n}pk", f"{n}sk"]
        assert i["Projection"] == {"ProjectionType": "ALL"}
    assert t["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert t["SSESpecification"] == {"SSEEnabled": True}
    assert t["DeletionProtectionEnabled"] == {"Ref": "TableDeletionProtection"}
    assert app["Parameters"]["TableDeletionProtection"]["Default"] == "true"


def test_table_matches_the_local_resource_definition(app):
    # localstack/resources.json is what the Rust tests run against: same keys and indexes.
    local = json.loads((__import__("conftest").REPO / "localstack/resources.json").read_text())
    create = local["tables"][0]["create"]
    t = res(app, "Table")
    assert t["KeySchema"] == create["KeySchema"]
    assert sorted(t["AttributeDefinitions"], key=str) == sorted(create["AttributeDefinitions"], key=str)
    assert t["GlobalSecondaryIndexes"] == create["GlobalSecondaryIndexes"]
    assert local["tables"][0]["ttl_attribute"] == t["TimeToLiveSpecification"]["AttributeName"]


@pytest.mark.parametrize("bucket", BUCKETS)
def test_every_bucket_is_encrypted_private_and_tls_only(app, bucket):
    b = res(app, bucket)
    assert b["BucketEncryption"]["ServerSideEncryptionConfiguration"][0][
        "ServerSideEncryptionByDefault"]["SSEAlgorithm"] in ("AES256", "aws:kms")
    assert b["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True, "BlockPublicPolicy": True,
        "IgnorePublicAcls": True, "RestrictPublicBuckets": True}
    assert b["OwnershipControls"]["Rules"] == [{"ObjectOwnership": "BucketOwnerEnforced"}]
    policies = [p for p in of_type(app, "AWS::S3::BucketPolicy").values()
                if p["Properties"]["Bucket"] == {"Ref": bucket}]
    assert len(policies) == 1, f"{bucket} needs exactly one bucket policy"
    deny = [s for s in policies[0]["Properties"]["PolicyDocument"]["Statement"]
            if s["Effect"] == "Deny" and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}]
    assert deny and deny[0]["Action"] == "s3:*" and deny[0]["Principal"] == "*"
    assert {"Fn::GetAtt": [bucket, "Arn"]} in deny[0]["Resource"]
    assert {"Fn::Sub": "${%s.Arn}/*" % bucket} in deny[0]["Resource"]


@pytest.mark.parametrize("bucket,days", [(b, d) for b, d in BUCKETS.items() if d])
def test_data_buckets_expire_objects(app, bucket, days):
    # moto's CloudFormation drops LifecycleConfiguration, so the rule is checked here.
    rules = res(app, bucket)["LifecycleConfiguration"]["Rules"]
    assert any(r["Status"] == "Enabled" and r["ExpirationInDays"] == days and "Prefix" not in r
               and "Filter" not in r for r in rules), rules
    assert "VersioningConfiguration" not in res(app, bucket), "versions would outlive expiry/erasure"


@pytest.mark.parametrize("fn", FUNCTIONS)
def test_function_shape(app, fn):
    g = app["Globals"]["Function"]
    f = app["Resources"][f"{fn.capitalize()}Function"]
    assert f["Type"] == "AWS::Serverless::Function"
    assert g["Runtime"] == "provided.al2023" and g["Architectures"] == ["arm64"]
    assert g["Handler"] == "bootstrap"
    assert f["Metadata"] == {"BuildMethod": "rust-cargolambda", "BuildProperties": {"Binary": f"aula-{fn}"}}
    assert f["Properties"]["Role"] == {"Fn::GetAtt": [f"{fn.capitalize()}Role", "Arn"]}
    assert set(g["Environment"]["Variables"]) == ENV
    assert "Environment" not in f["Properties"]


@pytest.mark.parametrize("fn", FUNCTIONS)
def test_every_function_logs_to_a_group_kept_30_days(app, fn):
    group = f"{fn.capitalize()}LogGroup"
    f = app["Resources"][f"{fn.capitalize()}Function"]["Properties"]
    assert f["LoggingConfig"] == {"LogGroup": {"Ref": group}}
    g = res(app, group)
    assert g["RetentionInDays"] == 30
    assert g["LogGroupName"] == {"Fn::Sub": "/aws/lambda/${Prefix}-%s" % fn}
    assert f["FunctionName"] == {"Fn::Sub": "${Prefix}-%s" % fn}


def test_the_api_routes_every_endpoint_to_its_function(translated):
    body = of_type(translated, "AWS::ApiGatewayV2::Api")
    (api,) = body.values()
    paths = api["Properties"]["Body"]["paths"]
    routes = {(m.upper(), p) for p, ms in paths.items() for m in ms}
    for route in [("POST", "/api/auth/login"), ("GET", "/api/me"), ("PATCH", "/api/me"),
                  ("DELETE", "/api/me"), ("POST", "/api/join/{token}"),
                  ("DELETE", "/api/rooms/{room}/chat/{message}"),
                  ("POST", "/api/rooms/{room}/guests/{guest}/admit"),
                  ("POST", "/api/admin/moderators/{id}/{action}"), ("GET", "/api/admin/audit")]:
        assert route in routes, route
    assert len(routes) == 7 + 12 + 3 + 10


def test_no_secret_is_in_the_template_or_repo_config(app):
    text = (__import__("conftest").APP_TEMPLATE).read_text()
    assert "AULA_SIGNING_KEY" not in text and "AULA_HASH_SECRET" not in text
    assert "PRIVATE KEY" not in text
    # a base64 Ed25519 PKCS#8 key starts with MC4CAQAwBQYDK2Vw
    assert "MC4CAQAw" not in text
    s = res(app, "KeysSecret")
    assert "SecretString" not in s, "the secret's value must not be in the template"
    assert s["GenerateSecretString"]["GenerateStringKey"] == "hash_secret"
    assert json.loads(s["GenerateSecretString"]["SecretStringTemplate"]) == {"signing_key": "UNSET"}
    assert app["Globals"]["Function"]["Environment"]["Variables"]["AULA_SECRETS_ARN"] == {"Ref": "KeysSecret"}


def test_media_nodes_get_only_the_public_key(app, infra):
    p = res(app, "SigningPublicKeyParameter")
    assert p["Type"] == "String" and p["Value"] == {"Ref": "SigningPublicKey"}
    node = json.dumps(infra)
    assert "secretsmanager" not in node and "KeysSecret" not in node
    user_data = res(infra, "NodeLaunchTemplate")["LaunchTemplateData"]["UserData"]["Fn::Base64"]["Fn::Sub"]
    assert "ssm get-parameter" in user_data and "/${Prefix}/signing-public-key" in user_data


def test_media_node_fleet(infra):
    lt = res(infra, "NodeLaunchTemplate")["LaunchTemplateData"]
    assert lt["MetadataOptions"]["HttpTokens"] == "required"
    assert all(b["Ebs"]["Encrypted"] for b in lt["BlockDeviceMappings"])
    ud = lt["UserData"]["Fn::Base64"]["Fn::Sub"]
    assert 's3://${ArtifactBucket}/${ArtifactKey}' in ud
    assert "systemctl enable --now aula-media-node.service" in ud
    assert re.search(r"^ExecStart=/usr/local/bin/aula-media-node$", ud, re.M)

    ingress = {(r["IpProtocol"], r["FromPort"] if isinstance(r["FromPort"], int) else r["FromPort"]["Ref"])
               for r in res(infra, "NodeSecurityGroup")["SecurityGroupIngress"]}
    assert {("tcp", 443), ("udp", "MediaUdpPort"), ("udp", 3478), ("tcp", 3478), ("tcp", 5349)} <= ingress
    assert infra["Parameters"]["MediaUdpPort"]["Default"] == 40000

    asg = res(infra, "NodeGroup")
    hook = asg["LifecycleHookSpecificationList"][0]
    assert hook["LifecycleTransition"] == "autoscaling:EC2_INSTANCE_TERMINATING"
    assert "complete-lifecycle-action" in ud and "target-lifecycle-state" in ud
    assert asg["HealthCheckType"] == "EC2" and "set-instance-health" in ud

    tt = res(infra, "ParticipantsTargetTracking")
    m = tt["TargetTrackingConfiguration"]["CustomizedMetricSpecification"]
    assert (tt["PolicyType"], m["Namespace"], m["MetricName"]) == ("TargetTrackingScaling", "Aula/MediaNode", "Participants")

    up = res(infra, "ExamMorningScaleUp")
    assert (up["Recurrence"], up["TimeZone"]) == ("30 6 * * 1-5", "Europe/Berlin")
    assert up["MinSize"] == {"Ref": "ExamMorningMinNodes"}

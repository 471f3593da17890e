"""Shared fixtures for the infrastructure tests: the templates (short-form tags such as !Ref are
read as their long form, {"Ref": ...}), the SAM template translated offline, and clients for the
local AWS endpoint (moto, started by scripts/test)."""

import io
import json
import os
import re
import time
import uuid
import zipfile
from pathlib import Path
from urllib.parse import urlparse

import boto3
import pytest
from samtranslator.parser.parser import Parser
from samtranslator.translator.translator import Translator
from samtranslator.yaml_helper import yaml_parse

REPO = Path(__file__).resolve().parents[2]
APP_TEMPLATE = REPO / "template.yaml"
INFRA_TEMPLATES = sorted((REPO / "infra").glob("*.yaml"))
REGION = "eu-central-1"
FUNCTIONS = ("auth", "rooms", "chat", "privacy")


def load(path: Path) -> dict:
    return yaml_parse(path.read_text())


def translate(template: dict, region: str = REGION) -> dict:
    """SAM -> plain CloudFormation, offline (no managed policies are looked up: Aula uses none)."""
    session = boto3.session.Session(region_name=region)
    return Translator(None, Parser(), boto_session=session).translate(
        json.loads(json.dumps(template)),
        parameter_values={},
        get_managed_policy_map=lambda: {},
    )


@pytest.fixture(scope="session")
def app() -> dict:
    return load(APP_TEMPLATE)


@pytest.fixture(scope="session")
def infra() -> dict:
    return load(REPO / "infra" / "media-nodes.yaml")


@pytest.fixture(scope="session")
def translated(app) -> dict:
    return packaged(app, "placeholder-bucket")


def endpoint() -> str:
    url = os.environ.get("AWS_ENDPOINT_URL")
    if not url:
        pytest.fail(
            "AWS_ENDPOINT_URL is not set: start the local endpoint first "
            '(eval "$(localstack/start.sh)"), or run ./scripts/test'
        )
    host = urlparse(url).hostname
    if host not in ("127.0.0.1", "localhost"):
        pytest.fail(f"refusing to create stacks on a non-local endpoint: {url}")
    return url


def client(service: str, region: str = REGION):
    return boto3.client(
        service,
        endpoint_url=endpoint(),
        region_name=region,
        aws_access_key_id=os.environ.get("AWS_ACCESS_KEY_ID", "test"),
        aws_secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY", "test"),
    )


def unique(prefix: str) -> str:
    """A run-unique name, so stacks never collide with the `aula` table the Rust tests use."""
    return f"{prefix}{uuid.uuid4().hex[:8]}"


def code_bucket(region: str = REGION) -> str:
    """What `sam package` would do: a bucket with the (here: dummy) function zip."""
    s3 = client("s3", region)
    name = unique("aulainfra-code-")
    if region == "us-east-1":
        s3.create_bucket(Bucket=name)
    else:
        s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": region})
    body = io.BytesIO()
    with zipfile.ZipFile(body, "w") as z:
        z.writestr("bootstrap", "#!/bin/sh\nexit 1\n")
    s3.put_object(Bucket=name, Key="code.zip", Body=body.getvalue())
    return name


def packaged(template: dict, bucket: str, region: str = REGION) -> dict:
    """The SAM template with CodeUri pointing at S3 (as after `sam package`), translated."""
    t = json.loads(json.dumps(template))
    t["Globals"]["Function"]["CodeUri"] = f"s3://{bucket}/code.zip"
    return translate(t, region)


# moto's CloudFormation has no AWS::CloudFront::* resources (moto 5.2: no CloudFormation model
# for any of them). It would skip them silently, but an output with !GetAtt on a skipped resource
# crashes its create_stack (HTTP 500). So the stack created on moto is the template without them
# and without the outputs that name them; cfn-lint and `sam validate --lint` check the full
# template, and test_cloudfront.py checks the CloudFront part from the template text.
MOTO_UNSUPPORTED = ("AWS::CloudFront::",)
# resources moto skips anyway (they may still name a dropped resource, e.g. the web bucket's
# policy names the distribution in its AWS:SourceArn condition)
MOTO_SKIPPED = {"AWS::S3::BucketPolicy", "AWS::SecretsManager::Secret"}


def names(node, targets: set[str]) -> bool:
    """Whether `node` (a part of a template) refers to one of the logical ids in `targets`."""
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "Ref" and v in targets:
                return True
            if k == "Fn::GetAtt" and (v[0] if isinstance(v, list) else v.split(".")[0]) in targets:
                return True
            if k == "Fn::Sub":
                text = v[0] if isinstance(v, list) else v
                if any(re.search(r"\$\{%s[.}]" % re.escape(t), text) for t in targets):
                    return True
            if names(v, targets):
                return True
        return False
    if isinstance(node, list):
        return any(names(x, targets) for x in node)
    return False


def for_moto(template: dict) -> tuple[dict, set[str]]:
    """The (translated) template without what moto's CloudFormation cannot create; returns it
    and the logical ids dropped."""
    t = json.loads(json.dumps(template))
    dropped = {k for k, r in t["Resources"].items() if r["Type"].startswith(MOTO_UNSUPPORTED)}
    for k in dropped:
        del t["Resources"][k]
    t["Outputs"] = {k: o for k, o in t.get("Outputs", {}).items() if not names(o, dropped)}
    left = {k: r["Type"] for k, r in t["Resources"].items() if names(r, dropped)}
    assert set(left.values()) <= MOTO_SKIPPED, f"still refer to dropped CloudFront resources: {left}"
    return t, dropped


def app_parameters(prefix: str) -> list[dict]:
    values = {
        "Prefix": prefix,
        "PublicUrl": "https://aula.example.org",
        "PublicDomainName": "aula.example.org",
        "CertificateArn": "arn:aws:acm:us-east-1:123456789012:certificate/0f6b5c1e-2d3a-4b7c-9e8f-1a2b3c4d5e6f",
        "ApiCertificateArn": "arn:aws:acm:eu-central-1:123456789012:certificate/3a9d2c4e-5b6f-4a7c-8d9e-0f1a2b3c4d5e",
        "MediaDomain": "media.aula.example.org",
        "SupervisoryAuthority": "Landesbeauftragte für Datenschutz, Musterstadt",
        "DataProtectionOfficer": "Datenschutzbeauftragte des Ministeriums, dsb@ministerium.example",
        "SigningPublicKey": "MCowBQYDK2VwAyEA" + "A" * 44,
        "TableDeletionProtection": "false",
    }
    return [{"ParameterKey": k, "ParameterValue": v} for k, v in values.items()]


def wait(cfn, name: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        try:
            stack = cfn.describe_stacks(StackName=name)["Stacks"][0]
        except cfn.exceptions.ClientError as e:
            if "does not exist" in str(e):  # moto forgets deleted stacks
                return {"StackName": name, "StackStatus": "DELETE_COMPLETE"}
            raise
        if not stack["StackStatus"].endswith("_IN_PROGRESS") or time.monotonic() > deadline:
            return stack
        time.sleep(0.3)


def delete_stack(region: str, name: str, prefix: str) -> None:
    """As in infra/README.md "Delete everything": switch the table's deletion protection off,
    then delete the stack. (moto also turns the parameter value "false" into protection ON: it
    does not convert CloudFormation's string parameters to booleans.)"""
    ddb, cfn = client("dynamodb", region), client("cloudformation", region)
    if prefix in ddb.list_tables()["TableNames"]:
        ddb.update_table(TableName=prefix, DeletionProtectionEnabled=False)
    cfn.delete_stack(StackName=name)
    wait(cfn, name)


def delete_bucket(s3, name: str) -> None:
    for obj in s3.list_objects_v2(Bucket=name).get("Contents", []):
        s3.delete_object(Bucket=name, Key=obj["Key"])
    s3.delete_bucket(Bucket=name)

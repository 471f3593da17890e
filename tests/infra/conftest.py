"""Shared fixtures for the infrastructure tests: the templates (short-form tags such as !Ref are
read as their long form, {"Ref": ...}), the SAM template translated offline, and clients for the
local AWS endpoint (moto, started by scripts/test)."""

import io
import json
import os
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


def app_parameters(prefix: str) -> list[dict]:
    values = {
        "Prefix": prefix,
        "PublicUrl": "https://aula.example.org",
        "MediaNodeUrl": "wss://media.aula.example.org/ws",
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

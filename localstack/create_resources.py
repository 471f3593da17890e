#!/usr/bin/env python3
"""Create Aula's AWS resources (DynamoDB table(s), S3 buckets) on a local AWS endpoint.

The single definition is resources.json next to this file. Runs in two ways:

* on the host, against moto server: `python create_resources.py` (start.sh does this);
* as a LocalStack init hook in /etc/localstack/init/ready.d/ (see docker-compose.yml).
  LocalStack runs hooks with `exec(source, {})` inside its own process: there is no
  `__file__`, `__name__` is "builtins", and sys.exit() would hit LocalStack itself. So the
  resources file is found via $AULA_RESOURCES_FILE there, and errors are raised, not exited.

Idempotent: existing resources are kept (missing GSIs, TTL, bucket settings are applied).
`--print-env` prints the shell `export` lines for clients (endpoint, dummy credentials,
region, AULA_TABLE / AULA_*_BUCKET) instead of creating anything.
Only the standard library and boto3 are used. Endpoint: $AWS_ENDPOINT_URL
(default http://127.0.0.1:4566). Refuses to talk to real AWS endpoints.
"""

import json
import os
import sys
import time
from urllib.parse import urlparse

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

DEFAULT_ENDPOINT = "http://127.0.0.1:4566"
# Where docker-compose.yml mounts the definition when running as a LocalStack hook.
CONTAINER_RESOURCES_FILE = "/etc/localstack/aula/resources.json"
WAIT_SECONDS = 120


def _resources_path():
    explicit = os.environ.get("AULA_RESOURCES_FILE")
    if explicit:
        return explicit
    script = globals().get("__file__")
    if script:
        return os.path.join(os.path.dirname(os.path.abspath(script)), "resources.json")
    return CONTAINER_RESOURCES_FILE


def _endpoint():
    endpoint = os.environ.get("AWS_ENDPOINT_URL") or DEFAULT_ENDPOINT
    host = (urlparse(endpoint).hostname or "").lower()
    if not host or host.endswith((".amazonaws.com", ".amazonaws.com.cn", ".api.aws")):
        raise RuntimeError(
            f"refusing endpoint {endpoint!r}: this script only provisions local emulators"
        )
    return endpoint


def _clients(endpoint, region):
    config = Config(
        region_name=region,
        connect_timeout=5,
        read_timeout=60,
        retries={"max_attempts": 5, "mode": "standard"},
        s3={"addressing_style": "path"},
    )
    session = boto3.session.Session(
        aws_access_key_id=os.environ.get("AWS_ACCESS_KEY_ID") or "test",
        aws_secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY") or "test",
        region_name=region,
    )
    ddb = session.client("dynamodb", endpoint_url=endpoint, config=config)
    s3 = session.client("s3", endpoint_url=endpoint, config=config)
    return ddb, s3


def _error_code(err):
    return err.response.get("Error", {}).get("Code", "")


def _wait_table_active(ddb, name):
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        table = ddb.describe_table(TableName=name)["Table"]
        gsis = table.get("GlobalSecondaryIndexes", [])
        if table.get("TableStatus") == "ACTIVE" and all(
            g.get("IndexStatus", "ACTIVE") == "ACTIVE" for g in gsis
        ):
            return table
        if time.monotonic() > deadline:
            raise RuntimeError(f"table {name}: not ACTIVE after {WAIT_SECONDS}s")
        time.sleep(0.5)


def _key_schema(schema):
    return [(k["AttributeName"], k["KeyType"]) for k in schema]


def ensure_table(ddb, spec):
    create = spec["create"]
    name = create["TableName"]
    notes = []
    try:
        ddb.describe_table(TableName=name)
        state = "exists"
    except ClientError as err:
        if _error_code(err) != "ResourceNotFoundException":
            raise
        try:
            ddb.create_table(**create)
            state = "created"
        except ClientError as err2:  # created concurrently by someone else
            if _error_code(err2) != "ResourceInUseException":
                raise
            state = "exists"
    table = _wait_table_active(ddb, name)

    if _key_schema(table["KeySchema"]) != _key_schema(create["KeySchema"]):
        raise RuntimeError(
            f"table {name}: existing key schema {_key_schema(table['KeySchema'])} differs "
            "from resources.json; reset the local endpoint"
        )

    existing = {g["IndexName"]: g for g in table.get("GlobalSecondaryIndexes", [])}
    attr_defs = {d["AttributeName"]: d for d in create.get("AttributeDefinitions", [])}
    for gsi in create.get("GlobalSecondaryIndexes", []):
        have = existing.get(gsi["IndexName"])
        if have is not None:
            if _key_schema(have["KeySchema"]) != _key_schema(gsi["KeySchema"]):
                raise RuntimeError(
                    f"table {name}: index {gsi['IndexName']} has a different key schema; "
                    "reset the local endpoint"
                )
            continue
        ddb.update_table(
            TableName=name,
            AttributeDefinitions=[attr_defs[k["AttributeName"]] for k in gsi["KeySchema"]],
            GlobalSecondaryIndexUpdates=[{"Create": gsi}],
        )
        _wait_table_active(ddb, name)
        notes.append(f"added index {gsi['IndexName']}")

    ttl_attr = spec.get("ttl_attribute")
    if ttl_attr:
        ttl = ddb.describe_time_to_live(TableName=name).get("TimeToLiveDescription", {})
        if ttl.get("TimeToLiveStatus") in ("ENABLED", "ENABLING"):
            if ttl.get("AttributeName") != ttl_attr:
                raise RuntimeError(
                    f"table {name}: TTL is on {ttl.get('AttributeName')!r}, "
                    f"resources.json wants {ttl_attr!r}; reset the local endpoint"
                )
        else:
            ddb.update_time_to_live(
                TableName=name,
                TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl_attr},
            )
            notes.append("TTL enabled")

    table = ddb.describe_table(TableName=name)["Table"]
    gsi_names = ",".join(sorted(g["IndexName"] for g in table.get("GlobalSecondaryIndexes", [])))
    sse = table.get("SSEDescription", {}).get("Status", "DEFAULT")
    extra = f" ({'; '.join(notes)})" if notes else ""
    print(
        f"table  {name}: {state}{extra}; {table['TableStatus']}; gsi={gsi_names or '-'}; "
        f"ttl={ttl_attr or '-'}; sse={sse}",
        flush=True,
    )


def ensure_bucket(s3, spec, region):
    name = spec["name"]
    try:
        s3.head_bucket(Bucket=name)
        state = "exists"
    except ClientError as err:
        if _error_code(err) not in ("404", "NoSuchBucket", "NotFound"):
            raise
        kwargs = {"Bucket": name}
        if region != "us-east-1":  # us-east-1 must not be given as LocationConstraint
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
        try:
            s3.create_bucket(**kwargs)
            state = "created"
        except ClientError as err2:
            if _error_code(err2) != "BucketAlreadyOwnedByYou":
                raise
            state = "exists"

    # The following PUTs replace the whole configuration, so re-running converges.
    settings = []
    if spec.get("block_public_access", True):
        s3.put_public_access_block(
            Bucket=name,
            PublicAccessBlockConfiguration={
                "BlockPublicAcls": True,
                "IgnorePublicAcls": True,
                "BlockPublicPolicy": True,
                "RestrictPublicBuckets": True,
            },
        )
        settings.append("public access blocked")

    algorithm = spec.get("encryption")
    if algorithm:
        s3.put_bucket_encryption(
            Bucket=name,
            ServerSideEncryptionConfiguration={
                "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": algorithm}}]
            },
        )
        settings.append(f"sse={algorithm}")

    days = spec.get("expiration_days")
    if days:
        rule = {
            "ID": f"expire-after-{days}-days",
            "Filter": {"Prefix": ""},
            "Status": "Enabled",
            "Expiration": {"Days": int(days)},
        }
        abort_days = spec.get("abort_incomplete_multipart_days")
        if abort_days:
            rule["AbortIncompleteMultipartUpload"] = {"DaysAfterInitiation": int(abort_days)}
        s3.put_bucket_lifecycle_configuration(
            Bucket=name, LifecycleConfiguration={"Rules": [rule]}
        )
        settings.append(f"expire after {days}d")

    print(f"bucket {name}: {state}; {'; '.join(settings) or 'no settings'}", flush=True)


def create_all():
    path = _resources_path()
    with open(path, encoding="utf-8") as fh:
        resources = json.load(fh)
    region = resources.get("region", "eu-central-1")
    endpoint = _endpoint()
    ddb, s3 = _clients(endpoint, region)
    print(f"endpoint {endpoint} region {region} (definition {path})", flush=True)
    for table in resources.get("tables", []):
        ensure_table(ddb, table)
    for bucket in resources.get("buckets", []):
        ensure_bucket(s3, bucket, region)


def print_env():
    """Print the shell export lines for clients: endpoint, dummy credentials, region, and the
    resource names (the 'env' keys in resources.json)."""
    with open(_resources_path(), encoding="utf-8") as fh:
        resources = json.load(fh)
    region = resources.get("region", "eu-central-1")
    # AWS_REGION is read by the Rust SDK, AWS_DEFAULT_REGION by boto3/the AWS CLI.
    print(
        f"export AWS_ENDPOINT_URL={_endpoint()} AWS_ACCESS_KEY_ID=test "
        f"AWS_SECRET_ACCESS_KEY=test AWS_REGION={region} AWS_DEFAULT_REGION={region}"
    )
    pairs = [(t["env"], t["create"]["TableName"]) for t in resources.get("tables", []) if t.get("env")]
    pairs += [(b["env"], b["name"]) for b in resources.get("buckets", []) if b.get("env")]
    if pairs:
        print("export " + " ".join(f"{k}={v}" for k, v in pairs))


def main():
    try:
        if sys.argv[1:] == ["--print-env"]:
            print_env()
            return 0
        if sys.argv[1:]:
            print("usage: create_resources.py [--print-env]", file=sys.stderr)
            return 2
        create_all()
    except Exception as exc:  # noqa: BLE001 - report any failure as one clear line
        print(f"create_resources: error: {exc}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
elif __name__ == "builtins":
    # LocalStack init hook (exec'd with empty globals): raise on failure so LocalStack marks
    # the script ERROR (visible in /_localstack/init/ready), never sys.exit().
    create_all()

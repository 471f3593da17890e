"""Least privilege, read from the templates: each function's role allows exactly the DynamoDB
partitions (dynamodb:LeadingKeys prefixes) and actions it needs, nothing with `*`, no Scan; the
media nodes may write only their own registry item and meeting-shaped items in room partitions
(PutItem, attribute-limited, nothing returned). Sessions live in their own partition
(SESSION#<sid>, gsi1 SESSIONS#<moderator>), so a session check never needs the moderator
partition. Where the table's key design still forces a wider grant (rooms reading the owner's
PROFILE for the display name) the expectation says so; see infra/README.md."""

import json
import re

import pytest

from conftest import FUNCTIONS

TABLE = {"Fn::GetAtt": ["Table", "Arn"]}
GSI1 = {"Fn::Sub": "${Table.Arn}/index/gsi1"}
GSI2 = {"Fn::Sub": "${Table.Arn}/index/gsi2"}
RW = {"GetItem", "Query", "PutItem", "UpdateItem", "DeleteItem"}

# function -> {(resource, leading keys): actions}
EXPECTED = {
    "auth": {
        ("table", ("EMAIL#*", "MOD#*", "RATE#*")): RW | {"BatchWriteItem"},
        # login creates, check, renewal, logout deletes
        ("table", ("SESSION#*",)): {"GetItem", "PutItem", "DeleteItem"},
        ("table", ("ROOM#*",)): {"GetItem", "Query", "PutItem", "UpdateItem"},
        ("gsi2", ("INVITE#*",)): {"Query"},
        ("table", ("ACCESSLOG#*",)): {"PutItem"},
    },
    "rooms": {
        ("table", ("ROOM#*",)): RW | {"BatchWriteItem"},
        ("table", ("SESSION#*",)): {"GetItem", "PutItem"},
        # key-design limit: the owner's display name is read from the PROFILE item
        ("table", ("MOD#*",)): {"GetItem"},
        ("gsi1", ("NODES", "OWNER#*", "PLACED#*", "PLANS#*")): {"Query"},
        ("table", ("ACCESSLOG#*",)): {"PutItem"},
        # seats: the node item's `reserved`, in the placement's transaction
        ("table", ("NODE#*",)): {"UpdateItem"},
    },
    "chat": {
        ("table", ("ROOM#*",)): RW,
        ("table", ("SESSION#*",)): {"GetItem", "PutItem"},
        ("table", ("ACCESSLOG#*",)): {"PutItem"},
    },
    "privacy": {
        ("table", ("EMAIL#*", "MOD#*", "ROOM#*")): RW | {"BatchWriteItem"},
        # restriction and erasure log the moderator out everywhere
        ("table", ("SESSION#*",)): {"GetItem", "PutItem", "DeleteItem", "BatchWriteItem"},
        ("table", ("AUDIT#*",)): {"PutItem", "Query"},
        ("table", ("ACCESSLOG#*",)): {"PutItem", "Query"},
        ("gsi1", ("MODERATORS", "OWNER#*", "PLANS#*", "SESSIONS#*")): {"Query"},
        # the admins' forecast reads scheduled meetings per day
        ("gsi2", ("PLANDAY#*",)): {"Query"},
    },
}
RESOURCES = {"table": TABLE, "gsi1": GSI1, "gsi2": GSI2}


def listify(x):
    return x if isinstance(x, list) else [x]


def statements(template, role):
    docs = template["Resources"][role]["Properties"]["Policies"]
    return [s for d in docs for s in d["PolicyDocument"]["Statement"]]


def all_roles(template):
    return {k: v for k, v in template["Resources"].items() if v["Type"] == "AWS::IAM::Role"}


def role_of(fn):
    return f"{fn.capitalize()}Role"


@pytest.mark.parametrize("template_name", ["app", "infra"])
def test_no_wildcard_actions_no_deny_gaps_no_managed_policies(request, template_name):
    t = request.getfixturevalue(template_name)
    for name, role in all_roles(t).items():
        assert "ManagedPolicyArns" not in role["Properties"], f"{name}: managed policies are opaque"
        for s in statements(t, name):
            assert s["Effect"] == "Allow", f"{name}: {s}"
            assert "NotAction" not in s and "NotResource" not in s, f"{name}: {s}"
            for a in listify(s["Action"]):
                svc, _, op = a.partition(":")
                assert "*" not in op and a != "*", f"{name} allows {a}"
            if s["Resource"] == "*":
                # only actions without resource-level permissions, and only with a condition
                assert listify(s["Action"]) == ["cloudwatch:PutMetricData"], f"{name}: {s}"
                assert s["Condition"] == {"StringEquals": {"cloudwatch:namespace": "Aula/MediaNode"}}


def test_every_function_has_its_own_role_and_sam_adds_none(app, translated):
    for fn in FUNCTIONS:
        assert app["Resources"][f"{fn.capitalize()}Function"]["Properties"]["Role"] == {
            "Fn::GetAtt": [role_of(fn), "Arn"]}
    assert set(all_roles(translated)) == {role_of(fn) for fn in FUNCTIONS} | {"PlannerRole"}
    assert not [r for r in translated["Resources"].values() if r["Type"] == "AWS::IAM::Policy"]


@pytest.mark.parametrize("fn", FUNCTIONS)
def test_dynamodb_access_is_exactly_what_the_function_needs(app, fn):
    found = {}
    for s in statements(app, role_of(fn)):
        actions = listify(s["Action"])
        if not any(a.startswith("dynamodb:") for a in actions):
            continue
        assert all(a.startswith("dynamodb:") for a in actions), s
        assert "dynamodb:Scan" not in actions, "Scan has no leading keys: it would read everything"
        kind = next((k for k, v in RESOURCES.items() if s["Resource"] == v), None)
        assert kind, f"{fn}: DynamoDB statement on {s['Resource']} (only the table and its indexes)"
        cond = s["Condition"]
        assert set(cond) == {"ForAllValues:StringLike", "Null"}, f"{fn}: {cond}"
        assert cond["Null"] == {"dynamodb:LeadingKeys": "false"}
        keys = tuple(sorted(cond["ForAllValues:StringLike"]["dynamodb:LeadingKeys"]))
        assert (kind, keys) not in found, f"{fn}: duplicate statement for {kind} {keys}"
        found[(kind, keys)] = {a.removeprefix("dynamodb:") for a in actions}
    assert found == EXPECTED[fn]


@pytest.mark.parametrize("fn", FUNCTIONS)
def test_logs_and_secret_are_scoped_to_the_function(app, fn):
    other = {s["Sid"]: s for s in statements(app, role_of(fn))
             if not any(a.startswith("dynamodb:") for a in listify(s["Action"]))}
    assert other["Logs"]["Resource"] == {"Fn::GetAtt": [f"{fn.capitalize()}LogGroup", "Arn"]}
    assert set(other["Logs"]["Action"]) == {"logs:CreateLogStream", "logs:PutLogEvents"}
    assert other["Keys"]["Action"] == "secretsmanager:GetSecretValue"
    assert other["Keys"]["Resource"] == {"Ref": "KeysSecret"}
    s3 = {k for k, s in other.items() if any(a.startswith("s3:") for a in listify(s["Action"]))}
    if fn == "auth":
        # only login needs the client address, so only auth reads the CloudFront origin secret
        assert other["OriginSecret"]["Action"] == "secretsmanager:GetSecretValue"
        assert other["OriginSecret"]["Resource"] == {"Ref": "OriginSecret"}
        assert set(other) - s3 == {"Logs", "Keys", "OriginSecret"}
    elif fn == "rooms":
        # join answers carry TURN credentials: HMACs under the TURN secret
        assert other["TurnSecret"]["Action"] == "secretsmanager:GetSecretValue"
        assert other["TurnSecret"]["Resource"] == {"Ref": "TurnSecret"}
        assert set(other) - s3 == {"Logs", "Keys", "TurnSecret"}
    else:
        assert set(other) - s3 == {"Logs", "Keys"}
    if fn == "privacy":
        assert other["ExportObjects"]["Resource"] == {"Fn::Sub": "${ExportBucket.Arn}/exports/*"}
        assert set(other["ExportObjects"]["Action"]) == {"s3:PutObject", "s3:GetObject", "s3:DeleteObject"}
        assert other["ExportListing"]["Condition"] == {"StringLike": {"s3:prefix": ["exports/*"]}}
    else:
        assert not s3, f"{fn} needs no S3 access"


def test_chat_cannot_read_moderator_accounts(app):
    """The issue's example: chat checks a session cookie from the session item alone, so it
    holds no grant on moderator profiles (MOD#), e-mail claims (EMAIL#) or anything else."""
    text = json.dumps(statements(app, "ChatRole"))
    for prefix in ("MOD#", "EMAIL#", "RATE#", "AUDIT#", "NODE", "MODERATORS", "INVITE#", "OWNER#",
                   "SESSIONS#"):
        assert prefix not in text, f"chat may access {prefix}"
    keys = {k for s in statements(app, "ChatRole")
            for k in s.get("Condition", {}).get("ForAllValues:StringLike", {}).get("dynamodb:LeadingKeys", [])}
    assert keys == {"ROOM#*", "SESSION#*", "ACCESSLOG#*"}


def test_audit_log_is_append_only(app):
    for fn in FUNCTIONS:
        for s in statements(app, role_of(fn)):
            keys = s.get("Condition", {}).get("ForAllValues:StringLike", {}).get("dynamodb:LeadingKeys", [])
            if "AUDIT#*" in keys:
                assert fn == "privacy"
                assert set(listify(s["Action"])) == {"dynamodb:PutItem", "dynamodb:Query"}


NODE_TABLE = {"Fn::Sub": "arn:${AWS::Partition}:dynamodb:${AWS::Region}:${AWS::AccountId}:table/${Prefix}"}


def meeting_attributes() -> set[str]:
    """The attribute names the store writes for a meeting (functions/store/src/aws/rooms.rs,
    meeting_item; `kind` is added by item() in functions/store/src/aws/codec.rs)."""
    store = __import__("conftest").REPO / "functions/store/src/aws"
    src = (store / "rooms.rs").read_text()
    body = re.search(r"^fn meeting_item\(.*?^\}$", src, re.M | re.S).group(0)
    names = set(re.findall(r'\(\s*"([a-z_]+)",', body)) | set(re.findall(r'insert\("([a-z_]+)"', body))
    codec = (store / "codec.rs").read_text()
    assert re.search(r'm\.insert\("kind"\.into\(\)', codec), "item() no longer adds `kind`?"
    return names | {"kind"}


def test_media_nodes_write_only_their_own_registry_item_and_meeting_records(infra):
    st = {s["Sid"]: s for s in statements(infra, "NodeRole")}
    ddb = {sid: s for sid, s in st.items() if any(a.startswith("dynamodb:") for a in listify(s["Action"]))}
    assert set(ddb) == {"OwnRegistryItem", "MeetingRecords", "ReleaseSeats", "OwnReservations"}
    s = ddb["OwnRegistryItem"]
    assert set(s["Action"]) == {"dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"}
    assert s["Resource"] == NODE_TABLE
    assert s["Condition"] == {
        "ForAllValues:StringEquals": {"dynamodb:LeadingKeys": ["NODE#${ec2:SourceInstanceARN}"]},
        "Null": {"dynamodb:LeadingKeys": "false"},
    }
    # meetings: PutItem only (no reads, no update, no delete), room partitions, the meeting
    # item's attribute names only (no index keys), nothing returned
    m = ddb["MeetingRecords"]
    assert listify(m["Action"]) == ["dynamodb:PutItem"] and m["Resource"] == NODE_TABLE
    c = m["Condition"]
    assert set(c) == {"ForAllValues:StringLike", "ForAllValues:StringEquals", "StringEqualsIfExists", "Null"}
    assert c["ForAllValues:StringLike"] == {"dynamodb:LeadingKeys": ["ROOM#*"]}
    assert list(c["ForAllValues:StringEquals"]) == ["dynamodb:Attributes"]
    attrs = c["ForAllValues:StringEquals"]["dynamodb:Attributes"]
    assert set(attrs) == meeting_attributes() == {
        "pk", "sk", "kind", "id", "room_id", "started_at", "ended_at", "peak_participants", "expires_at"}
    assert not any(a.startswith("gsi") for a in attrs)
    assert c["StringEqualsIfExists"] == {"dynamodb:ReturnValues": "NONE"}
    # without the keys ForAllValues would match anything
    assert c["Null"] == {"dynamodb:LeadingKeys": "false", "dynamodb:Attributes": "false"}

    # giving seats back: the placement's node, seats and holders only, projected reads
    r = ddb["ReleaseSeats"]
    assert set(r["Action"]) == {"dynamodb:GetItem", "dynamodb:UpdateItem"} and r["Resource"] == NODE_TABLE
    assert r["Condition"]["ForAllValues:StringEquals"]["dynamodb:Attributes"] == [
        "pk", "sk", "node_id", "seats", "holders"]
    assert r["Condition"]["StringEqualsIfExists"]["dynamodb:Select"] == "SPECIFIC_ATTRIBUTES"
    q = ddb["OwnReservations"]
    assert q["Action"] == "dynamodb:Query"
    assert q["Condition"]["ForAllValues:StringEquals"]["dynamodb:LeadingKeys"] == [
        "PLACED#${ec2:SourceInstanceARN}"]
    assert "holders" not in q["Condition"]["ForAllValues:StringEquals"]["dynamodb:Attributes"]

    assert set(st) == {"OwnRegistryItem", "MeetingRecords", "ReleaseSeats", "OwnReservations", "MetricsLog", "PublicKeyOnly", "TlsCertificate",
                       "OwnDnsName", "DnsChangeStatus", "Binary", "DrainAndHealth", "TurnSecret"}
    assert st["PublicKeyOnly"]["Action"] == "ssm:GetParameter"
    assert st["PublicKeyOnly"]["Resource"]["Fn::Sub"].endswith(":parameter/${Prefix}/signing-public-key")
    assert st["TlsCertificate"]["Action"] == "ssm:GetParameter"
    assert [r["Fn::Sub"].rpartition(":parameter/")[2] for r in st["TlsCertificate"]["Resource"]] == [
        "${Prefix}/media-tls/certificate", "${Prefix}/media-tls/private-key"]
    assert st["Binary"]["Resource"] == {"Fn::Sub": "arn:${AWS::Partition}:s3:::${ArtifactBucket}/${ArtifactKey}"}
    assert st["DrainAndHealth"]["Resource"]["Fn::Sub"].endswith("autoScalingGroupName/${Prefix}-media-nodes")


def test_media_nodes_metrics_go_only_to_their_log_group(infra):
    st = {s["Sid"]: s for s in statements(infra, "NodeRole")}
    # The CloudWatch agent's Prometheus scrape is sent as EMF log events: no PutMetricData.
    assert "cloudwatch:PutMetricData" not in json.dumps(st)
    assert st["MetricsLog"]["Resource"] == {"Fn::GetAtt": ["MetricsLogGroup", "Arn"]}
    assert set(st["MetricsLog"]["Action"]) == {"logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"}


def test_media_nodes_may_change_only_node_names_in_their_zone(infra):
    st = {s["Sid"]: s for s in statements(infra, "NodeRole")}
    dns = st["OwnDnsName"]
    assert dns["Action"] == "route53:ChangeResourceRecordSets"
    assert dns["Resource"] == {"Fn::Sub": "arn:${AWS::Partition}:route53:::hostedzone/${HostedZoneId}"}
    assert dns["Condition"] == {
        "ForAllValues:StringLike": {
            "route53:ChangeResourceRecordSetsNormalizedRecordNames": [{"Fn::Sub": "i-*.${MediaDomain}"}]},
        "ForAllValues:StringEquals": {
            "route53:ChangeResourceRecordSetsRecordTypes": ["A"],
            "route53:ChangeResourceRecordSetsActions": ["UPSERT", "DELETE"]},
    }
    assert st["DnsChangeStatus"]["Action"] == "route53:GetChange"
    assert st["DnsChangeStatus"]["Resource"] == {"Fn::Sub": "arn:${AWS::Partition}:route53:::change/*"}


def test_the_planner_reads_only_the_forecast_and_sets_only_the_media_fleets_floor(app):
    by_sid = {s["Sid"]: s for s in statements(app, "PlannerRole")}
    assert set(by_sid) == {"Logs", "ForecastIndex", "FleetFloor"}
    assert by_sid["Logs"]["Resource"] == {"Fn::GetAtt": ["PlannerLogGroup", "Arn"]}
    forecast = by_sid["ForecastIndex"]
    assert forecast["Action"] == "dynamodb:Query" and forecast["Resource"] == GSI2
    assert forecast["Condition"] == {
        "ForAllValues:StringLike": {"dynamodb:LeadingKeys": ["PLANDAY#*"]},
        "Null": {"dynamodb:LeadingKeys": "false"}}
    fleet = by_sid["FleetFloor"]
    assert set(fleet["Action"]) == {"autoscaling:PutScheduledUpdateGroupAction",
                                    "autoscaling:DeleteScheduledAction"}
    # the one group the media stack names ${Prefix}-media-nodes, not every group
    assert fleet["Resource"] == {"Fn::Sub": "arn:aws:autoscaling:${AWS::Region}:${AWS::AccountId}:"
                                            "autoScalingGroup:*:autoScalingGroupName/${Prefix}-media-nodes"}

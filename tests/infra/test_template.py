"""What the templates promise, read from the template text: the parts the local endpoint cannot
show (moto's CloudFormation ignores TimeToLiveSpecification, PointInTimeRecoverySpecification,
SSESpecification's CFN spelling, and an S3 bucket's lifecycle, public-access block, ownership
and versioning; it skips AWS::SecretsManager::Secret, AWS::S3::BucketPolicy and
AWS::ApiGatewayV2::* entirely) plus the shape of functions, logs and secrets. The CloudFront
distribution (which moto cannot create at all) is checked in test_cloudfront.py."""

import json
from pathlib import Path
import re

import pytest

from conftest import FUNCTIONS

BUCKETS = {"ExportBucket": 1, "LogArchiveBucket": 30, "WebBucket": None}
ENV = {"AULA_SECRETS_ARN", "AULA_PUBLIC_URL", "AULA_SELF_REGISTRATION",
       "AULA_SUPERVISORY_AUTHORITY", "AULA_DATA_PROTECTION_OFFICER",
       "AULA_TABLE", "AULA_EXPORT_BUCKET", "AULA_LOG_BUCKET", "RUST_LOG",
       "AULA_PROCESSING_LOCATION", "AULA_BACKUP_DAYS", "AULA_NODE_CAPACITY"}


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
    # Backups hold deleted data for RecoveryPeriodInDays; the privacy page states the same
    # number, which the functions get from the same mapping.
    days = app["Mappings"]["Backups"]["Table"]["RecoveryPeriodInDays"]
    assert 1 <= days <= 7, "backups must not keep erased data for weeks"
    pitr_days = {"Fn::FindInMap": ["Backups", "Table", "RecoveryPeriodInDays"]}
    assert t["PointInTimeRecoverySpecification"] == {
        "PointInTimeRecoveryEnabled": True, "RecoveryPeriodInDays": pitr_days}
    assert app["Globals"]["Function"]["Environment"]["Variables"]["AULA_BACKUP_DAYS"] == pitr_days
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
    if fn == "auth":
        # only login needs the client address, so only auth gets the origin secret
        assert f["Properties"]["Environment"] == {
            "Variables": {"AULA_ORIGIN_SECRET_ARN": {"Ref": "OriginSecret"}}}
    elif fn == "rooms":
        # only join answers carry TURN credentials (test_the_join_answer_names_…)
        assert set(f["Properties"]["Environment"]["Variables"]) == {"AULA_TURN_URLS", "AULA_TURN_SECRET_ARN"}
    else:
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
    assert len(routes) == 7 + 15 + 3 + 11


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
    assert "KeysSecret" not in node and "/keys" not in node
    # the one secret a node reads is the TURN secret, by its exact name
    grants = [s for s in res(infra, "NodeRole")["Policies"][0]["PolicyDocument"]["Statement"]
              if any(a.startswith("secretsmanager:") for a in (s["Action"] if isinstance(s["Action"], list) else [s["Action"]]))]
    assert [(g["Sid"], g["Action"]) for g in grants] == [("TurnSecret", "secretsmanager:GetSecretValue")]
    assert grants[0]["Resource"] == {"Fn::Sub": "arn:${AWS::Partition}:secretsmanager:${AWS::Region}:${AWS::AccountId}:secret:${Prefix}/turn-??????"}
    assert res(app, "TurnSecret")["Name"] == {"Fn::Sub": "${Prefix}/turn"}
    user_data = res(infra, "NodeLaunchTemplate")["LaunchTemplateData"]["UserData"]["Fn::Base64"]["Fn::Sub"]
    assert "ssm get-parameter" in user_data and "/${Prefix}/signing-public-key" in user_data


def heredoc(user_data: str, path: str) -> str:
    """The text user data writes to `path` with `cat > path <<EOF` (quoted or not)."""
    m = re.search(r"^cat > %s <<'?EOF'?\n(.*?)^EOF$" % re.escape(path), user_data, re.M | re.S)
    assert m, f"user data does not write {path}"
    return m.group(1)


def user_data(infra) -> str:
    return res(infra, "NodeLaunchTemplate")["LaunchTemplateData"]["UserData"]["Fn::Base64"]["Fn::Sub"]


# The media node's configuration (media-node/node/src/main.rs: clap flags with env vars).
NODE_ENV = {"AULA_NODE_ID", "AULA_NODE_LISTEN", "AULA_METRICS_LISTEN", "AULA_NODE_UDP", "AULA_NODE_PUBLIC_IP", "AULA_NODE_URL",
            "AULA_JOIN_PUBLIC_KEY", "AULA_NODE_CAPACITY", "AULA_LAST_N", "AULA_DRAIN_SECONDS",
            "AULA_NODE_STORE", "AULA_TABLE", "AWS_REGION"}


def test_media_node_fleet(infra):
    lt = res(infra, "NodeLaunchTemplate")["LaunchTemplateData"]
    assert lt["MetadataOptions"]["HttpTokens"] == "required"
    assert all(b["Ebs"]["Encrypted"] for b in lt["BlockDeviceMappings"])
    ud = user_data(infra)
    assert 's3://${ArtifactBucket}/${ArtifactKey}' in ud
    assert "systemctl enable --now aula-media-node.service" in ud
    assert re.search(r"^ExecStart=/usr/local/bin/aula-media-node$", ud, re.M)

    asg = res(infra, "NodeGroup")
    hook = asg["LifecycleHookSpecificationList"][0]
    assert hook["LifecycleTransition"] == "autoscaling:EC2_INSTANCE_TERMINATING"
    assert hook["HeartbeatTimeout"] == {"Ref": "DrainTimeoutSeconds"}
    assert "complete-lifecycle-action" in ud and "target-lifecycle-state" in ud
    assert asg["HealthCheckType"] == "EC2" and "set-instance-health" in ud

    up = res(infra, "ExamMorningScaleUp")
    assert (up["Recurrence"], up["TimeZone"]) == ("30 6 * * 1-5", "Europe/Berlin")
    assert up["MinSize"] == {"Ref": "ExamMorningMinNodes"}


def test_media_node_environment_is_the_binarys_configuration(infra):
    ud = user_data(infra)
    env = dict(line.split("=", 1) for line in heredoc(ud, "/etc/aula/media-node.env").splitlines())
    assert set(env) == NODE_ENV
    # the node id is the instance ARN: the IAM rule on NODE#<id> depends on it
    assert env["AULA_NODE_ID"] == "$NODE_ID"
    assert 'NODE_ID="arn:${AWS::Partition}:ec2:${AWS::Region}:$ACCOUNT:instance/$INSTANCE_ID"' in ud
    # plain HTTP on loopback only: nginx terminates TLS, /metrics is not reachable from outside
    assert env["AULA_NODE_LISTEN"] == "127.0.0.1:8080"
    # metrics on a loopback listener of their own, where the agent scrapes them
    assert env["AULA_METRICS_LISTEN"] == "127.0.0.1:9464"
    assert env["AULA_NODE_UDP"] == "0.0.0.0:${MediaUdpPort}"
    assert env["AULA_NODE_PUBLIC_IP"] == "$PUBLIC_IP" and "PUBLIC_IP=$(imds meta-data/public-ipv4)" in ud
    assert env["AULA_NODE_URL"] == "wss://$NODE_HOST/media"
    assert 'NODE_HOST="$INSTANCE_ID.${MediaDomain}"' in ud
    assert env["AULA_JOIN_PUBLIC_KEY"] == "$JOIN_PUBLIC_KEY"
    assert re.search(r'JOIN_PUBLIC_KEY=\$\(aws ssm get-parameter [^)]*--name "/\$\{Prefix\}/signing-public-key"', ud)
    assert (env["AULA_NODE_CAPACITY"], env["AULA_LAST_N"], env["AULA_DRAIN_SECONDS"]) == (
        "${NodeCapacity}", "${LastN}", "${DrainTimeoutSeconds}")
    assert (env["AULA_NODE_STORE"], env["AULA_TABLE"], env["AWS_REGION"]) == ("dynamodb", "${Prefix}", "${AWS::Region}")
    # CloudFormation substitutes every ${...}: shell variables must be written without braces
    names = set(re.findall(r"\$\{([^}!]+)\}", ud))
    assert names <= set(infra["Parameters"]) | set(infra["Resources"]) | {"AWS::Region", "AWS::Partition"}, names


def test_media_node_tls_and_dns(infra):
    ud = user_data(infra)
    nginx = heredoc(ud, "/etc/nginx/conf.d/aula-media-node.conf")
    # 443 is nginx's stream front (below); the signalling server listens on loopback only
    assert "listen 127.0.0.1:8443 ssl default_server;" in nginx and "ssl_protocols TLSv1.2 TLSv1.3;" in nginx
    locations = re.findall(r"location (= )?(\S+) \{", nginx)
    assert [p for _, p in locations] == ["/media", "/healthz", "/"], "only /media and /healthz are proxied"
    assert "proxy_set_header Upgrade $http_upgrade;" in nginx
    assert '--name "/${Prefix}/media-tls/private-key"' in ud and "umask 077" in ud
    # the DNS name is live before the node starts (and registers), and removed after draining
    assert ud.index("aws route53 wait resource-record-sets-changed") < ud.index(
        "systemctl enable --now aula-media-node.service")
    assert "file:///etc/aula/dns-delete.json" in ud
    # both names, signalling and TURN over TLS, in one change (and removed together)
    assert 'TURN_HOST="$INSTANCE_ID-turn.${MediaDomain}"' in ud
    assert '"$1" "$NODE_HOST" "$PUBLIC_IP" "$1" "$TURN_HOST" "$PUBLIC_IP"' in ud
    assert infra["Parameters"]["HostedZoneId"]["Type"] == "AWS::Route53::HostedZone::Id"


def test_media_node_ports(infra):
    ingress = {(r["IpProtocol"], r["FromPort"] if isinstance(r["FromPort"], int) else r["FromPort"]["Ref"],
                r["ToPort"] if isinstance(r["ToPort"], int) else r["ToPort"]["Ref"])
               for r in res(infra, "NodeSecurityGroup")["SecurityGroupIngress"]}
    # WSS and TURN over TLS via nginx, the one UDP media port, TURN over UDP and TCP; no relay
    # port range (the relay only reaches its own node, on the instance), no plain-HTTP port
    assert ingress == {("tcp", 443, 443), ("udp", "MediaUdpPort", "MediaUdpPort"),
                       ("udp", 3478, 3478), ("tcp", 3478, 3478)}
    assert infra["Parameters"]["MediaUdpPort"]["Default"] == 40000


def turnserver_conf(infra) -> dict:
    conf = {}
    for line in heredoc(user_data(infra), "/etc/aula/turnserver.conf").splitlines():
        key, _, value = line.partition("=")
        conf.setdefault(key, []).append(value)
    return conf


def test_turn_beside_each_node_relays_only_to_that_node(infra):
    conf = turnserver_conf(infra)
    # the TURN REST API secret, shared with the rooms function (template.yaml TurnSecret)
    assert "use-auth-secret" in conf and conf["static-auth-secret"] == ["$TURN_SECRET"]
    assert 'TURN_SECRET=$(aws secretsmanager get-secret-value --region ${AWS::Region} --secret-id "${Prefix}/turn"' in user_data(infra)
    # no open relay: every peer is denied but the node's own addresses
    assert conf["denied-peer-ip"] == ["0.0.0.0-255.255.255.255"]
    assert sorted(conf["allowed-peer-ip"]) == ["$PRIVATE_IP", "$PUBLIC_IP"]
    assert "no-tcp-relay" in conf and "no-multicast-peers" in conf
    # plain UDP/TCP on 3478 (TLS ends in nginx), on the private address and for nginx on loopback
    assert conf["listening-port"] == ["3478"] and sorted(conf["listening-ip"]) == ["$PRIVATE_IP", "127.0.0.1"]
    assert "no-tls" in conf and "no-dtls" in conf and "no-cli" in conf
    # no log of client addresses
    assert conf["log-file"] == ["/dev/null"] and "no-stdout-log" in conf
    # relayed media to the node's public address stays on the instance
    nft = heredoc(user_data(infra), "/etc/aula/turn-hairpin.nft")
    assert "ip daddr $PUBLIC_IP udp dport ${MediaUdpPort} dnat to $PRIVATE_IP" in nft
    unit = heredoc(user_data(infra), "/etc/systemd/system/aula-turn.service")
    assert "User=aula-turn" in unit and "ExecStart=/usr/bin/turnserver -c /etc/aula/turnserver.conf" in unit
    assert "ExecStartPre=+/usr/sbin/nft -f /etc/aula/turn-hairpin.nft" in unit
    assert "systemctl enable --now aula-turn.service" in user_data(infra)


def test_turn_over_tls_shares_port_443_by_name(infra):
    ud = user_data(infra)
    stream = heredoc(ud, "/etc/nginx/aula-stream.conf")
    assert "listen 443;" in stream and "ssl_preread on;" in stream
    assert re.search(r"~\^i-\[0-9a-f\]\+-turn\\.\s+127\.0\.0\.1:5349;", stream), stream
    assert re.search(r"default\s+127\.0\.0\.1:8443;", stream)
    # TURN's TLS ends in nginx with the node's certificate and goes on as plain TCP to coturn
    assert "listen 127.0.0.1:5349 ssl;" in stream and "proxy_pass 127.0.0.1:3478;" in stream
    assert "ssl_certificate /etc/aula/tls/fullchain.pem;" in stream
    assert "echo 'include /etc/nginx/aula-stream.conf;' >> /etc/nginx/nginx.conf" in ud
    assert "dnf install -y nginx nginx-mod-stream coturn amazon-cloudwatch-agent" in ud


def test_the_join_answer_names_the_turn_server_of_the_placed_node(app):
    env = res(app, "RoomsFunction")["Environment"]["Variables"]
    assert env["AULA_TURN_SECRET_ARN"] == {"Ref": "TurnSecret"}
    urls = env["AULA_TURN_URLS"]["Fn::Sub"].split(",")
    assert urls == ["turn:{host}:3478?transport=udp", "turn:{host}:3478?transport=tcp",
                    "turns:{node}-turn.${MediaDomain}:443?transport=tcp"]
    secret = res(app, "TurnSecret")
    assert "SecretString" not in secret and secret["GenerateSecretString"]["ExcludePunctuation"] is True
    # only the rooms function issues join answers, so only it reads the TURN secret
    for fn in ("Auth", "Chat", "Privacy"):
        assert "TurnSecret" not in json.dumps(res(app, f"{fn}Role")), fn


def test_scaling_metric_is_what_the_agent_publishes(infra):
    ud = user_data(infra)
    tt = res(infra, "ParticipantsTargetTracking")
    m = tt["TargetTrackingConfiguration"]["CustomizedMetricSpecification"]
    assert (tt["PolicyType"], m["Namespace"], m["MetricName"], m["Statistic"]) == (
        "TargetTrackingScaling", "Aula/MediaNode", "aula_media_load", "Average")
    assert m["Dimensions"] == [{"Name": "AutoScalingGroupName", "Value": {"Ref": "NodeGroup"}}]
    assert res(infra, "NodeGroup")["AutoScalingGroupName"] == {"Fn::Sub": "${Prefix}-media-nodes"}

    assert "dnf install -y nginx nginx-mod-stream coturn amazon-cloudwatch-agent" in ud
    assert "amazon-cloudwatch-agent-ctl -a fetch-config -m ec2 -s" in ud
    agent = json.loads(heredoc(ud, "/opt/aws/amazon-cloudwatch-agent/etc/aula-media-node.json"))
    prom = agent["logs"]["metrics_collected"]["prometheus"]
    assert prom["log_group_name"] == "${MetricsLogGroup}"
    assert prom["prometheus_config_path"] == "/opt/aws/amazon-cloudwatch-agent/etc/prometheus.yaml"
    emf = prom["emf_processor"]
    assert emf["metric_namespace"] == m["Namespace"]
    (decl,) = emf["metric_declaration"]
    assert decl["metric_selectors"] == ["^%s$" % m["MetricName"]]
    assert decl["dimensions"] == [["AutoScalingGroupName"]]
    assert (decl["source_labels"], decl["label_matcher"]) == (["job"], "^aula-media-node$")
    assert "metrics" not in agent, "no PutMetricData path: the agent only sends EMF logs"

    scrape = heredoc(ud, "/opt/aws/amazon-cloudwatch-agent/etc/prometheus.yaml")
    assert "job_name: aula-media-node" in scrape and "metrics_path: /metrics" in scrape
    assert 'targets: ["127.0.0.1:9464"]' in scrape
    assert re.search(r"^ +AutoScalingGroupName: \$\{Prefix\}-media-nodes$", scrape, re.M)
    assert res(infra, "MetricsLogGroup")["RetentionInDays"] == 1


def run_drain_watcher(infra, tmp_path, health_code: str, rounds: int = 8) -> list[str]:
    """Runs the node's drain watcher for `rounds` health checks with curl, aws, systemctl and
    sleep replaced: /healthz answers `health_code` (000: no answer). Returns the aws calls."""
    import os
    import subprocess

    script = heredoc(user_data(infra), "/usr/local/bin/aula-drain-watch")
    for var, value in {"${Prefix}": "aula", "${AWS::Region}": "eu-central-1", "${HostedZoneId}": "Z1"}.items():
        script = script.replace(var, value)
    (tmp_path / "watch").write_text(script)
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    stubs = {
        "curl": """case "$*" in
  *api/token*) echo token ;;
  *instance-id*) echo i-0123 ;;
  *target-lifecycle-state*) echo InService ;;
  *healthz*)
    [ "$HEALTH_CODE" = 000 ] && { printf 000; exit 28; }
    # -f (--fail): no output and exit 22 on an HTTP error, as curl does.
    for a in "$@"; do
      case "$a" in --fail) fail=1 ;; --*) ;; -*f*) fail=1 ;; esac
    done
    [ -n "${fail:-}" ] && [ "$HEALTH_CODE" -ge 400 ] && exit 22
    printf '%s' "$HEALTH_CODE" ;;
  *) exit 22 ;;
esac""",
        "aws": 'echo "$*" >> "$AWS_CALLS"',
        "systemctl": "exit 0",
        "sleep": """n=$(( $(cat "$ROUNDS_FILE" 2>/dev/null || echo 0) + 1 )); echo $n > "$ROUNDS_FILE"
[ "$n" -ge "$ROUNDS" ] && kill -9 $PPID; exit 0""",
    }
    for name, body in stubs.items():
        (bin_ / name).write_text("#!/bin/bash\n" + body + "\n")
        (bin_ / name).chmod(0o755)
    calls = tmp_path / "aws-calls"
    env = dict(os.environ, PATH=f"{bin_}:{os.environ['PATH']}", HEALTH_CODE=health_code, AWS_CALLS=str(calls),
               ROUNDS_FILE=str(tmp_path / "rounds"), ROUNDS=str(rounds))
    subprocess.run(["bash", str(tmp_path / "watch")], env=env, timeout=30, check=False)
    assert int((tmp_path / "rounds").read_text()) == rounds, "the watcher looked at the node every round"
    return calls.read_text().splitlines() if calls.exists() else []


def test_the_drain_watcher_reports_a_node_that_stops_answering_as_unhealthy(infra, tmp_path):
    calls = run_drain_watcher(infra, tmp_path, "000")
    assert any(c.startswith("autoscaling set-instance-health") and "Unhealthy" in c and "i-0123" in c for c in calls), calls


def test_the_drain_watcher_leaves_a_node_that_drains_by_itself_or_is_healthy_in_service(infra, tmp_path):
    for code in ("503", "200"):
        work = tmp_path / code
        work.mkdir()
        calls = run_drain_watcher(infra, work, code)
        assert not [c for c in calls if "set-instance-health" in c], f"/healthz {code}: {calls}"


def test_the_fleet_planner_runs_evenings_and_early_mornings_on_the_media_stacks_bounds(app, infra, translated):
    f = app["Resources"]["PlannerFunction"]
    assert f["Type"] == "AWS::Serverless::Function"
    assert f["Metadata"] == {"BuildMethod": "rust-cargolambda", "BuildProperties": {"Binary": "aula-planner"}}
    p = f["Properties"]
    assert p["Role"] == {"Fn::GetAtt": ["PlannerRole", "Arn"]}
    assert p["LoggingConfig"] == {"LogGroup": {"Ref": "PlannerLogGroup"}}
    assert res(app, "PlannerLogGroup")["RetentionInDays"] == 30
    assert p["Environment"]["Variables"] == {
        # the group infra/media-nodes.yaml names
        "AULA_FLEET_GROUP": {"Fn::Sub": "${Prefix}-media-nodes"},
        "AULA_FLEET_MIN_NODES": {"Ref": "MediaFleetMinNodes"},
        "AULA_FLEET_MAX_NODES": {"Ref": "MediaFleetMaxNodes"},
        "AULA_FLEET_SCHOOL_DAY_NODES": {"Ref": "MediaFleetExamMorningMinNodes"},
    }
    # the node capacity it counts with comes from Globals, the same for the admins' forecast
    assert deployed_environment(translated, "PlannerFunction")["AULA_NODE_CAPACITY"] == {"Ref": "NodeCapacity"}
    assert infra["Resources"]["NodeGroup"]["Properties"]["AutoScalingGroupName"] == {
        "Fn::Sub": "${Prefix}-media-nodes"}
    # the same defaults as the media stack's bounds and node capacity
    for mine, theirs in [("MediaFleetMinNodes", "MinNodes"), ("MediaFleetMaxNodes", "MaxNodes"),
                         ("MediaFleetExamMorningMinNodes", "ExamMorningMinNodes"),
                         ("NodeCapacity", "NodeCapacity")]:
        assert app["Parameters"][mine]["Default"] == infra["Parameters"][theirs]["Default"], mine
    # the school day the planner respects is the one the media stack's own actions keep
    fleet_rs = (Path(__file__).parents[2] / "functions/domain/src/services/fleet.rs").read_text()
    up, release = res(infra, "ExamMorningScaleUp"), res(infra, "ExamMorningRelease")
    assert up["TimeZone"] == release["TimeZone"] == "Europe/Berlin" and "chrono_tz::Europe::Berlin" in fleet_rs
    assert (up["Recurrence"], release["Recurrence"]) == ("30 6 * * 1-5", "0 14 * * 1-5")
    assert "SCHOOL_DAY_FROM: (u32, u32) = (6, 30)" in fleet_rs and "SCHOOL_DAY_UNTIL: (u32, u32) = (14, 0)" in fleet_rs
    schedules = {e["Properties"]["Schedule"] for e in p["Events"].values() if e["Type"] == "Schedule"}
    assert schedules == {"cron(0 17 * * ? *)", "cron(30 4 * * ? *)"}


def deployed_environment(translated, function: str) -> dict:
    """A function's environment as deployed: SAM's Globals merged with the function's own."""
    return translated["Resources"][function]["Properties"]["Environment"]["Variables"]


def test_the_admins_forecast_counts_nodes_at_the_stacks_node_capacity(app, translated):
    serving = [name for name, r in app["Resources"].items()
               if r["Type"] == "AWS::Serverless::Function"
               and any(e["Type"] == "HttpApi" and e["Properties"]["Path"] == "/api/admin/forecast"
                       and e["Properties"]["Method"] == "GET"
                       for e in r["Properties"].get("Events", {}).values())]
    assert serving, "no function serves GET /api/admin/forecast"
    for function in serving:
        # unset, functions/lambda would count 500 participants per node whatever the fleet takes
        assert deployed_environment(translated, function)["AULA_NODE_CAPACITY"] == {"Ref": "NodeCapacity"}, function

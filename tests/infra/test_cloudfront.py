"""The CloudFront distribution in template.yaml, read from the template text (moto's CloudFormation
has no CloudFront, see conftest.for_moto): one origin for the browser, the web bucket behind origin
access control, /api/* uncached with cookies forwarded, the security headers of the local portal,
and the SPA rewrite function, whose JavaScript is run with node on sample requests."""

import json
import re
import shutil
import subprocess

import pytest

from conftest import REPO

CACHING_DISABLED = "4135ea2d-6df8-44a3-9df3-4b5a84be39ad"  # Managed-CachingDisabled
ALL_METHODS = {"GET", "HEAD", "OPTIONS", "PUT", "PATCH", "POST", "DELETE"}
MEDIA_DOMAIN = "media.aula.example.org"

# What the local portal sends (src/web.rs) and production must send, with the media nodes'
# WebSocket origins as the wildcard of MediaDomain.
SECURITY_HEADERS = {
    "content-security-policy":
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
        "media-src 'self' blob:; font-src 'self'; connect-src 'self' wss://*.%s; "
        "manifest-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'" % MEDIA_DOMAIN,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
    "permissions-policy": "camera=(self), microphone=(self), display-capture=(self), geolocation=()",
    "cross-origin-opener-policy": "same-origin",
}


def res(t, name):
    return t["Resources"][name]["Properties"]


@pytest.fixture(scope="module")
def dist(app):
    assert app["Resources"]["Distribution"]["Type"] == "AWS::CloudFront::Distribution"
    return res(app, "Distribution")["DistributionConfig"]


def behaviours(dist) -> dict:
    """path pattern -> behaviour ("default" for the default behaviour)."""
    out = {"default": dist["DefaultCacheBehavior"]}
    for b in dist.get("CacheBehaviors", []):
        assert b["PathPattern"] not in out, f"two behaviours for {b['PathPattern']}"
        out[b["PathPattern"]] = b
    return out


def origin(dist, origin_id) -> dict:
    (o,) = [o for o in dist["Origins"] if o["Id"] == origin_id]
    return o


def sub(value, **params) -> str:
    """A Fn::Sub string (or a plain string) with the given parameters filled in."""
    text = value["Fn::Sub"] if isinstance(value, dict) else value
    assert isinstance(text, str), value
    for k, v in params.items():
        text = text.replace("${%s}" % k, v)
    assert "${" not in text, f"unexpected substitution left in {text!r}"
    return text


def response_headers(app) -> dict:
    """Header name (lower case) -> value, as the response headers policy sets them."""
    cfg = res(app, "SecurityHeadersPolicy")["ResponseHeadersPolicyConfig"]
    assert set(cfg) <= {"Name", "Comment", "SecurityHeadersConfig", "CustomHeadersConfig"}, (
        "no CORS, server-timing or header removal: only the security headers")
    sec, out = cfg["SecurityHeadersConfig"], {}
    for key, h in sec.items():
        assert h["Override"] is True, f"{key} must override what S3 or the API send"
        if key == "ContentSecurityPolicy":
            out["content-security-policy"] = sub(h["ContentSecurityPolicy"], MediaDomain=MEDIA_DOMAIN)
        elif key == "ContentTypeOptions":
            out["x-content-type-options"] = "nosniff"
        elif key == "ReferrerPolicy":
            out["referrer-policy"] = h["ReferrerPolicy"]
        elif key == "FrameOptions":
            out["x-frame-options"] = h["FrameOption"]
        elif key == "StrictTransportSecurity":
            out["strict-transport-security"] = h
        elif key == "XSSProtection":
            out["x-xss-protection"] = h
        else:
            raise AssertionError(f"unknown security header setting {key}")
    for h in cfg.get("CustomHeadersConfig", {}).get("Items", []):
        assert h["Override"] is True, f"{h['Header']} must override what S3 or the API send"
        name = h["Header"].lower()
        assert name not in out, f"{name} set twice"
        out[name] = h["Value"]
    return out


# ------------------------------------------------------------------------------ headers

def test_security_headers_are_exactly_the_portals(app):
    assert response_headers(app) == SECURITY_HEADERS


def test_security_headers_match_the_local_portal_source(app):
    """The same list as the local portal sends (the CSP from src/web.rs, the other headers from
    the layer it shares with the media node, media-node/node/src/http.rs), so they cannot drift."""
    web = (REPO / "src/web.rs").read_text()
    fn = web[web.index("pub fn content_security_policy"):]
    m = re.search(r'format!\(\s*"((?:[^"\\]|\\.)*)"', fn, re.S)
    assert m, "content_security_policy in src/web.rs has changed shape: update this test"
    csp = re.sub(r"\\\n\s*", "", m.group(1))  # Rust string line continuations
    local = {"content-security-policy": csp.replace("{connect}", "'self' wss://*.%s" % MEDIA_DOMAIN)}
    layer = (REPO / "media-node/node/src/http.rs").read_text()
    for hdr, value in re.findall(
            r'set\(\s*h,\s*(header::\w+|HeaderName::from_static\("[^"]+"\)),\s*("[^"]*"|&csp),?\s*\)',
            layer):
        name = (hdr[len("header::"):].lower().replace("_", "-") if hdr.startswith("header::")
                else re.search(r'"([^"]+)"', hdr).group(1))
        if value != "&csp":
            local[name] = value.strip('"')
    assert set(local) == set(SECURITY_HEADERS), "the portal sets other headers: update this test"
    assert response_headers(app) == local


def test_both_behaviours_send_the_security_headers(dist):
    for path, b in behaviours(dist).items():
        assert b["ResponseHeadersPolicyId"] == {"Ref": "SecurityHeadersPolicy"}, path


def test_media_domain_parameter_matches_the_media_node_stack(app, infra):
    """connect-src allows wss://*.<MediaDomain>: the same parameter, same rules, as the nodes'."""
    assert app["Parameters"]["MediaDomain"]["AllowedPattern"] == infra["Parameters"]["MediaDomain"]["AllowedPattern"]
    assert "MediaDomain" in json.dumps(res(app, "SecurityHeadersPolicy"))
    assert infra["Outputs"]["NodeUrlPattern"]["Value"] == {"Fn::Sub": "wss://<instance-id>.${MediaDomain}/media"}


# ------------------------------------------------------------------------------ behaviours

def test_api_is_not_cached_and_gets_cookies_and_query_strings(dist):
    b = behaviours(dist)
    assert set(b) == {"default", "/api/*"}
    api = b["/api/*"]
    assert api["TargetOriginId"] == "api"
    assert set(api["AllowedMethods"]) == ALL_METHODS
    assert api["CachePolicyId"] == CACHING_DISABLED
    assert api["OriginRequestPolicyId"] == {"Ref": "ApiOriginRequestPolicy"}
    assert "ForwardedValues" not in api and "DefaultTTL" not in api, "no legacy cache settings"
    assert not api.get("FunctionAssociations"), "the SPA rewrite must not touch the API"
    o = origin(dist, "api")
    assert o["DomainName"] == {"Fn::GetAtt": ["ApiDomain", "RegionalDomainName"]}
    assert o["CustomOriginConfig"]["OriginProtocolPolicy"] == "https-only"
    assert o["CustomOriginConfig"]["OriginSSLProtocols"] == ["TLSv1.2"]
    assert "OriginPath" not in o, "the API's routes already start with /api"


def test_api_gets_every_viewer_value_and_the_viewer_address(app):
    cfg = res(app, "ApiOriginRequestPolicy")["OriginRequestPolicyConfig"]
    # all cookies (the session cookie), query strings and viewer headers, plus the client's
    # address as CloudFront saw the connection (the login limits count per client address)
    assert cfg["HeadersConfig"] == {"HeaderBehavior": "allViewerAndWhitelistCloudFront",
                                    "Headers": ["CloudFront-Viewer-Address"]}
    assert cfg["CookiesConfig"] == {"CookieBehavior": "all"}
    assert cfg["QueryStringsConfig"] == {"QueryStringBehavior": "all"}


def test_cloudfront_sends_the_origin_secret_the_auth_function_checks(app, dist):
    (header,) = origin(dist, "api")["OriginCustomHeaders"]
    assert header["HeaderName"].lower() == "x-aula-origin-secret"  # ORIGIN_SECRET_HEADER
    assert header["HeaderValue"] == {
        "Fn::Sub": "{{resolve:secretsmanager:${OriginSecret}:SecretString}}"}, (
        "the value comes from Secrets Manager at deploy time, never from the template text")
    secret = res(app, "OriginSecret")
    assert "SecretString" not in secret and secret["GenerateSecretString"]["PasswordLength"] >= 32
    auth = res(app, "AuthFunction")["Environment"]["Variables"]
    assert auth["AULA_ORIGIN_SECRET_ARN"] == {"Ref": "OriginSecret"}
    src = (REPO / "functions/lambda/src/lib.rs").read_text()
    assert 'ORIGIN_SECRET_HEADER: &str = "x-aula-origin-secret"' in src
    assert 'VIEWER_ADDRESS_HEADER: &str = "cloudfront-viewer-address"' in src
    assert '"AULA_ORIGIN_SECRET_ARN"' in src


def test_the_api_is_reachable_only_through_its_custom_domain(app):
    api = res(app, "HttpApi")
    assert api["DisableExecuteApiEndpoint"] is True, "no execute-api address besides CloudFront"
    domain = res(app, "ApiDomain")
    # the portal's own host: CloudFront forwards the viewer's Host, and API Gateway routes it
    assert domain["DomainName"] == {"Ref": "PublicDomainName"}
    (cfg,) = domain["DomainNameConfigurations"]
    assert cfg == {"CertificateArn": {"Ref": "ApiCertificateArn"}, "EndpointType": "REGIONAL",
                   "SecurityPolicy": "TLS_1_2"}
    assert app["Parameters"]["ApiCertificateArn"]["AllowedPattern"].startswith(
        "^arn:aws:acm:eu-central-1:")
    mapping = res(app, "ApiMapping")
    assert mapping["ApiId"] == {"Ref": "HttpApi"} and mapping["DomainName"] == {"Ref": "ApiDomain"}
    assert "ApiUrl" not in app["Outputs"], "no output may advertise the execute-api address"


def test_api_errors_are_not_rewritten(dist):
    # Distribution-level custom error responses apply to every behaviour, /api/* included: a
    # 404 or 403 from the API would become index.html with 200.
    assert "CustomErrorResponses" not in dist


def test_frontend_behaviour(app, dist):
    d = behaviours(dist)["default"]
    assert d["TargetOriginId"] == "web"
    assert set(d["AllowedMethods"]) == {"GET", "HEAD"} and set(d["CachedMethods"]) == {"GET", "HEAD"}
    assert d["Compress"] is True
    assert d["FunctionAssociations"] == [{
        "EventType": "viewer-request",
        "FunctionARN": {"Fn::GetAtt": ["SpaRewriteFunction", "FunctionMetadata.FunctionARN"]}}]
    assert d["CachePolicyId"] == {"Ref": "WebCachePolicy"}
    cp = res(app, "WebCachePolicy")["CachePolicyConfig"]
    # TTLs come from the objects' Cache-Control: index.html "no-cache" is not kept at the edge
    assert (cp["MinTTL"], cp["DefaultTTL"]) == (0, 0) and cp["MaxTTL"] > 0
    key = cp["ParametersInCacheKeyAndForwardedToOrigin"]
    assert key["CookiesConfig"] == {"CookieBehavior": "none"}, "no cookies to S3 or in the cache key"
    assert key["HeadersConfig"] == {"HeaderBehavior": "none"}
    assert key["QueryStringsConfig"] == {"QueryStringBehavior": "none"}
    assert key["EnableAcceptEncodingGzip"] and key["EnableAcceptEncodingBrotli"]


def test_viewers_https_only_on_the_public_host(app, dist):
    assert dist["Enabled"] is True
    assert dist["Aliases"] == [{"Ref": "PublicDomainName"}]
    cert = dist["ViewerCertificate"]
    assert cert == {"AcmCertificateArn": {"Ref": "CertificateArn"}, "SslSupportMethod": "sni-only",
                    "MinimumProtocolVersion": "TLSv1.2_2021"}
    # CloudFront takes ACM certificates from us-east-1 only
    assert app["Parameters"]["CertificateArn"]["AllowedPattern"].startswith("^arn:aws:acm:us-east-1:")
    for path, b in behaviours(dist).items():
        assert b["ViewerProtocolPolicy"] == "redirect-to-https", path
    assert dist["HttpVersion"] == "http2and3"
    assert dist["PriceClass"] == "PriceClass_100"
    assert "Logging" not in dist, "access logs are the portal's own (30 days)"
    assert "WebACLId" not in dist


def test_public_domain_and_url_parameters(app):
    p = app["Parameters"]
    dom = re.compile(p["PublicDomainName"]["AllowedPattern"])
    url = re.compile(p["PublicUrl"]["AllowedPattern"])
    assert dom.match("aula.schule.example") and url.match("https://aula.schule.example")
    for bad in ("https://aula.schule.example", "Aula.Schule.example", "aula", "aula.schule.example/"):
        assert not dom.match(bad), bad


def test_outputs_name_the_distribution_and_the_bucket(app):
    out = app["Outputs"]
    assert out["DistributionDomainName"]["Value"] == {"Fn::GetAtt": ["Distribution", "DomainName"]}
    assert out["DistributionId"]["Value"] == {"Ref": "Distribution"}
    assert out["WebBucketName"]["Value"] == {"Ref": "WebBucket"}


# ------------------------------------------------------------------------------ bucket access

def test_web_bucket_is_reachable_only_through_origin_access_control(app, dist):
    o = origin(dist, "web")
    assert o["DomainName"] == {"Fn::GetAtt": ["WebBucket", "RegionalDomainName"]}, "REST endpoint, not website"
    assert o["OriginAccessControlId"] == {"Fn::GetAtt": ["WebOriginAccessControl", "Id"]}
    assert o["S3OriginConfig"] == {"OriginAccessIdentity": ""}, "no legacy origin access identity"
    oac = res(app, "WebOriginAccessControl")["OriginAccessControlConfig"]
    assert (oac["OriginAccessControlOriginType"], oac["SigningBehavior"], oac["SigningProtocol"]) == (
        "s3", "always", "sigv4")

    bucket = res(app, "WebBucket")
    assert "WebsiteConfiguration" not in bucket and "CorsConfiguration" not in bucket
    assert bucket["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True, "BlockPublicPolicy": True,
        "IgnorePublicAcls": True, "RestrictPublicBuckets": True}
    (policy,) = [r["Properties"] for r in app["Resources"].values()
                 if r["Type"] == "AWS::S3::BucketPolicy" and r["Properties"]["Bucket"] == {"Ref": "WebBucket"}]
    allows = [s for s in policy["PolicyDocument"]["Statement"] if s["Effect"] == "Allow"]
    assert allows == [{
        "Sid": "CloudFrontReadsTheFrontend",
        "Effect": "Allow",
        "Principal": {"Service": "cloudfront.amazonaws.com"},
        "Action": "s3:GetObject",
        "Resource": {"Fn::Sub": "${WebBucket.Arn}/*"},
        "Condition": {"StringEquals": {"AWS:SourceArn": {"Fn::Sub":
            "arn:${AWS::Partition}:cloudfront::${AWS::AccountId}:distribution/${Distribution}"}}},
    }]
    denies = [s for s in policy["PolicyDocument"]["Statement"] if s["Effect"] == "Deny"]
    assert [s["Sid"] for s in denies] == ["TlsOnly"]  # and test_template checks its content


def test_web_bucket_keeps_its_encryption_versioning_and_lifecycle(app):
    b = res(app, "WebBucket")
    assert b["BucketEncryption"]["ServerSideEncryptionConfiguration"][0][
        "ServerSideEncryptionByDefault"] == {"SSEAlgorithm": "AES256"}  # readable with OAC, no KMS grant
    assert b["OwnershipControls"]["Rules"] == [{"ObjectOwnership": "BucketOwnerEnforced"}]
    assert b["VersioningConfiguration"] == {"Status": "Enabled"}
    rules = b["LifecycleConfiguration"]["Rules"]
    assert rules[0]["NoncurrentVersionExpiration"] == {"NoncurrentDays": 30}


# ------------------------------------------------------------------------------ SPA rewrite

NODE_HARNESS = r"""
const fs = require('fs');
const vm = require('vm');
const ctx = vm.createContext({});
vm.runInContext(fs.readFileSync(process.argv[2], 'utf8'), ctx, { filename: 'spa-rewrite.js' });
const uris = JSON.parse(fs.readFileSync(0, 'utf8'));
const out = uris.map((uri) => {
  // the cloudfront-js-2.0 viewer-request event
  const event = {
    version: '1.0',
    context: { distributionDomainName: 'd111111abcdef8.cloudfront.net', eventType: 'viewer-request' },
    viewer: { ip: '198.51.100.7' },
    request: { method: 'GET', uri, querystring: { a: { value: '1' } },
               headers: { host: { value: 'aula.example.org' } }, cookies: {} },
  };
  const before = JSON.stringify(Object.assign({}, event.request, { uri: null }));
  const result = ctx.handler(event);
  return {
    uri: result.uri,
    is_request: result === event.request,
    rest_unchanged: JSON.stringify(Object.assign({}, result, { uri: null })) === before,
  };
});
process.stdout.write(JSON.stringify(out));
"""

ROOM = "0b7e4c1a-5f3d-4e2b-9a6c-8d1f2e3a4b5c"
TOKEN = "Qm9vbXN0YXJ0X2xpbmtfMQ"  # 22 base64url characters, as InviteToken
PAGES = ["/", "/login", "/rooms", "/rooms/", "/me", "/password", "/admin", "/privacy", "/j/abc", f"/j/{TOKEN}",
         f"/meeting/{ROOM}", "/unknown/page"]
FILES = ["/index.html", "/app.css", "/js/main.js", "/js/meeting.js", "/img/aula.svg",
         "/js/missing.js", "/favicon.ico"]
API = ["/api", "/api/", "/api/me", "/api/rooms", f"/api/rooms/{ROOM}/chat", "/api/join/abc",
       "/api/does-not-exist"]


@pytest.fixture(scope="module")
def rewrite(app, tmp_path_factory):
    """uri -> what the CloudFront function does with it, run by node."""
    node = shutil.which("node") or "/usr/bin/node"
    f = res(app, "SpaRewriteFunction")
    assert f["FunctionConfig"]["Runtime"] == "cloudfront-js-2.0" and f["AutoPublish"] is True
    d = tmp_path_factory.mktemp("spa")
    (d / "spa-rewrite.js").write_text(f["FunctionCode"])
    (d / "harness.js").write_text(NODE_HARNESS)

    def run(uris):
        r = subprocess.run([node, str(d / "harness.js"), str(d / "spa-rewrite.js")],
                           input=json.dumps(uris), capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, f"node failed:\n{r.stderr}"
        results = json.loads(r.stdout)
        for uri, x in zip(uris, results):
            assert x["is_request"], f"{uri}: the function must return the request, not a response"
            assert x["rest_unchanged"], f"{uri}: only the URI may change"
        return {u: x["uri"] for u, x in zip(uris, results)}
    return run


def test_spa_routes_get_index_html(rewrite):
    assert rewrite(PAGES) == {p: "/index.html" for p in PAGES}


def test_files_pass_unchanged(rewrite):
    assert rewrite(FILES) == {p: p for p in FILES}


def test_api_is_left_alone(rewrite):
    assert rewrite(API) == {p: p for p in API}


def test_every_frontend_route_is_rewritten(rewrite):
    """Each route of the app shell (web/js/main.js) has a sample page above, and it is rewritten."""
    shell = (REPO / "web/js/main.js").read_text()
    routes = re.findall(r"^\s*\[/(\^.*?\$)/,", shell, re.M)
    assert len(routes) >= 7, "web/js/main.js routes not found: update this test"
    samples = {pattern: [p for p in PAGES if re.match(pattern, p)] for pattern in routes}
    assert all(samples.values()), f"a route has no sample page, add one to PAGES: {samples}"
    pages = sorted({p for ps in samples.values() for p in ps})
    assert rewrite(pages) == {p: "/index.html" for p in pages}

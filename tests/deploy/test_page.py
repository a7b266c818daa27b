"""The chat page of a deployed stage (``infra/page.json``, ``infra/page.py``): a private bucket that only
the stage's CloudFront distribution reads, over HTTPS, with a Content-Security-Policy naming exactly
the stage's WebSocket API and sign-in domain; its URL is the app client's callback; ``make deploy``
publishes the page with its ``config.json`` and ``make destroy`` empties the bucket (test_deploy_path.py).
"""
from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from typing import Any, Dict, List

import boto3
import pytest
from moto import mock_aws

from infra import page, stack
from tests.deploy import cfn
from tests.deploy.support import BACKENDS, REGION, deploy_stack

API_ID = "a1b2c3d4e5"
REST_ID = "f6g7h8i9j0"
DOMAIN_PREFIX = "agentstream-dev-1a2b3c4d"
WSS = f"wss://{API_ID}.execute-api.{REGION}.amazonaws.com"
REST = f"https://{REST_ID}.execute-api.{REGION}.amazonaws.com"
SIGN_IN = f"https://{DOMAIN_PREFIX}.auth.{REGION}.amazoncognito.com"
DOCUMENTS_BUCKET = "agentstream-dev-documents-1a2b3c4d"
# Where the page POSTs an upload (the presigned POST's URL): S3's global name, and the regional one a
# new bucket outside us-east-1 redirects to.
DOCUMENTS = [f"https://{DOCUMENTS_BUCKET}.s3.amazonaws.com", f"https://{DOCUMENTS_BUCKET}.s3.{REGION}.amazonaws.com"]
PAGE_RESOURCES = ("PageBucket", "PageBucketPolicy", "PageOriginAccessControl", "PageHeadersPolicy", "PageDistribution")


@pytest.fixture(params=["packaged", "make deploy"])
def template(request: pytest.FixtureRequest) -> Dict[str, Any]:
    """Both stacks that carry the page: the packaged one (before Chalice adds its own) and make deploy's."""
    return stack.merge_template("dev") if request.param == "packaged" else stack.deploy_template("dev")


def _resource(template: Dict[str, Any], name: str) -> Dict[str, Any]:
    return template["Resources"][name]


def _csp(template: Dict[str, Any], creates_user_pool: bool) -> Dict[str, List[str]]:
    """The page's Content-Security-Policy as CloudFormation resolves it, directive -> sources."""
    policy = _resource(template, "PageHeadersPolicy")["Properties"]["ResponseHeadersPolicyConfig"]
    header = policy["SecurityHeadersConfig"]["ContentSecurityPolicy"]
    assert header["Override"] is True  # the header CloudFront sends is this one, whatever the origin says
    context = cfn.Context(
        parameters={"CreateUserPool": "true" if creates_user_pool else "false", "WebsocketAPI": API_ID, "RestAPI": REST_ID},
        resources={"UserPoolDomain": DOMAIN_PREFIX, "WebsocketAPI": API_ID, "RestAPI": REST_ID,
                   "DocumentsBucket": DOCUMENTS_BUCKET},
        pseudo={"AWS::Region": REGION, "AWS::URLSuffix": "amazonaws.com"},
        conditions=template["Conditions"],
    )
    text = context.evaluate(header["ContentSecurityPolicy"])
    directives = [part.split() for part in text.split(";") if part.strip()]
    return {words[0]: words[1:] for words in directives}


# ---- the template


def test_the_bucket_is_private_and_owned_by_the_account(template):
    properties = _resource(template, "PageBucket")["Properties"]
    assert properties["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True, "BlockPublicPolicy": True, "IgnorePublicAcls": True, "RestrictPublicBuckets": True}
    assert properties["OwnershipControls"] == {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]}  # no ACLs at all
    assert not {"AccessControl", "WebsiteConfiguration", "CorsConfiguration"} & set(properties)
    assert not [name for name, r in template["Resources"].items() if r.get("Type") == "AWS::CloudFront::CloudFrontOriginAccessIdentity"]


def test_only_the_pages_distribution_reads_the_bucket_and_only_over_tls(template):
    statements = _resource(template, "PageBucketPolicy")["Properties"]["PolicyDocument"]["Statement"]
    allows = [s for s in statements if s["Effect"] == "Allow"]
    assert allows == [{
        "Sid": "OnlyThePagesDistributionReads", "Effect": "Allow", "Principal": {"Service": "cloudfront.amazonaws.com"},
        "Action": "s3:GetObject", "Resource": {"Fn::Sub": "${PageBucket.Arn}/*"},
        "Condition": {"StringEquals": {"AWS:SourceArn": {
            "Fn::Sub": "arn:${AWS::Partition}:cloudfront::${AWS::AccountId}:distribution/${PageDistribution}"}}},
    }]
    (deny,) = [s for s in statements if s["Effect"] == "Deny"]
    assert (deny["Principal"], deny["Action"], deny["Condition"]) == ("*", "s3:*", {"Bool": {"aws:SecureTransport": "false"}})


def test_the_distribution_reads_through_origin_access_control_and_redirects_to_https(template):
    config = _resource(template, "PageDistribution")["Properties"]["DistributionConfig"]
    (origin,) = config["Origins"]
    assert origin["DomainName"] == {"Fn::GetAtt": ["PageBucket", "RegionalDomainName"]}
    assert origin["OriginAccessControlId"] == {"Fn::GetAtt": ["PageOriginAccessControl", "Id"]}
    assert origin["S3OriginConfig"] == {"OriginAccessIdentity": ""}  # no legacy identity beside it
    control = _resource(template, "PageOriginAccessControl")["Properties"]["OriginAccessControlConfig"]
    assert (control["OriginAccessControlOriginType"], control["SigningBehavior"], control["SigningProtocol"]) == (
        "s3", "always", "sigv4")
    behavior = config["DefaultCacheBehavior"]
    assert behavior["TargetOriginId"] == origin["Id"] and behavior["ViewerProtocolPolicy"] == "redirect-to-https"
    assert behavior["AllowedMethods"] == ["GET", "HEAD"]
    assert behavior["ResponseHeadersPolicyId"] == {"Ref": "PageHeadersPolicy"}
    assert "CacheBehaviors" not in config  # every path gets the headers policy
    assert config["DefaultRootObject"] == "index.html" and config["ViewerCertificate"] == {"CloudFrontDefaultCertificate": True}


@pytest.mark.parametrize("creates_user_pool", [True, False])
def test_the_content_security_policy_allows_exactly_the_stages_origins(template, creates_user_pool):
    csp = _csp(template, creates_user_pool)
    assert csp["default-src"] == ["'none'"]
    assert csp["connect-src"] == ["'self'", WSS, REST] + ([SIGN_IN] if creates_user_pool else []) + DOCUMENTS
    for directive in ("script-src", "style-src"):
        assert csp[directive] == ["'self'"], directive  # nothing inline, nothing from elsewhere
    assert csp["frame-ancestors"] == ["'none'"] and csp["base-uri"] == ["'none'"] and csp["form-action"] == ["'none'"]
    assert csp["object-src"] == ["'none'"]


def test_the_api_origins_are_the_ones_the_page_connects_to(templates):
    """The CSP's wss:// and https:// origins are those of the URLs the packaged stack outputs (and
    config.json names): the WebSocket API's and the REST API's."""
    for packaged in templates.values():
        policy = packaged["Resources"]["PageHeadersPolicy"]["Properties"]["ResponseHeadersPolicyConfig"]
        pieces = policy["SecurityHeadersConfig"]["ContentSecurityPolicy"]["ContentSecurityPolicy"]["Fn::Join"][1]
        (origins,) = [p["Fn::Sub"].split() for p in pieces if isinstance(p, dict) and "wss://" in p.get("Fn::Sub", "")]
        websocket = packaged["Outputs"][stack.URL_OUTPUT]["Value"]["Fn::Sub"]
        rest = packaged["Outputs"][stack.REST_URL_OUTPUT]["Value"]["Fn::Sub"]
        assert websocket.startswith(origins[0] + "/") and rest.startswith(origins[1] + "/"), (origins, websocket, rest)
        assert packaged["Resources"]["WebsocketAPI"]["Type"] == "AWS::ApiGatewayV2::Api"


def test_the_other_security_headers(template):
    config = _resource(template, "PageHeadersPolicy")["Properties"]["ResponseHeadersPolicyConfig"]
    headers = config["SecurityHeadersConfig"]
    assert headers["StrictTransportSecurity"]["AccessControlMaxAgeSec"] >= 31536000
    assert headers["ContentTypeOptions"] == {"Override": True}
    assert headers["FrameOptions"] == {"FrameOption": "DENY", "Override": True}
    assert headers["ReferrerPolicy"] == {"ReferrerPolicy": "no-referrer", "Override": True}
    assert all(header["Override"] for header in headers.values())
    assert {"Header": "Cross-Origin-Opener-Policy", "Value": "same-origin", "Override": True} in config["CustomHeadersConfig"]["Items"]


def test_the_page_needs_nothing_its_policy_forbids():
    """``script-src 'self'`` and ``style-src 'self'``: the page has no inline script, style or handler."""

    class Scan(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.problems: List[str] = []

        def handle_starttag(self, tag: str, attrs: List[Any]) -> None:
            names = {name for name, _ in attrs}
            if tag == "script" and "src" not in names:
                self.problems.append("an inline <script>")
            if tag == "style":
                self.problems.append("a <style> element")
            self.problems.extend(f"{tag} {name}=" for name in names if name == "style" or name.startswith("on"))

    scan = Scan()
    scan.feed((page.WEB_DIR / "index.html").read_text())
    assert scan.problems == []
    scripts = "".join(path.read_text() for _, path in page.page_files() if path.suffix == ".js")
    assert not re.search(r"\beval\(|new Function\(|\.innerHTML\s*=\s*[^\"'`]", scripts)


# ---- as CloudFormation builds it (moto)


@pytest.mark.parametrize("extra, expected_extra", [("", []), ("https://chat.example.com/,http://localhost:8000/",
                                                              ["https://chat.example.com/", "http://localhost:8000/"])])
def test_the_app_client_returns_to_the_page_and_only_where_asked(extra, expected_extra):
    with mock_aws():
        parameters = stack.resolve_parameters("dev", {**BACKENDS["agent"], "CallbackUrls": extra})
        outputs, _ = deploy_stack(parameters)
        client = boto3.client("cognito-idp", region_name=REGION).describe_user_pool_client(
            UserPoolId=outputs["UserPoolId"], ClientId=outputs["UserPoolClientId"])["UserPoolClient"]
        (distribution,) = boto3.client("cloudfront", region_name=REGION).list_distributions()["DistributionList"]["Items"]
    assert outputs["PageUrl"] == f"https://{distribution['DomainName']}/"
    assert outputs["PageDistributionId"] == distribution["Id"]
    assert client["CallbackURLs"] == client["LogoutURLs"] == [outputs["PageUrl"], *expected_extra]
    (origin,) = distribution["Origins"]["Items"]
    assert origin["DomainName"] == f"{outputs['PageBucketName']}.s3.{REGION}.amazonaws.com"
    assert distribution["DefaultCacheBehavior"]["ViewerProtocolPolicy"] == "redirect-to-https"


def test_the_default_callback_urls_are_none_but_the_page():
    assert stack.parameter_specs()["CallbackUrls"]["Default"] == ""
    assert stack.resolve_parameters("dev", BACKENDS["agent"])["CallbackUrls"] == ""


# ---- publishing (infra/page.py)


OUTPUTS = {stack.URL_OUTPUT: f"{WSS}/dev/", stack.REST_URL_OUTPUT: f"{REST}/dev/", "UserPoolDomainUrl": SIGN_IN,
           "UserPoolClientId": "client123",
           "PageUrl": "https://d1.cloudfront.net/", "PageBucketName": "agentstream-dev-data-pagebucket-x"}


def test_the_config_names_the_stage_and_its_sign_in():
    assert page.config_from_outputs(OUTPUTS, REGION) == {
        "wsUrl": f"{WSS}/dev/", "restUrl": f"{REST}/dev", "cognitoDomain": SIGN_IN, "clientId": "client123", "region": REGION}
    own_issuer = {stack.URL_OUTPUT: f"{WSS}/dev/"}  # CreateUserPool=false: the page keeps its token field
    assert page.config_from_outputs(own_issuer, REGION) == {"wsUrl": f"{WSS}/dev/", "region": REGION}


@mock_aws
def test_publish_uploads_the_page_and_its_config_then_empty_removes_them():
    s3 = boto3.client("s3", region_name=REGION)
    bucket = OUTPUTS["PageBucketName"]
    s3.create_bucket(Bucket=bucket)
    lines: List[str] = []
    config = page.config_from_outputs(OUTPUTS, REGION)
    written = page.publish(s3, bucket, config, log=lines.append)

    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"])
    expected = sorted(["config.json"] + [path.name for path in page.WEB_DIR.iterdir() if path.is_file() and path.name != "config.json"])
    assert keys == expected and written == len(expected)
    kinds = {"index.html": "text/html; charset=utf-8", "app.js": "text/javascript; charset=utf-8",
             "style.css": "text/css; charset=utf-8", "config.json": "application/json; charset=utf-8"}
    for key, kind in kinds.items():
        head = s3.head_object(Bucket=bucket, Key=key)
        assert (head["ContentType"], head["CacheControl"]) == (kind, "no-cache"), key
    assert json.loads(s3.get_object(Bucket=bucket, Key="config.json")["Body"].read()) == config
    assert s3.get_object(Bucket=bucket, Key="index.html")["Body"].read() == (page.WEB_DIR / "index.html").read_bytes()
    assert lines == [f"Published the page ({len(expected)} files) to s3://{bucket}/"]

    assert page.empty(s3, bucket, log=lines.append) == len(expected)
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket)
    s3.delete_bucket(Bucket=bucket)  # what CloudFormation can do now


@mock_aws
def test_publish_page_for_the_cloudformation_path_reads_the_stacks_outputs(capsys, monkeypatch):
    """``make publish-page STACK_NAME=..`` (``python -m infra.page publish``): the stack's outputs say where."""
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket=OUTPUTS["PageBucketName"])
    boto3.client("cloudformation", region_name=REGION).create_stack(StackName="agentstream-prod", TemplateBody=json.dumps({
        "Resources": {"Placeholder": {"Type": "AWS::SQS::Queue"}},
        "Outputs": {key: {"Value": value} for key, value in OUTPUTS.items()}}))
    assert page.main(["publish", "--stack-name", "agentstream-prod"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == f"Sign in and chat: {OUTPUTS['PageUrl']}"
    published = json.loads(s3.get_object(Bucket=OUTPUTS["PageBucketName"], Key="config.json")["Body"].read())
    assert published["wsUrl"] == OUTPUTS[stack.URL_OUTPUT] and published["clientId"] == "client123"
    assert page.main(["empty", "--stack-name", "agentstream-prod"]) == 0
    assert "Contents" not in s3.list_objects_v2(Bucket=OUTPUTS["PageBucketName"])


@mock_aws
def test_publish_page_refuses_a_stack_without_a_page():
    boto3.client("cloudformation", region_name=REGION).create_stack(StackName="old", TemplateBody=json.dumps({
        "Resources": {"Placeholder": {"Type": "AWS::SQS::Queue"}}}))
    with pytest.raises(SystemExit, match="old has no PageUrl, PageBucketName output"):
        page.stack_outputs(boto3.session.Session(region_name=REGION), "old")

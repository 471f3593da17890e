"""Germany only: neither template deploys outside eu-central-1.

Two guards per template: the `Rules` assertion (what CloudFormation evaluates before it creates
anything; evaluated here by a small interpreter of the rule functions, because neither moto nor
cfn-lint evaluates Rules) and the RegionGuard mapping lookup, which moto's CloudFormation does
evaluate: creating the stack in another region must fail there and create nothing."""

import json

import pytest

from conftest import (REGION, app_parameters, client, code_bucket, delete_bucket, delete_stack,
                      for_moto, packaged, unique, wait)

OTHER_REGIONS = ["us-east-1", "eu-west-1", "eu-central-2", "eu-north-1"]


def evaluate(expr, region: str):
    """The rule functions Aula's assertions may use, over the pseudo parameter AWS::Region."""
    if isinstance(expr, dict):
        (fn, arg), = expr.items()
        if fn == "Ref":
            assert arg == "AWS::Region", f"rule refers to {arg}; only AWS::Region is known here"
            return region
        if fn == "Fn::Equals":
            a, b = (evaluate(x, region) for x in arg)
            return a == b
        if fn == "Fn::Contains":
            return evaluate(arg[1], region) in [evaluate(x, region) for x in arg[0]]
        if fn == "Fn::And":
            return all(evaluate(x, region) for x in arg)
        if fn == "Fn::Or":
            return any(evaluate(x, region) for x in arg)
        if fn == "Fn::Not":
            return not evaluate(arg[0], region)
        raise AssertionError(f"unsupported rule function {fn}")
    if isinstance(expr, list):
        return [evaluate(x, region) for x in expr]
    return expr


def deployable(template: dict, region: str) -> bool:
    rules = template.get("Rules") or {}
    assert rules, "the template has no Rules section"
    for rule in rules.values():
        if "RuleCondition" in rule and not evaluate(rule["RuleCondition"], region):
            continue
        if not all(evaluate(a["Assert"], region) for a in rule["Assertions"]):
            return False
    return True


@pytest.fixture(params=["app", "infra"])
def template(request):
    return request.getfixturevalue(request.param)


def test_rules_allow_eu_central_1(template):
    assert deployable(template, REGION)


@pytest.mark.parametrize("region", OTHER_REGIONS)
def test_rules_refuse_every_other_region(template, region):
    assert not deployable(template, region)


def test_rules_guard_applies_unconditionally(template):
    for rule in template["Rules"].values():
        assert "RuleCondition" not in rule, "a RuleCondition could switch the region guard off"


def test_region_mapping_knows_only_eu_central_1(template):
    assert list(template["Mappings"]["RegionGuard"]) == [REGION]
    text = json.dumps(template)
    assert '{"Fn::FindInMap": ["RegionGuard", {"Ref": "AWS::Region"}' in text


def create(template: dict, region: str) -> str:
    """Creates the packaged template in `region` on the local endpoint and deletes it again;
    returns the final status, or "refused: ..." when the endpoint rejects the template."""
    # Without the CloudFront resources, which moto cannot create (conftest.for_moto); before the
    # try below, so a problem there is not mistaken for the guard's refusal.
    template = for_moto(template)[0]
    cfn, s3 = client("cloudformation", region), client("s3", region)
    bucket = code_bucket(region)
    prefix, name = unique("g"), unique("aulainfra-guard-")
    body = packaged(template, bucket, region)
    try:
        try:
            cfn.create_stack(StackName=name, TemplateBody=json.dumps(body),
                             Parameters=app_parameters(prefix), Capabilities=["CAPABILITY_NAMED_IAM"])
            status = wait(cfn, name)["StackStatus"]
        except Exception as e:  # moto answers the failed mapping lookup with an error response
            status = f"refused: {type(e).__name__}"
        if status != "CREATE_COMPLETE":
            assert prefix not in client("dynamodb", region).list_tables()["TableNames"]
        return status
    finally:
        try:
            delete_stack(region, name, prefix)
        finally:
            delete_bucket(s3, bucket)


def test_stack_is_refused_in_us_east_1_and_created_in_eu_central_1(app):
    assert create(app, REGION) == "CREATE_COMPLETE"
    assert create(app, "us-east-1") != "CREATE_COMPLETE"
    # Control: the same template with the guard widened to us-east-1 deploys there, so the
    # refusal above is the guard's doing and not some other us-east-1 difference.
    widened = json.loads(json.dumps(app))
    widened["Mappings"]["RegionGuard"]["us-east-1"] = {"Location": "US"}
    assert create(widened, "us-east-1") == "CREATE_COMPLETE"

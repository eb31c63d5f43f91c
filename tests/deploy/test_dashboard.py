"""deploy/dashboard.tf: the dashboard's JSON, rendered from its templates as Terraform's templatefile would, is a
Dashboard of the Monitoring API (deploy/schema/monitoring-dashboard.json plus the API's documented rules on
aggregations and tiles), and every log-based metric it charts is one the module creates, with the right kind."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any

import hcl2
import jsonschema
import pytest
from hcl2.utils import SerializationOptions

from handlers.core.decision import OUTCOMES, Counts
from handlers.core.review import ReviewCounts
from tests.conftest import ROOT

DEPLOY = ROOT / "deploy"
SCHEMA = json.loads((DEPLOY / "schema" / "monitoring-dashboard.json").read_text())
OPTIONS = SerializationOptions(with_comments=False, explicit_blocks=False, strip_string_quotes=True)
NAME, REGION = "mr-prod", "europe-west1"  # a name with a dash: PromQL names turn it into an underscore

# What dashboard.tf gives each template value, and what that is for the deployment NAME with push, the link and the
# review.
VALUES = {
    "outcomes_metric": (
        "logging.googleapis.com/user/${var.name}_outcomes",
        f"logging.googleapis.com/user/{NAME}_outcomes",
    ),
    "completed_lag_metric": (
        "logging.googleapis.com/user/${var.name}_completed_lag",
        f"logging.googleapis.com/user/{NAME}_completed_lag",
    ),
    "events_promql": ("${local.promql_user_prefix}_events", "logging_googleapis_com:user_mr_prod_events"),
    "link_promql": ("${local.promql_user_prefix}_link_", "logging_googleapis_com:user_mr_prod_link_"),
    "review_promql": ("${local.promql_user_prefix}_review_", "logging_googleapis_com:user_mr_prod_review_"),
    "trigger_subscription_regex": ("${local.trigger_subscription_regex}", f"{NAME}-trigger"),
    "dead_letter_regex": (
        "${local.dead_letter_regex}",
        f"{NAME}-dead-letter|{NAME}-link-dead-letter|{NAME}-review-dead-letter",
    ),
    "services_regex": (
        '${join("|", concat([var.name], var.link ? ["${var.name}-link"] : [],'
        ' var.review ? ["${var.name}-review"] : []))}',
        f"{NAME}|{NAME}-link|{NAME}-review",
    ),
    "backlog_alert_s": ("${var.trigger_backlog_alert_s}", 10800),
}
# Cloud Monitoring's own metrics the dashboard charts: (kind, value type), from the metrics lists.
BUILT_IN = {
    "pubsub.googleapis.com/subscription/oldest_unacked_message_age": ("GAUGE", "INT64"),
    "pubsub.googleapis.com/subscription/num_undelivered_messages": ("GAUGE", "INT64"),
    "run.googleapis.com/container/instance_count": ("GAUGE", "INT64"),
    "run.googleapis.com/request_latencies": ("DELTA", "DISTRIBUTION"),
}
# Aligners by the kinds and value types the API documents them for (the ones a chart here may use).
ALIGNER_FITS = {
    "ALIGN_DELTA": lambda kind, value: kind in {"DELTA", "CUMULATIVE"},
    "ALIGN_RATE": lambda kind, value: kind in {"DELTA", "CUMULATIVE"} and value != "DISTRIBUTION",
    "ALIGN_MAX": lambda kind, value: kind in {"GAUGE", "DELTA"} and value in {"INT64", "DOUBLE"},
    "ALIGN_SUM": lambda kind, value: kind in {"GAUGE", "DELTA"},
}


def _parse(path: Path) -> dict[str, Any]:
    with path.open() as f:
        parsed: dict[str, Any] = hcl2.load(f, serialization_options=OPTIONS)
    return parsed


@pytest.fixture(scope="module")
def module() -> dict[str, Any]:
    """dashboard.tf's locals, log-based metrics and dashboard resource."""
    parsed = _parse(DEPLOY / "dashboard.tf")
    resources = {
        (t, n): body for entry in parsed["resource"] for t, named in entry.items() for n, body in named.items()
    }
    local_values = {k: v for entry in parsed["locals"] for k, v in entry.items()}
    return {"locals": local_values, "resources": resources}


def render(template: str, values: dict[str, Any]) -> Any:
    """templatefile for templates that only interpolate plain names: ${name} is the value, $${ a literal ${."""
    text = (DEPLOY / "dashboard" / template).read_text()
    assert "%{" not in text, "the templates use no directives"
    names = set(re.findall(r"(?<!\$)\$\{([^}]*)\}", text))
    assert names <= set(values), names - set(values)
    rendered = re.sub(r"(?<!\$)\$\{(\w+)\}", lambda m: str(values[m.group(1)]), text).replace("$${", "${")
    return json.loads(rendered)


@pytest.fixture(scope="module")
def dashboard(module: dict[str, Any]) -> dict[str, Any]:
    """The dashboard JSON of the deployment NAME with the link and the review, as dashboard.tf composes it."""
    values = {key: rendered for key, (_, rendered) in VALUES.items()}
    tiles = render("relay.json.tftpl", values) + render("link.json.tftpl", values) + render("review.json.tftpl", values)
    return {"displayName": NAME, "mosaicLayout": {"columns": 48, "tiles": tiles}}


def test_deploy_dashboard_templates_get_the_values_dashboard_tf_passes(module: dict[str, Any]) -> None:
    """dashboard.tf passes each template exactly these values, composed into the dashboard as the tests do."""
    local_values = module["locals"]
    passed = {key: re.sub(r"\s+", " ", value) for key, value in local_values["dashboard_values"].items()}
    assert passed == {key: expression for key, (expression, _) in VALUES.items()}
    assert local_values["promql_user_prefix"] == 'logging_googleapis_com:user_${replace(var.name, "-", "_")}'
    tiles = local_values["dashboard_tiles"]
    assert 'templatefile("${path.module}/dashboard/relay.json.tftpl", local.dashboard_values)' in tiles
    assert "slice(local.link_tiles, 0, var.link ? length(local.link_tiles) : 0)" in tiles
    assert "slice(local.review_tiles, 0, var.review ? length(local.review_tiles) : 0)" in tiles
    for part in ("link", "review"):
        decoded = f'jsondecode(templatefile("${{path.module}}/dashboard/{part}.json.tftpl", local.dashboard_values))'
        assert local_values[f"{part}_tiles"] == f"${{{decoded}}}"
    resource = module["resources"]["google_monitoring_dashboard", "matchrelay"]
    assert resource["count"] == "${local.dashboard}"
    body = re.sub(r"\s+", " ", resource["dashboard_json"])
    assert (
        body == "${jsonencode({displayName = var.name, mosaicLayout = {columns = 48, tiles = local.dashboard_tiles}})}"
    )


def test_deploy_dashboard_is_a_monitoring_api_dashboard(dashboard: dict[str, Any]) -> None:
    """The JSON validates against the documented Dashboard structure: fields, nesting, enum values, durations."""
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    errors = [
        f"{list(e.absolute_path)}: {e.message}" for e in jsonschema.Draft202012Validator(SCHEMA).iter_errors(dashboard)
    ]
    assert errors == []


def _aggregations(dashboard: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """(tile title, filter, aggregation) of every time series filter."""
    found = []
    for tile in dashboard["mosaicLayout"]["tiles"]:
        for data_set in tile["widget"]["xyChart"]["dataSets"]:
            query = data_set["timeSeriesQuery"].get("timeSeriesFilter")
            if query is not None:
                found.append((tile["widget"]["title"], query["filter"], query.get("aggregation", {})))
    return found


def test_deploy_dashboard_aggregations_follow_the_api_rules(module: dict[str, Any], dashboard: dict[str, Any]) -> None:
    """A reducer needs an aligner and a period, grouping needs a reducer, each aligner fits its metric's kind."""
    kinds = {**BUILT_IN, **_log_metric_kinds(module)}
    checked = 0
    for title, filter_, aggregation in _aggregations(dashboard):
        (metric,) = re.findall(r'metric\.type="([^"]+)"', filter_)
        assert re.search(r'resource\.type="\w+"', filter_), title
        aligner = aggregation.get("perSeriesAligner", "ALIGN_NONE")
        if aggregation.get("crossSeriesReducer", "REDUCE_NONE") != "REDUCE_NONE":
            assert aligner != "ALIGN_NONE", title
            assert "alignmentPeriod" in aggregation, title
        if aggregation.get("groupByFields"):
            assert aggregation.get("crossSeriesReducer", "REDUCE_NONE") != "REDUCE_NONE", title
        kind, value = kinds[metric]
        assert ALIGNER_FITS[aligner](kind, value), f"{title}: {aligner} on a {kind} {value} metric"
        if value == "DISTRIBUTION":
            assert aggregation["crossSeriesReducer"].startswith("REDUCE_PERCENTILE_"), title
        checked += 1
    assert checked >= 8


def _log_metric_kinds(module: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """The module's log-based metrics for NAME with the link and the review, by metric type: (kind, value type)."""
    kinds = {}
    for (type_, _), body in module["resources"].items():
        if type_ != "google_logging_metric":
            continue
        names = [body["name"].replace("${var.name}", NAME)]
        if "each.key" in body["name"]:
            (fields,) = re.findall(r"local\.(\w+_count_fields)", body["for_each"])
            keys = module["locals"][fields]
            names = [body["name"].replace("${var.name}", NAME).replace("${each.key}", key) for key in keys]
        (descriptor,) = body["metric_descriptor"]
        for name in names:
            kinds[f"logging.googleapis.com/user/{name}"] = (descriptor["metric_kind"], descriptor["value_type"])
    return kinds


def test_deploy_dashboard_charts_only_log_based_metrics_the_module_creates(
    module: dict[str, Any], dashboard: dict[str, Any]
) -> None:
    """Every user metric named in a filter or a PromQL query is one of dashboard.tf's, and each of those is charted."""
    kinds = _log_metric_kinds(module)
    text = json.dumps(dashboard)
    in_filters = set(re.findall(r"logging\.googleapis\.com/user/[\w-]+", text))
    in_promql = set(re.findall(r"logging_googleapis_com:user_(\w+?)_sum\b", text))
    promql_names = {metric.rsplit("/", 1)[1].replace("-", "_"): metric for metric in kinds}
    assert in_filters <= set(kinds), in_filters - set(kinds)
    assert in_promql <= set(promql_names), in_promql - set(promql_names)
    # PromQL reads a sum only from a distribution; every metric the module creates appears somewhere.
    assert all(kinds[promql_names[name]][1] == "DISTRIBUTION" for name in in_promql)
    assert in_filters | {promql_names[name] for name in in_promql} == set(kinds)
    # outcomes, events, completed lag; the link's written and eight decisions; reviews published, five review counts
    assert len(kinds) == 3 + 9 + 1 + 5


def test_deploy_dashboard_metrics_read_the_summary_line_fields(module: dict[str, Any]) -> None:
    """Each metric extracts the summary-line field the logs carry: outcome and reason, events, completedLagS, counts."""
    resources = module["resources"]
    outcomes = resources["google_logging_metric", "outcomes"]
    assert outcomes["label_extractors"] == {
        "outcome": "EXTRACT(jsonPayload.outcome)",
        "reason": "EXTRACT(jsonPayload.reason)",
    }
    assert outcomes["filter"] == "${local.summary_logs}"
    services = 'service_name=("${var.name}" OR "${var.name}-link" OR "${var.name}-review")'
    assert services in module["locals"]["summary_logs"]
    assert resources["google_logging_metric", "events"]["value_extractor"] == "EXTRACT(jsonPayload.events)"
    lag = resources["google_logging_metric", "completed_lag"]
    assert lag["value_extractor"] == "EXTRACT(jsonPayload.completedLagS)"
    assert "jsonPayload.completedLagS:*" in lag["filter"]
    link = resources["google_logging_metric", "link_counts"]
    assert link["for_each"] == "${var.dashboard && var.link ? local.link_count_fields : {}}"
    assert link["value_extractor"] == "EXTRACT(jsonPayload.${each.value})"
    assert set(module["locals"]["link_count_fields"].values()) == {"written", *OUTCOMES}  # each count charted


def test_deploy_dashboard_review_metrics_read_the_link_and_the_review_summary_lines(module: dict[str, Any]) -> None:
    """Reviews published sum the link's reviews; decisions applied sum the review's own counts, from its lines only."""
    resources, local_values = module["resources"], module["locals"]
    published = resources["google_logging_metric", "reviews_published"]
    assert published["count"] == "${var.dashboard && var.review ? 1 : 0}"
    assert published["name"] == "${var.name}_review_published"
    assert published["filter"] == "${local.link_logs} AND jsonPayload.reviews>0"
    assert published["value_extractor"] == "EXTRACT(jsonPayload.reviews)"
    assert "reviews" in {field.name for field in dataclasses.fields(Counts)}  # the link's summary line carries it
    counts = resources["google_logging_metric", "review_counts"]
    assert counts["for_each"] == "${var.dashboard && var.review ? local.review_count_fields : {}}"
    assert counts["name"] == "${var.name}_review_${each.key}"
    assert counts["filter"] == "${local.review_logs} AND jsonPayload.${each.value}>0"
    assert counts["value_extractor"] == "EXTRACT(jsonPayload.${each.value})"
    fields = local_values["review_count_fields"]
    assert fields == {key: key for key in ("confirmed", "rejected", "unchanged", "linked", "unlinked")}
    assert set(fields.values()) == {field.name for field in dataclasses.fields(ReviewCounts)}  # each count charted
    # The link's lines carry linked and rejected too: the review's are read from NAME-review's lines alone.
    assert 'resource.labels.service_name="${var.name}-review" AND jsonPayload.outcome:*' in local_values["review_logs"]
    assert 'resource.labels.service_name="${var.name}-link" AND' in local_values["link_logs"]
    for body in (published, counts):
        (descriptor,) = body["metric_descriptor"]
        assert (descriptor["metric_kind"], descriptor["value_type"]) == ("DELTA", "DISTRIBUTION")
    depends = resources["google_monitoring_dashboard", "matchrelay"]["depends_on"]
    assert {"${google_logging_metric.reviews_published}", "${google_logging_metric.review_counts}"} <= set(depends)


def test_deploy_dashboard_review_tiles_chart_reviews_published_and_each_decision_count(
    dashboard: dict[str, Any],
) -> None:
    """The review's two tiles sum reviews published, and confirmed, rejected, unchanged, linked and unlinked."""
    titles = {tile["widget"]["title"]: tile for tile in dashboard["mosaicLayout"]["tiles"]}
    published = titles["Reviews published per hour (link.review events, each a source left for people)"]
    applied = titles["Review decisions applied per hour, by result"]
    queries = [
        [data_set["timeSeriesQuery"]["prometheusQuery"] for data_set in tile["widget"]["xyChart"]["dataSets"]]
        for tile in (published, applied)
    ]
    prefix = "logging_googleapis_com:user_mr_prod_review_"
    assert [re.findall(rf"{prefix}(\w+)_sum", query) for query in queries[0]] == [["published"]]
    assert [re.findall(rf"{prefix}(\w+)_sum", query) for query in queries[1]] == [
        ["confirmed"],
        ["rejected"],
        ["unchanged"],
        ["linked"],
        ["unlinked"],
    ]
    assert all("[1h]" in query for query in queries[0] + queries[1])


def test_deploy_dashboard_tiles_fit_the_grid_without_overlapping(dashboard: dict[str, Any]) -> None:
    """Every tile lies inside the 48 columns, and no two tiles share a cell."""
    layout = dashboard["mosaicLayout"]
    cells: dict[tuple[int, int], str] = {}
    for tile in layout["tiles"]:
        x, y = tile.get("xPos", 0), tile.get("yPos", 0)
        assert x + tile["width"] <= layout["columns"], tile["widget"]["title"]
        for cell in ((i, j) for i in range(x, x + tile["width"]) for j in range(y, y + tile["height"])):
            assert cell not in cells, (tile["widget"]["title"], cells.get(cell))
            cells[cell] = tile["widget"]["title"]


# A broken dashboard the checks above must refuse: (what is changed, how).
BREAKAGES = [
    ("an unknown aligner", lambda d: _first_aggregation(d).update(perSeriesAligner="ALIGN_AVERAGE")),
    ("a misspelt field", lambda d: d["mosaicLayout"]["tiles"][0]["widget"].update(xychart={})),
    ("a period without a unit", lambda d: _first_aggregation(d).update(alignmentPeriod="3600")),
    ("too many columns", lambda d: d["mosaicLayout"].update(columns=49)),
    (
        "two queries in one",
        lambda d: d["mosaicLayout"]["tiles"][1]["widget"]["xyChart"]["dataSets"][0]["timeSeriesQuery"].update(
            timeSeriesQueryLanguage="fetch x"
        ),
    ),
]


def _first_aggregation(dashboard: dict[str, Any]) -> dict[str, Any]:
    aggregation: dict[str, Any] = dashboard["mosaicLayout"]["tiles"][0]["widget"]["xyChart"]["dataSets"][0][
        "timeSeriesQuery"
    ]["timeSeriesFilter"]["aggregation"]
    return aggregation


@pytest.mark.parametrize(("what", "change"), BREAKAGES, ids=[what for what, _ in BREAKAGES])
def test_deploy_dashboard_schema_refuses_a_broken_dashboard(dashboard: dict[str, Any], what: str, change: Any) -> None:
    """The schema is strict enough to catch a wrong enum value, a misspelt field, a bad duration or a layout error."""
    broken = json.loads(json.dumps(dashboard))
    change(broken)
    assert list(jsonschema.Draft202012Validator(SCHEMA).iter_errors(broken)), what

# The dashboard (dashboard = true): one Cloud Monitoring dashboard, "NAME", built from the log-based metrics below
# and from Pub/Sub's and Cloud Run's own metrics. docs/operating.md, "The dashboard", says what each panel answers.
#
# The metrics read the summary line each invocation ends with (its jsonPayload): the relay's outcome, reason,
# events and completedLagS, the link's outcome and counts (reviews: the link.review events it published), and the
# review's outcome and counts. A sum of a field (events published, links written, decisions) is a distribution metric
# of that field, charted with PromQL, which reads a distribution's sum as METRIC_sum.

locals {
  dashboard = var.dashboard ? 1 : 0
  # Every function's summary lines: the relay's, the link's and the review's.
  summary_logs = "resource.type=\"cloud_run_revision\" AND resource.labels.service_name=(\"${var.name}\" OR \"${var.name}-link\" OR \"${var.name}-review\") AND jsonPayload.outcome:*"
  link_logs    = "resource.type=\"cloud_run_revision\" AND resource.labels.service_name=\"${var.name}-link\" AND jsonPayload.outcome:*"
  # The review's own: its counts share names with the link's (rejected, linked), so each is read from its function.
  review_logs = "resource.type=\"cloud_run_revision\" AND resource.labels.service_name=\"${var.name}-review\" AND jsonPayload.outcome:*"

  # The link's counts: metric NAME_link_KEY sums the summary line's field VALUE.
  link_count_fields = {
    written         = "written"
    linked          = "linked"
    below_threshold = "belowThreshold"
    conflict        = "conflict"
    ambiguous       = "ambiguous"
    rejected        = "rejected"
    unlinkable      = "unlinkable"
    source_missing  = "sourceMissing"
    target_missing  = "targetMissing"
  }

  # The review's counts: metric NAME_review_KEY sums the review's summary line's field VALUE (pairs newly confirmed,
  # newly rejected, already so; links written, links put back).
  review_count_fields = {
    confirmed = "confirmed"
    rejected  = "rejected"
    unchanged = "unchanged"
    linked    = "linked"
    unlinked  = "unlinked"
  }

  # PromQL names a metric by its type with the first / as : and every other / . or - as _.
  promql_user_prefix = "logging_googleapis_com:user_${replace(var.name, "-", "_")}"

  dashboard_values = {
    outcomes_metric            = "logging.googleapis.com/user/${var.name}_outcomes"
    completed_lag_metric       = "logging.googleapis.com/user/${var.name}_completed_lag"
    events_promql              = "${local.promql_user_prefix}_events"
    link_promql                = "${local.promql_user_prefix}_link_"
    review_promql              = "${local.promql_user_prefix}_review_"
    trigger_subscription_regex = local.trigger_subscription_regex
    dead_letter_regex          = local.dead_letter_regex
    services_regex             = join("|", concat([var.name], var.link ? ["${var.name}-link"] : [], var.review ? ["${var.name}-review"] : []))
    backlog_alert_s            = var.trigger_backlog_alert_s
  }
  # The link's tiles only with the link, the review's only with the review. jsondecode gives tuples, and a
  # conditional's two results must have one type, so they are sliced to none rather than swapped for [].
  link_tiles   = jsondecode(templatefile("${path.module}/dashboard/link.json.tftpl", local.dashboard_values))
  review_tiles = jsondecode(templatefile("${path.module}/dashboard/review.json.tftpl", local.dashboard_values))
  dashboard_tiles = concat(
    jsondecode(templatefile("${path.module}/dashboard/relay.json.tftpl", local.dashboard_values)),
    slice(local.link_tiles, 0, var.link ? length(local.link_tiles) : 0),
    slice(local.review_tiles, 0, var.review ? length(local.review_tiles) : 0),
  )
}

resource "google_logging_metric" "outcomes" {
  count = local.dashboard

  project = var.project
  name    = "${var.name}_outcomes"
  filter  = local.summary_logs

  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = "INT64"
    unit         = "1"
    display_name = "${var.name}: invocations by outcome and reason"
    labels {
      key         = "outcome"
      value_type  = "STRING"
      description = "The relay's completed, continued, failed, handed_back or swept; the link's linked, refused, ignored or handed_back; the review's applied, refused or handed_back."
    }
    labels {
      key         = "reason"
      value_type  = "STRING"
      description = "The summary line's reason (empty when none)."
    }
  }

  label_extractors = {
    outcome = "EXTRACT(jsonPayload.outcome)"
    reason  = "EXTRACT(jsonPayload.reason)"
  }

  depends_on = [google_project_service.apis]
}

resource "google_logging_metric" "events" {
  count = local.dashboard

  project         = var.project
  name            = "${var.name}_events"
  filter          = "${local.function_logs} AND jsonPayload.outcome:* AND jsonPayload.events>0"
  value_extractor = "EXTRACT(jsonPayload.events)"

  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = "DISTRIBUTION"
    unit         = "1"
    display_name = "${var.name}: events published per invocation"
  }

  bucket_options {
    exponential_buckets {
      num_finite_buckets = 32
      growth_factor      = 2
      scale              = 1
    }
  }

  depends_on = [google_project_service.apis]
}

# Only the invocation that confirmed a run's run.completed logs completedLagS.
resource "google_logging_metric" "completed_lag" {
  count = local.dashboard

  project         = var.project
  name            = "${var.name}_completed_lag"
  filter          = "${local.function_logs} AND jsonPayload.outcome:* AND jsonPayload.completedLagS:*"
  value_extractor = "EXTRACT(jsonPayload.completedLagS)"

  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = "DISTRIBUTION"
    unit         = "s"
    display_name = "${var.name}: seconds from a run's statusTime to its run.completed confirmed"
  }

  bucket_options {
    exponential_buckets {
      num_finite_buckets = 24
      growth_factor      = 2
      scale              = 1
    }
  }

  depends_on = [google_project_service.apis]
}

resource "google_logging_metric" "link_counts" {
  for_each = var.dashboard && var.link ? local.link_count_fields : {}

  project         = var.project
  name            = "${var.name}_link_${each.key}"
  filter          = "${local.link_logs} AND jsonPayload.${each.value}>0"
  value_extractor = "EXTRACT(jsonPayload.${each.value})"

  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = "DISTRIBUTION"
    unit         = "1"
    display_name = "${var.name}: link ${each.value} per invocation"
  }

  bucket_options {
    exponential_buckets {
      num_finite_buckets = 32
      growth_factor      = 2
      scale              = 1
    }
  }

  depends_on = [google_project_service.apis]
}

# The link.review events the link published: the link's summary line's reviews.
resource "google_logging_metric" "reviews_published" {
  count = var.dashboard && var.review ? 1 : 0

  project         = var.project
  name            = "${var.name}_review_published"
  filter          = "${local.link_logs} AND jsonPayload.reviews>0"
  value_extractor = "EXTRACT(jsonPayload.reviews)"

  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = "DISTRIBUTION"
    unit         = "1"
    display_name = "${var.name}: link.review events published per link invocation"
  }

  bucket_options {
    exponential_buckets {
      num_finite_buckets = 32
      growth_factor      = 2
      scale              = 1
    }
  }

  depends_on = [google_project_service.apis]
}

resource "google_logging_metric" "review_counts" {
  for_each = var.dashboard && var.review ? local.review_count_fields : {}

  project         = var.project
  name            = "${var.name}_review_${each.key}"
  filter          = "${local.review_logs} AND jsonPayload.${each.value}>0"
  value_extractor = "EXTRACT(jsonPayload.${each.value})"

  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = "DISTRIBUTION"
    unit         = "1"
    display_name = "${var.name}: review ${each.value} per invocation"
  }

  bucket_options {
    exponential_buckets {
      num_finite_buckets = 32
      growth_factor      = 2
      scale              = 1
    }
  }

  depends_on = [google_project_service.apis]
}

resource "google_monitoring_dashboard" "matchrelay" {
  count = local.dashboard

  project = var.project
  dashboard_json = jsonencode({
    displayName  = var.name
    mosaicLayout = { columns = 48, tiles = local.dashboard_tiles }
  })

  # The log-based metrics exist before the dashboard charts them.
  depends_on = [
    google_logging_metric.outcomes,
    google_logging_metric.events,
    google_logging_metric.completed_lag,
    google_logging_metric.link_counts,
    google_logging_metric.reviews_published,
    google_logging_metric.review_counts,
  ]
}

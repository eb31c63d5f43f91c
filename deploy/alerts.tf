# Alert policies on what needs a person (docs/operating.md, "Alerting", says what to do when each fires):
# a trigger was dead-lettered, a run.failed event was published (by reason), or triggers wait too long.

locals {
  alerts = var.alerts ? 1 : 0
  # Subscription metrics carry only project_id and subscription_id, not the topic, so the trigger's subscription is
  # selected by its id: with push, the module's own NAME-trigger; with Eventarc, the one Eventarc names
  # eventarc-REGION-TRIGGER-sub-NNN, by that prefix. The trigger's name (NAME-xxxxxx, with a random suffix) keeps
  # other functions' subscriptions out, even ones whose names start with NAME, and the prefix follows the trigger when
  # an apply recreates it. The dashboard selects it the same way.
  trigger_subscription_regex = (var.trigger == "push"
    ? google_pubsub_subscription.trigger[0].name
    : "eventarc-${var.region}-${basename(google_cloudfunctions2_function.matchrelay.event_trigger[0].trigger)}-sub-.*"
  )
  # The relay's dead letters, and the link's and the review's when they are deployed.
  dead_letter_subscriptions = concat(
    [google_pubsub_subscription.dead_letter.name],
    google_pubsub_subscription.link_dead_letter[*].name,
    google_pubsub_subscription.review_dead_letter[*].name,
  )
  dead_letter_regex = join("|", local.dead_letter_subscriptions)
  function_logs     = "resource.type=\"cloud_run_revision\" AND resource.labels.service_name=\"${var.name}\""
}

# One count per run.failed event, labelled with its reason: the summary line of each invocation that published one
# (severity WARNING, jsonPayload.outcome "failed", jsonPayload.reason the reason).
resource "google_logging_metric" "run_failed" {
  count = local.alerts

  project = var.project
  name    = "${var.name}_run_failed"
  filter  = "${local.function_logs} AND jsonPayload.outcome=\"failed\""

  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = "INT64"
    unit         = "1"
    display_name = "${var.name}: run.failed events"
    labels {
      key         = "reason"
      value_type  = "STRING"
      description = "The run.failed reason: run_failed, auth_failed, access_denied, run_not_found, invalid_request, invalid_response, wait_timeout, invalid_trigger."
    }
  }

  label_extractors = {
    reason = "EXTRACT(jsonPayload.reason)"
  }

  depends_on = [google_project_service.apis]
}

resource "google_monitoring_alert_policy" "dead_letters" {
  count = local.alerts

  project               = var.project
  display_name          = "${var.name}: trigger messages dead-lettered"
  combiner              = "OR"
  notification_channels = var.notification_channels
  user_labels           = var.labels

  conditions {
    display_name = "messages on ${join(" or ", local.dead_letter_subscriptions)}"
    condition_threshold {
      filter          = "resource.type = \"pubsub_subscription\" AND resource.labels.subscription_id = monitoring.regex.full_match(\"${local.dead_letter_regex}\") AND metric.type = \"pubsub.googleapis.com/subscription/num_undelivered_messages\""
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "0s"
      aggregations {
        alignment_period   = "300s"
        per_series_aligner = "ALIGN_MAX"
      }
    }
  }

  documentation {
    mime_type = "text/markdown"
    content   = "A message failed ${var.max_delivery_attempts} deliveries and moved to a dead-letter subscription (${join(", ", local.dead_letter_subscriptions)}): a trigger message, with the link a run.completed event, with the review a message of decisions; nothing retries it. Find the cause by its messageId, fix it, then replay and ack it: docs/operating.md, \"Draining the dead-letter subscription\"."
  }

  depends_on = [google_project_service.apis]
}

resource "google_monitoring_alert_policy" "run_failed" {
  count = local.alerts

  project               = var.project
  display_name          = "${var.name}: run.failed events"
  combiner              = "OR"
  notification_channels = var.notification_channels
  user_labels           = var.labels

  conditions {
    display_name = "run.failed events, by reason"
    condition_threshold {
      filter          = "resource.type = \"cloud_run_revision\" AND metric.type = \"logging.googleapis.com/user/${google_logging_metric.run_failed[0].name}\""
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "0s"
      # One time series, and so one incident, per reason.
      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_DELTA"
        cross_series_reducer = "REDUCE_SUM"
        group_by_fields      = ["metric.label.reason"]
      }
    }
  }

  alert_strategy {
    auto_close = "86400s"
  }

  documentation {
    mime_type = "text/markdown"
    content   = "${var.name} published run.failed events with reason $${metric.label.reason}. What to do for each reason: docs/operating.md, \"What each outcome looks like\" and \"Alerting\". Logs: ${local.function_logs} AND jsonPayload.outcome=\"failed\""
  }
}

resource "google_monitoring_alert_policy" "trigger_backlog" {
  count = local.alerts

  project               = var.project
  display_name          = "${var.name}: trigger backlog older than ${var.trigger_backlog_alert_s} s"
  combiner              = "OR"
  notification_channels = var.notification_channels
  user_labels           = var.labels

  conditions {
    display_name = "oldest unacknowledged trigger message"
    condition_threshold {
      filter          = "resource.type = \"pubsub_subscription\" AND resource.labels.subscription_id = monitoring.regex.full_match(\"${local.trigger_subscription_regex}\") AND metric.type = \"pubsub.googleapis.com/subscription/oldest_unacked_message_age\""
      comparison      = "COMPARISON_GT"
      threshold_value = var.trigger_backlog_alert_s
      duration        = "600s"
      aggregations {
        alignment_period   = "300s"
        per_series_aligner = "ALIGN_MAX"
      }
    }
  }

  documentation {
    mime_type = "text/markdown"
    content   = "A trigger message has waited more than ${var.trigger_backlog_alert_s} s on the trigger subscription of ${var.name}: a run is taking that long in CDF, or triggers are not being worked off (the function fails to start, max_instances is reached, CDF or Pub/Sub is failing). docs/operating.md, \"Alerting\"."
  }

  depends_on = [google_project_service.apis]
}

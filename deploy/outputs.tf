locals {
  # trigger = "eventarc" only. At the 10 s Eventarc starts with, Pub/Sub would push a message again while its first
  # delivery still polls; 600 s, the most Pub/Sub allows, outlasts an invocation (timeout_s is at most 540).
  eventarc_subscription_commands = var.trigger == "eventarc" ? (<<-EOT
      SUBSCRIPTION="$(gcloud eventarc triggers describe ${basename(google_cloudfunctions2_function.matchrelay.event_trigger[0].trigger)} --project=${var.project} --location=${var.region} --format='value(transport.pubsub.subscription)')"
      gcloud pubsub subscriptions add-iam-policy-binding "$SUBSCRIPTION" --project=${var.project} --member=${local.pubsub_service_agent} --role=roles/pubsub.subscriber
      gcloud pubsub subscriptions update "$SUBSCRIPTION" --project=${var.project} --ack-deadline=600 --dead-letter-topic=${google_pubsub_topic.dead_letter.id} --max-delivery-attempts=${var.max_delivery_attempts}
    EOT
  ) : null
}

output "function_name" {
  description = "Name of the Cloud Run function."
  value       = google_cloudfunctions2_function.matchrelay.name
}

output "function_uri" {
  description = "URI of the function's Cloud Run service (internal ingress only)."
  value       = google_cloudfunctions2_function.matchrelay.service_config[0].uri
}

output "trigger_topic_id" {
  description = "Topic whose messages ({\"pipelineId\": N, \"runId\": M}) start the function."
  value       = google_pubsub_topic.trigger.id
}

output "events_topic_id" {
  description = "Topic the function publishes its events to (RELAY_TOPIC)."
  value       = google_pubsub_topic.events.id
}

output "errors_topic_id" {
  description = "Topic the function publishes run.failed events to (RELAY_ERROR_TOPIC)."
  value       = google_pubsub_topic.errors.id
}

output "dead_letter_topic_id" {
  description = "Topic trigger messages go to after max_delivery_attempts failed deliveries."
  value       = google_pubsub_topic.dead_letter.id
}

output "dead_letter_subscription_id" {
  description = "Subscription keeping the dead-lettered trigger messages."
  value       = google_pubsub_subscription.dead_letter.id
}

output "service_account_email" {
  description = "Service account the function runs as and Eventarc invokes it with."
  value       = google_service_account.function.email
}

output "idp_client_secret_id" {
  description = "Secret Manager secret holding the client secret (IDP_CLIENT_SECRET)."
  value       = local.secret_id
}

output "trigger_subscription_id" {
  description = "The push subscription delivering the trigger topic's messages to the function (trigger = \"push\"; null with Eventarc, whose subscription Eventarc names)."
  value       = one(google_pubsub_subscription.trigger[*].id)
}

output "invoker_service_account_email" {
  description = "Service account whose OIDC token the push subscriptions send; it may only invoke the functions (null when nothing is pushed)."
  value       = one(google_service_account.invoker[*].email)
}

output "eventarc_trigger" {
  description = "Eventarc trigger that delivers the trigger topic's messages to the function (trigger = \"eventarc\"; null with push)."
  value       = one(google_cloudfunctions2_function.matchrelay.event_trigger[*].trigger)
}

output "eventarc_subscription_commands" {
  description = "trigger = \"eventarc\": shell commands that set the subscription Eventarc created for the trigger (the provider cannot): a 600 s ack deadline, which is also how long Pub/Sub waits for a push, and the dead-letter policy. Run them after each apply that recreates the trigger. Null with push, whose subscription the module sets itself."
  value       = local.eventarc_subscription_commands
}

output "dead_letter_policy_commands" {
  description = "The same as eventarc_subscription_commands (its former name, kept for scripts that use it)."
  value       = local.eventarc_subscription_commands
}

output "sweep_jobs" {
  description = "Cloud Scheduler jobs publishing sweep triggers, by name: their schedule (UTC) and window."
  value       = { for name, job in google_cloud_scheduler_job.sweep : name => { schedule = job.schedule, window_s = local.sweeps[name].window_s, pipeline_id = local.sweeps[name].pipeline_id } }
}

output "alert_policies" {
  description = "Names of the Cloud Monitoring alert policies, by what they watch (null when alerts is false)."
  value = {
    dead_letters    = one(google_monitoring_alert_policy.dead_letters[*].name)
    run_failed      = one(google_monitoring_alert_policy.run_failed[*].name)
    trigger_backlog = one(google_monitoring_alert_policy.trigger_backlog[*].name)
  }
}

output "link" {
  description = "The link's function, service account, push subscription, dead-letter subscription and LINK_TOPIC (null when link is false)."
  value = var.link ? {
    function_name               = google_cloudfunctions2_function.link[0].name
    function_uri                = google_cloudfunctions2_function.link[0].service_config[0].uri
    service_account_email       = google_service_account.link[0].email
    idp_client_secret_id        = local.link_secret_id
    subscription_id             = google_pubsub_subscription.link[0].id
    dead_letter_subscription_id = google_pubsub_subscription.link_dead_letter[0].id
    topic_id                    = local.link_topic
  } : null
}

output "review" {
  description = "The review's function, service account, decisions topic (publish decisions here, with the ordering key {project}/{pipelineId}), push subscription, dead-letter subscription and REVIEW_TOPIC (null when review is false)."
  value = var.review ? {
    function_name               = google_cloudfunctions2_function.review[0].name
    function_uri                = google_cloudfunctions2_function.review[0].service_config[0].uri
    service_account_email       = google_service_account.review[0].email
    idp_client_secret_id        = local.review_secret_id
    decisions_topic_id          = google_pubsub_topic.decisions[0].id
    subscription_id             = google_pubsub_subscription.review[0].id
    dead_letter_subscription_id = google_pubsub_subscription.review_dead_letter[0].id
    topic_id                    = local.review_topic
  } : null
}

output "dashboard_id" {
  description = "The Cloud Monitoring dashboard (projects/NUMBER/dashboards/ID; null when dashboard is false)."
  value       = one(google_monitoring_dashboard.matchrelay[*].id)
}

output "bigquery" {
  description = "The BigQuery table the events topic is written to and the view of its matches, as PROJECT.DATASET.TABLE (null when bigquery is false)."
  value = var.bigquery ? {
    subscription_id = google_pubsub_subscription.bigquery[0].id
    table           = local.bigquery_table
    matches_view    = "${var.project}.${google_bigquery_dataset.events[0].dataset_id}.${google_bigquery_table.matches[0].table_id}"
  } : null
}

locals {
  # At the 10 s Eventarc starts with, Pub/Sub would push a message again while its first delivery still polls; 600 s,
  # the most Pub/Sub allows, outlasts an invocation (timeout_s is at most 540).
  eventarc_subscription_commands = <<-EOT
      SUBSCRIPTION="$(gcloud eventarc triggers describe ${basename(google_cloudfunctions2_function.matchrelay.event_trigger[0].trigger)} --project=${var.project} --location=${var.region} --format='value(transport.pubsub.subscription)')"
      gcloud pubsub subscriptions add-iam-policy-binding "$SUBSCRIPTION" --project=${var.project} --member=${local.pubsub_service_agent} --role=roles/pubsub.subscriber
      gcloud pubsub subscriptions update "$SUBSCRIPTION" --project=${var.project} --ack-deadline=600 --dead-letter-topic=${google_pubsub_topic.dead_letter.id} --max-delivery-attempts=${var.max_delivery_attempts}
    EOT
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

output "eventarc_trigger" {
  description = "Eventarc trigger that delivers the trigger topic's messages to the function."
  value       = google_cloudfunctions2_function.matchrelay.event_trigger[0].trigger
}

output "eventarc_subscription_commands" {
  description = "Shell commands that set the subscription Eventarc created for the trigger (the provider cannot): a 600 s ack deadline, which is also how long Pub/Sub waits for a push, and the dead-letter policy. Run them after each apply that recreates the trigger."
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

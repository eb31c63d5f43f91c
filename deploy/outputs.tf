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

output "dead_letter_policy_commands" {
  description = "Shell commands that put the dead-letter policy on the subscription Eventarc created for the trigger (the provider cannot); run them after each apply that recreates the trigger."
  value       = <<-EOT
    SUBSCRIPTION="$(gcloud eventarc triggers describe ${basename(google_cloudfunctions2_function.matchrelay.event_trigger[0].trigger)} --project=${var.project} --location=${var.region} --format='value(transport.pubsub.subscription)')"
    gcloud pubsub subscriptions add-iam-policy-binding "$SUBSCRIPTION" --project=${var.project} --member=${local.pubsub_service_agent} --role=roles/pubsub.subscriber
    gcloud pubsub subscriptions update "$SUBSCRIPTION" --project=${var.project} --dead-letter-topic=${google_pubsub_topic.dead_letter.id} --max-delivery-attempts=${var.max_delivery_attempts}
  EOT
}

# Push delivery, owned by this module: the trigger topic's push subscription (trigger = "push"), the link's
# (link.tf) and the review's (review.tf) push to their function's URL with an OIDC token of the invoker service
# account, which may invoke the functions and do nothing else. Terraform owns every setting of these subscriptions,
# so nothing is left to set by hand after an apply.

locals {
  push = var.trigger == "push" ? 1 : 0
  # The invoker exists while any push subscription does.
  invoker    = var.trigger == "push" || var.link || var.review ? 1 : 0
  invoker_sa = local.invoker == 1 ? "serviceAccount:${google_service_account.invoker[0].email}" : null

  # The ack deadline is also how long Pub/Sub waits for a push request: 600 s (the most) outlasts an invocation
  # (timeout_s is at most 540). Failed deliveries come back after Pub/Sub's backoff, from 10 s up to 600 s.
  push_ack_deadline_s = 600
  push_min_backoff    = "10s"
  push_max_backoff    = "600s"
  # Kept as long as Eventarc keeps a message, and as long as run_max_wait_s can be.
  push_retention = "86400s"
}

# Account ids allow 30 characters: the name is cut to fit (two deployments whose names share the first 22
# characters would share this account; give them names that differ earlier).
resource "google_service_account" "invoker" {
  count = local.invoker

  project      = var.project
  account_id   = "${substr(var.name, 0, 22)}-invoker"
  display_name = "matchrelay push invoker ${var.name}"
  description  = "Pub/Sub pushes to the ${var.name} functions with this account's OIDC token; it may only invoke them."
}

# Pub/Sub's service agent mints the OIDC token of each push request as the invoker.
resource "google_service_account_iam_member" "invoker_token_creator" {
  count = local.invoker

  service_account_id = google_service_account.invoker[0].name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = local.pubsub_service_agent
}

resource "google_cloud_run_v2_service_iam_member" "push_invoker" {
  count = local.push

  project  = var.project
  location = var.region
  name     = google_cloudfunctions2_function.matchrelay.name
  role     = "roles/run.invoker"
  member   = local.invoker_sa
}

resource "google_pubsub_subscription" "trigger" {
  count = local.push

  project                    = var.project
  name                       = "${var.name}-trigger"
  topic                      = google_pubsub_topic.trigger.id
  labels                     = var.labels
  ack_deadline_seconds       = local.push_ack_deadline_s
  message_retention_duration = local.push_retention

  push_config {
    push_endpoint = google_cloudfunctions2_function.matchrelay.service_config[0].uri
    oidc_token {
      service_account_email = google_service_account.invoker[0].email
      audience              = google_cloudfunctions2_function.matchrelay.service_config[0].uri
    }
  }

  retry_policy {
    minimum_backoff = local.push_min_backoff
    maximum_backoff = local.push_max_backoff
  }

  dead_letter_policy {
    dead_letter_topic     = google_pubsub_topic.dead_letter.id
    max_delivery_attempts = var.max_delivery_attempts
  }

  expiration_policy {
    ttl = "" # never expires, however long no trigger comes
  }

  # No push before the invoker may invoke and Pub/Sub may mint its tokens; no dead letter before it may publish them.
  depends_on = [
    google_cloud_run_v2_service_iam_member.push_invoker,
    google_service_account_iam_member.invoker_token_creator,
    google_pubsub_topic_iam_member.dead_letter_publisher,
  ]
}

# The Pub/Sub service agent acks what it moves to the dead-letter topic.
resource "google_pubsub_subscription_iam_member" "trigger_dead_letter_subscriber" {
  count = local.push

  project      = var.project
  subscription = google_pubsub_subscription.trigger[0].name
  role         = "roles/pubsub.subscriber"
  member       = local.pubsub_service_agent
}

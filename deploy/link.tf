# The link (link = true): the function NAME-link, entry point on_run_completed, built from the same source as the
# relay. Its own push subscription on the events topic hands it only run.completed events; it applies each run's
# confident matches to CDF as asset links and publishes run.linked to LINK_TOPIC, and what it leaves for people as
# link.review events to REVIEW_TOPIC (review.tf deploys the function that applies their decisions). It writes to
# CDF, so it runs with its own service account and its own CDF client (whose secret only that account may read); the
# relay keeps its read-only client.

locals {
  link                 = var.link ? 1 : 0
  link_sa              = var.link ? "serviceAccount:${google_service_account.link[0].email}" : null
  link_topic           = coalesce(var.link_topic, google_pubsub_topic.events.id)
  create_link_secret   = var.link && var.link_idp_client_secret_id == null
  link_secret_id       = local.create_link_secret ? google_secret_manager_secret.link_idp_client_secret[0].secret_id : var.link_idp_client_secret_id
  link_completed_types = "attributes.ce-type = \"com.cognite.entitymatching.run.completed\""

  link_environment = merge(var.extra_environment_variables, {
    for key, value in merge(local.shared_environment, {
      IDP_CLIENT_ID    = var.link_idp_client_id
      LINK_MIN_SCORE   = tostring(var.link_min_score)
      LINK_OVERWRITE   = tostring(var.link_overwrite)
      LINK_TRUST_RULES = tostring(var.link_trust_rules)
      LINK_CONCURRENCY = tostring(var.link_concurrency)
      # Unset means every pipeline.
      LINK_PIPELINES    = length(var.link_pipelines) > 0 ? join(",", [for id in var.link_pipelines : format("%d", id)]) : null
      LINK_DRY_RUN      = tostring(var.link_dry_run)
      LINK_TOPIC        = local.link_topic
      REVIEW_MIN_SCORE  = tostring(var.review_min_score)
      REVIEW_MAX_EVENTS = tostring(var.review_max_events)
      REVIEW_TOPIC      = local.review_topic
      OTEL_SERVICE_NAME = var.tracing ? "${var.name}-link" : null
      THREADS           = tostring(var.link_instance_concurrency)
    }) : key => value if value != null
  })
}

resource "google_service_account" "link" {
  count = local.link

  project      = var.project
  account_id   = "${substr(var.name, 0, 25)}-link" # cut to the 30 characters an account id allows
  display_name = "matchrelay link ${var.name}"
}

resource "google_pubsub_topic_iam_member" "link_publisher" {
  count = local.link

  topic  = local.link_topic # projects/P/topics/T: the project is the topic's own
  role   = "roles/pubsub.publisher"
  member = local.link_sa
}

# link.review events go to REVIEW_TOPIC: a grant of its own when review_topic names another topic than LINK_TOPIC.
# Decided from the variables alone, which Terraform knows when it plans the count.
resource "google_pubsub_topic_iam_member" "link_review_publisher" {
  count = var.link && var.review_topic != null && var.review_topic != var.link_topic ? 1 : 0

  topic  = var.review_topic
  role   = "roles/pubsub.publisher"
  member = local.link_sa
}

# The link's client secret: the link's account alone may read it.

resource "google_secret_manager_secret" "link_idp_client_secret" {
  count = local.create_link_secret ? 1 : 0

  project   = var.project
  secret_id = "${var.name}-link-idp-client-secret"
  labels    = var.labels

  replication {
    auto {}
  }

  depends_on = [google_project_service.apis]
}

resource "google_secret_manager_secret_version" "link_idp_client_secret" {
  count = local.create_link_secret ? 1 : 0

  secret      = google_secret_manager_secret.link_idp_client_secret[0].id
  secret_data = var.link_idp_client_secret

  lifecycle {
    precondition {
      condition     = var.link_idp_client_secret != null
      error_message = "Set link_idp_client_secret, or link_idp_client_secret_id to use an existing secret."
    }
  }
}

resource "google_secret_manager_secret_iam_member" "link_idp_client_secret_accessor" {
  count = local.link

  project   = var.project
  secret_id = local.link_secret_id
  role      = "roles/secretmanager.secretAccessor"
  member    = local.link_sa
}

# The link's dead letters: run.completed events it failed max_delivery_attempts times, kept apart from the
# relay's trigger messages since they are replayed differently (python main.py link, or publish them again).

resource "google_pubsub_topic" "link_dead_letter" {
  count = local.link

  project      = var.project
  name         = "${var.name}-link-dead-letter"
  labels       = var.labels
  kms_key_name = var.kms_key_name
  depends_on   = [google_project_service.apis]
}

resource "google_pubsub_subscription" "link_dead_letter" {
  count = local.link

  project                    = var.project
  name                       = "${var.name}-link-dead-letter"
  topic                      = google_pubsub_topic.link_dead_letter[0].id
  labels                     = var.labels
  message_retention_duration = var.dead_letter_retention
  ack_deadline_seconds       = 60

  expiration_policy {
    ttl = "" # never expires
  }
}

resource "google_pubsub_topic_iam_member" "link_dead_letter_publisher" {
  count = local.link

  project = var.project
  topic   = google_pubsub_topic.link_dead_letter[0].name
  role    = "roles/pubsub.publisher"
  member  = local.pubsub_service_agent
}

# The function.

resource "google_cloudfunctions2_function" "link" {
  count = local.link

  project     = var.project
  name        = "${var.name}-link"
  location    = var.region
  description = "Applies the matches of each completed entity-matching run to CDF as asset links."
  labels      = var.labels

  build_config {
    runtime     = var.runtime
    entry_point = "on_run_completed"

    source {
      storage_source {
        bucket = google_storage_bucket.source.name
        object = google_storage_bucket_object.source.name
      }
    }
  }

  service_config {
    available_memory                 = var.memory
    available_cpu                    = "1"
    timeout_seconds                  = var.timeout_s
    max_instance_count               = var.link_max_instances
    min_instance_count               = 0
    max_instance_request_concurrency = var.link_instance_concurrency
    ingress_settings                 = "ALLOW_INTERNAL_ONLY"
    all_traffic_on_latest_revision   = true
    service_account_email            = google_service_account.link[0].email
    environment_variables            = local.link_environment

    secret_environment_variables {
      key        = "IDP_CLIENT_SECRET"
      project_id = var.project
      secret     = local.link_secret_id
      version    = "latest"
    }
  }

  lifecycle {
    precondition {
      condition     = var.link_idp_client_id != null
      error_message = "Set link_idp_client_id: the link writes to CDF with a client of its own."
    }
    precondition {
      condition     = var.link_idp_client_secret == null || var.link_idp_client_secret_id == null
      error_message = "Set link_idp_client_secret or link_idp_client_secret_id, not both."
    }
  }

  depends_on = [
    google_project_service.apis,
    google_secret_manager_secret_iam_member.link_idp_client_secret_accessor,
    google_secret_manager_secret_version.link_idp_client_secret,
  ]
}

resource "google_cloud_run_v2_service_iam_member" "link_invoker" {
  count = local.link

  project  = var.project
  location = var.region
  name     = google_cloudfunctions2_function.link[0].name
  role     = "roles/run.invoker"
  member   = local.invoker_sa
}

# Only run.completed reaches the link; Pub/Sub acks every other event of the topic for it.
resource "google_pubsub_subscription" "link" {
  count = local.link

  project                    = var.project
  name                       = "${var.name}-link"
  topic                      = google_pubsub_topic.events.id
  labels                     = var.labels
  filter                     = local.link_completed_types
  ack_deadline_seconds       = local.push_ack_deadline_s
  message_retention_duration = local.push_retention

  push_config {
    push_endpoint = google_cloudfunctions2_function.link[0].service_config[0].uri
    oidc_token {
      service_account_email = google_service_account.invoker[0].email
      audience              = google_cloudfunctions2_function.link[0].service_config[0].uri
    }
  }

  retry_policy {
    minimum_backoff = local.push_min_backoff
    maximum_backoff = local.push_max_backoff
  }

  dead_letter_policy {
    dead_letter_topic     = google_pubsub_topic.link_dead_letter[0].id
    max_delivery_attempts = var.max_delivery_attempts
  }

  expiration_policy {
    ttl = ""
  }

  depends_on = [
    google_cloud_run_v2_service_iam_member.link_invoker,
    google_service_account_iam_member.invoker_token_creator,
    google_pubsub_topic_iam_member.link_dead_letter_publisher,
  ]
}

resource "google_pubsub_subscription_iam_member" "link_dead_letter_subscriber" {
  count = local.link

  project      = var.project
  subscription = google_pubsub_subscription.link[0].name
  role         = "roles/pubsub.subscriber"
  member       = local.pubsub_service_agent
}

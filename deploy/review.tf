# The review (review = true, with link = true): the function NAME-review, entry point on_review_decision, built from
# the same source as the relay. People's decisions on what the link left (its link.review events) are published to
# the decisions topic NAME-decisions, with the ordering key {project}/{pipelineId}; the function's push subscription
# delivers them in that order, one message of a pipeline at a time. It writes the pipeline's confirmed and rejected
# matches and asset links to CDF and publishes review.applied to REVIEW_TOPIC, so it runs with its own service account
# and its own CDF client (whose secret only that account may read), as the link does.

locals {
  review               = var.review ? 1 : 0
  review_sa            = var.review ? "serviceAccount:${google_service_account.review[0].email}" : null
  review_topic         = coalesce(var.review_topic, local.link_topic)
  create_review_secret = var.review && var.review_idp_client_secret_id == null
  review_secret_id     = local.create_review_secret ? google_secret_manager_secret.review_idp_client_secret[0].secret_id : var.review_idp_client_secret_id

  review_environment = merge(var.extra_environment_variables, {
    for key, value in merge(local.shared_environment, {
      IDP_CLIENT_ID     = var.review_idp_client_id
      REVIEW_TOPIC      = local.review_topic
      OTEL_SERVICE_NAME = var.tracing ? "${var.name}-review" : null
      THREADS           = tostring(var.review_instance_concurrency)
    }) : key => value if value != null
  })
}

resource "google_service_account" "review" {
  count = local.review

  project      = var.project
  account_id   = "${substr(var.name, 0, 23)}-review" # cut to the 30 characters an account id allows
  display_name = "matchrelay review ${var.name}"
}

# review.applied goes to REVIEW_TOPIC.
resource "google_pubsub_topic_iam_member" "review_publisher" {
  count = local.review

  topic  = local.review_topic # projects/P/topics/T: the project is the topic's own
  role   = "roles/pubsub.publisher"
  member = local.review_sa
}

# The review's client secret: the review's account alone may read it.

resource "google_secret_manager_secret" "review_idp_client_secret" {
  count = local.create_review_secret ? 1 : 0

  project   = var.project
  secret_id = "${var.name}-review-idp-client-secret"
  labels    = var.labels

  replication {
    auto {}
  }

  depends_on = [google_project_service.apis]
}

resource "google_secret_manager_secret_version" "review_idp_client_secret" {
  count = local.create_review_secret ? 1 : 0

  secret      = google_secret_manager_secret.review_idp_client_secret[0].id
  secret_data = var.review_idp_client_secret

  lifecycle {
    precondition {
      condition     = var.review_idp_client_secret != null
      error_message = "Set review_idp_client_secret, or review_idp_client_secret_id to use an existing secret."
    }
  }
}

resource "google_secret_manager_secret_iam_member" "review_idp_client_secret_accessor" {
  count = local.review

  project   = var.project
  secret_id = local.review_secret_id
  role      = "roles/secretmanager.secretAccessor"
  member    = local.review_sa
}

# The decisions topic: a review tool publishes each message of decisions here, with the ordering key
# {project}/{pipelineId}. Its publishers are granted outside this module.
resource "google_pubsub_topic" "decisions" {
  count = local.review

  project      = var.project
  name         = "${var.name}-decisions"
  labels       = var.labels
  kms_key_name = var.kms_key_name
  depends_on   = [google_project_service.apis]
}

# The review's dead letters: decision messages it failed max_delivery_attempts times.

resource "google_pubsub_topic" "review_dead_letter" {
  count = local.review

  project      = var.project
  name         = "${var.name}-review-dead-letter"
  labels       = var.labels
  kms_key_name = var.kms_key_name
  depends_on   = [google_project_service.apis]
}

resource "google_pubsub_subscription" "review_dead_letter" {
  count = local.review

  project                    = var.project
  name                       = "${var.name}-review-dead-letter"
  topic                      = google_pubsub_topic.review_dead_letter[0].id
  labels                     = var.labels
  message_retention_duration = var.dead_letter_retention
  ack_deadline_seconds       = 60

  expiration_policy {
    ttl = "" # never expires
  }
}

resource "google_pubsub_topic_iam_member" "review_dead_letter_publisher" {
  count = local.review

  project = var.project
  topic   = google_pubsub_topic.review_dead_letter[0].name
  role    = "roles/pubsub.publisher"
  member  = local.pubsub_service_agent
}

# The function.

resource "google_cloudfunctions2_function" "review" {
  count = local.review

  project     = var.project
  name        = "${var.name}-review"
  location    = var.region
  description = "Applies people's review decisions to the entity-matching pipeline's lists and to CDF's asset links."
  labels      = var.labels

  build_config {
    runtime     = var.runtime
    entry_point = "on_review_decision"

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
    max_instance_count               = var.review_max_instances
    min_instance_count               = 0
    max_instance_request_concurrency = var.review_instance_concurrency
    ingress_settings                 = "ALLOW_INTERNAL_ONLY"
    all_traffic_on_latest_revision   = true
    service_account_email            = google_service_account.review[0].email
    environment_variables            = local.review_environment

    secret_environment_variables {
      key        = "IDP_CLIENT_SECRET"
      project_id = var.project
      secret     = local.review_secret_id
      version    = "latest"
    }
  }

  lifecycle {
    precondition {
      condition     = var.link
      error_message = "review = true needs link = true: the review applies decisions on what the link leaves."
    }
    precondition {
      condition     = var.review_idp_client_id != null
      error_message = "Set review_idp_client_id: the review writes to CDF with a client of its own."
    }
    precondition {
      condition     = var.review_idp_client_secret == null || var.review_idp_client_secret_id == null
      error_message = "Set review_idp_client_secret or review_idp_client_secret_id, not both."
    }
  }

  depends_on = [
    google_project_service.apis,
    google_secret_manager_secret_iam_member.review_idp_client_secret_accessor,
    google_secret_manager_secret_version.review_idp_client_secret,
  ]
}

resource "google_cloud_run_v2_service_iam_member" "review_invoker" {
  count = local.review

  project  = var.project
  location = var.region
  name     = google_cloudfunctions2_function.review[0].name
  role     = "roles/run.invoker"
  member   = local.invoker_sa
}

# Every message of the decisions topic is the review's. Message ordering delivers the messages of one ordering key
# ({project}/{pipelineId}) one at a time, in the order they were published; a message handed back holds its key's
# later ones until it is acked or dead-lettered.
resource "google_pubsub_subscription" "review" {
  count = local.review

  project                    = var.project
  name                       = "${var.name}-review"
  topic                      = google_pubsub_topic.decisions[0].id
  labels                     = var.labels
  enable_message_ordering    = true
  ack_deadline_seconds       = local.push_ack_deadline_s
  message_retention_duration = local.push_retention

  push_config {
    push_endpoint = google_cloudfunctions2_function.review[0].service_config[0].uri
    oidc_token {
      service_account_email = google_service_account.invoker[0].email
      audience              = google_cloudfunctions2_function.review[0].service_config[0].uri
    }
  }

  retry_policy {
    minimum_backoff = local.push_min_backoff
    maximum_backoff = local.push_max_backoff
  }

  dead_letter_policy {
    dead_letter_topic     = google_pubsub_topic.review_dead_letter[0].id
    max_delivery_attempts = var.max_delivery_attempts
  }

  expiration_policy {
    ttl = ""
  }

  depends_on = [
    google_cloud_run_v2_service_iam_member.review_invoker,
    google_service_account_iam_member.invoker_token_creator,
    google_pubsub_topic_iam_member.review_dead_letter_publisher,
  ]
}

resource "google_pubsub_subscription_iam_member" "review_dead_letter_subscriber" {
  count = local.review

  project      = var.project
  subscription = google_pubsub_subscription.review[0].name
  role         = "roles/pubsub.subscriber"
  member       = local.pubsub_service_agent
}

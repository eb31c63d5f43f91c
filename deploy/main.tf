# matchrelay as a Cloud Run function (gen2): each message of the trigger topic is delivered to on_run_message,
# which publishes CloudEvents to the events topic (RELAY_TOPIC) and run.failed events to the error topic
# (RELAY_ERROR_TOPIC).
#
# Delivery (var.trigger): "push", the default, deploys the function without an event trigger (an HTTP function;
# functions-framework still turns a raw push body into the CloudEvent) and gives the trigger topic a push
# subscription that this module owns whole, ack deadline, retries and dead letters included (push.tf). "eventarc"
# deploys it with an Eventarc trigger instead; Eventarc creates that trigger's push subscription itself and the
# google provider cannot configure it, so its ack deadline (600 s) and dead-letter policy are set by the commands in
# the eventarc_subscription_commands output (deploy.sh runs the same ones) after every apply that recreates the
# trigger. Until then Pub/Sub redelivers a message 10 s after each push starts, while the first delivery still polls.
#
# The link is in link.tf, the review in review.tf, scheduled sweeps in sweeps.tf, alert policies in alerts.tf, the
# dashboard in dashboard.tf, the BigQuery subscription in bigquery.tf.

locals {
  eventarc    = var.trigger == "eventarc" ? 1 : 0
  function_sa = "serviceAccount:${google_service_account.function.email}"
  # The Pub/Sub service agent moves messages to the dead-letter topic.
  pubsub_service_agent = "serviceAccount:service-${data.google_project.this.number}@gcp-sa-pubsub.iam.gserviceaccount.com"

  # .gcloudignore is shared with deploy.sh; a gitignore name matches at any depth.
  ignored = [
    for line in split("\n", file("${path.module}/.gcloudignore")) : trimspace(line)
    if trimspace(line) != "" && !startswith(trimspace(line), "#")
  ]

  create_secret = var.idp_client_secret_id == null
  secret_id     = local.create_secret ? google_secret_manager_secret.idp_client_secret[0].secret_id : var.idp_client_secret_id

  # What the relay, the link and the review share: CDF, the identity provider but the client, the timeout, logs and
  # tracing.
  shared_environment = {
    CDF_PROJECT          = var.cdf_project
    CDF_CLUSTER          = var.cdf_cluster
    CDF_URL              = var.cdf_url
    CDF_ALLOWED_PROJECTS = join(",", coalescelist(var.cdf_allowed_projects, [var.cdf_project]))
    IDP_TOKEN_URL        = var.idp_token_url
    IDP_SCOPES           = var.idp_scopes
    IDP_AUDIENCE         = var.idp_audience
    RELAY_TOPIC          = google_pubsub_topic.events.id
    INVOCATION_TIMEOUT_S = tostring(var.timeout_s)
    LOG_LEVEL            = var.log_level
    OTEL_TRACES_EXPORTER = var.tracing ? "gcp_trace" : null
  }

  environment = merge(var.extra_environment_variables, {
    for key, value in merge(local.shared_environment, {
      IDP_CLIENT_ID       = var.idp_client_id
      RELAY_ERROR_TOPIC   = google_pubsub_topic.errors.id
      RELAY_TRIGGER_TOPIC = google_pubsub_topic.trigger.id
      POLL_BUDGET_S       = tostring(var.poll_budget_s)
      RUN_MAX_WAIT_S      = tostring(var.run_max_wait_s)
      OTEL_SERVICE_NAME   = var.tracing ? var.name : null
      # functions-framework's gunicorn serves THREADS requests at once in its one process.
      THREADS = tostring(var.concurrency)
    }) : key => value if value != null
  })
}

data "google_project" "this" {
  project_id = var.project
}

resource "google_project_service" "apis" {
  for_each = toset(var.enable_apis ? concat([
    "artifactregistry.googleapis.com",
    "cloudbuild.googleapis.com",
    "cloudfunctions.googleapis.com",
    "cloudscheduler.googleapis.com",
    "eventarc.googleapis.com",
    "iam.googleapis.com",
    "logging.googleapis.com",
    "monitoring.googleapis.com",
    "pubsub.googleapis.com",
    "run.googleapis.com",
    "secretmanager.googleapis.com",
    ],
    var.tracing ? ["cloudtrace.googleapis.com"] : [],
    var.bigquery ? ["bigquery.googleapis.com"] : [],
  ) : [])

  project            = var.project
  service            = each.value
  disable_on_destroy = false
}

# Topics. kms_key_name = null (the default) leaves them on Google-managed keys.

resource "google_pubsub_topic" "trigger" {
  project      = var.project
  name         = "${var.name}-trigger"
  labels       = var.labels
  kms_key_name = var.kms_key_name
  depends_on   = [google_project_service.apis]
}

resource "google_pubsub_topic" "events" {
  project      = var.project
  name         = "${var.name}-events"
  labels       = var.labels
  kms_key_name = var.kms_key_name
  depends_on   = [google_project_service.apis]
}

resource "google_pubsub_topic" "errors" {
  project      = var.project
  name         = "${var.name}-errors"
  labels       = var.labels
  kms_key_name = var.kms_key_name
  depends_on   = [google_project_service.apis]
}

resource "google_pubsub_topic" "dead_letter" {
  project      = var.project
  name         = "${var.name}-dead-letter"
  labels       = var.labels
  kms_key_name = var.kms_key_name
  depends_on   = [google_project_service.apis]
}

# Keeps what reaches the dead-letter topic, so nothing is lost after the retries.
resource "google_pubsub_subscription" "dead_letter" {
  project                    = var.project
  name                       = "${var.name}-dead-letter"
  topic                      = google_pubsub_topic.dead_letter.id
  labels                     = var.labels
  message_retention_duration = var.dead_letter_retention
  ack_deadline_seconds       = 60

  expiration_policy {
    ttl = "" # never expires
  }
}

# The function's identity, used for the Eventarc trigger too (trigger = "eventarc").

resource "google_service_account" "function" {
  project      = var.project
  account_id   = var.name
  display_name = "matchrelay function ${var.name}"
}

resource "google_pubsub_topic_iam_member" "events_publisher" {
  project = var.project
  topic   = google_pubsub_topic.events.name
  role    = "roles/pubsub.publisher"
  member  = local.function_sa
}

resource "google_pubsub_topic_iam_member" "errors_publisher" {
  project = var.project
  topic   = google_pubsub_topic.errors.name
  role    = "roles/pubsub.publisher"
  member  = local.function_sa
}

# The function publishes continuation triggers and a sweep's run triggers to its own trigger topic.
resource "google_pubsub_topic_iam_member" "trigger_publisher" {
  project = var.project
  topic   = google_pubsub_topic.trigger.name
  role    = "roles/pubsub.publisher"
  member  = local.function_sa
}

resource "google_project_iam_member" "event_receiver" {
  count = local.eventarc

  project = var.project
  role    = "roles/eventarc.eventReceiver"
  member  = local.function_sa
}

# Before delivery was a choice these two always existed: an Eventarc deployment keeps them through an upgrade.
moved {
  from = google_project_iam_member.event_receiver
  to   = google_project_iam_member.event_receiver[0]
}

moved {
  from = google_cloud_run_v2_service_iam_member.trigger_invoker
  to   = google_cloud_run_v2_service_iam_member.trigger_invoker[0]
}

# tracing = true: the functions' accounts may write their spans to Cloud Trace.
resource "google_project_iam_member" "trace_agent" {
  for_each = var.tracing ? merge({ relay = local.function_sa }, var.link ? { link = local.link_sa } : {}, var.review ? { review = local.review_sa } : {}) : {}

  project = var.project
  role    = "roles/cloudtrace.agent"
  member  = each.value
}

resource "google_pubsub_topic_iam_member" "dead_letter_publisher" {
  project = var.project
  topic   = google_pubsub_topic.dead_letter.name
  role    = "roles/pubsub.publisher"
  member  = local.pubsub_service_agent
}

# The client secret.

resource "google_secret_manager_secret" "idp_client_secret" {
  count = local.create_secret ? 1 : 0

  project   = var.project
  secret_id = "${var.name}-idp-client-secret"
  labels    = var.labels

  replication {
    auto {}
  }

  depends_on = [google_project_service.apis]
}

resource "google_secret_manager_secret_version" "idp_client_secret" {
  count = local.create_secret ? 1 : 0

  secret      = google_secret_manager_secret.idp_client_secret[0].id
  secret_data = var.idp_client_secret

  lifecycle {
    precondition {
      condition     = var.idp_client_secret != null
      error_message = "Set idp_client_secret, or idp_client_secret_id to use an existing secret."
    }
  }
}

resource "google_secret_manager_secret_iam_member" "idp_client_secret_accessor" {
  project   = var.project
  secret_id = local.secret_id
  role      = "roles/secretmanager.secretAccessor"
  member    = local.function_sa
}

# The source: the repository zipped without what .gcloudignore names.

resource "google_storage_bucket" "source" {
  #checkov:skip=CKV_GCP_62:holds only the function's source zips, read by Cloud Build; Cloud Audit Logs record access to it, usage logs would need a second bucket
  project                     = var.project
  name                        = "${var.name}-source-${data.google_project.this.number}"
  location                    = var.region
  labels                      = var.labels
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = true

  # A replaced source zip stays recoverable for a while, then goes.
  versioning {
    enabled = true
  }

  lifecycle_rule {
    condition {
      days_since_noncurrent_time = 30
    }
    action {
      type = "Delete"
    }
  }
}

data "archive_file" "source" {
  type        = "zip"
  source_dir  = coalesce(var.source_dir, "${path.module}/..")
  output_path = "${path.root}/.terraform/tmp/${var.name}-source.zip"
  excludes    = [for pattern in local.ignored : "**/${pattern}"]
}

resource "google_storage_bucket_object" "source" {
  # Named by content, so a change of source redeploys the function.
  name   = "${var.name}-${data.archive_file.source.output_md5}.zip"
  bucket = google_storage_bucket.source.name
  source = data.archive_file.source.output_path
}

# The function.

resource "google_cloudfunctions2_function" "matchrelay" {
  project     = var.project
  name        = var.name
  location    = var.region
  description = "Relays CDF entity-matching pipeline runs to Pub/Sub as CloudEvents."
  labels      = var.labels

  build_config {
    runtime     = var.runtime
    entry_point = "on_run_message"

    source {
      storage_source {
        bucket = google_storage_bucket.source.name
        object = google_storage_bucket_object.source.name
      }
    }
  }

  service_config {
    available_memory = var.memory
    # Cloud Run serves more than one request at a time on an instance only with at least 1 vCPU.
    available_cpu                    = "1"
    timeout_seconds                  = var.timeout_s
    max_instance_count               = var.max_instances
    min_instance_count               = 0
    max_instance_request_concurrency = var.concurrency
    # Eventarc and Pub/Sub push count as internal traffic.
    ingress_settings               = "ALLOW_INTERNAL_ONLY"
    all_traffic_on_latest_revision = true
    service_account_email          = google_service_account.function.email
    environment_variables          = local.environment

    secret_environment_variables {
      key        = "IDP_CLIENT_SECRET"
      project_id = var.project
      secret     = local.secret_id
      version    = "latest"
    }
  }

  # Only with trigger = "eventarc"; with "push" the function is an HTTP function fed by push.tf's subscription.
  dynamic "event_trigger" {
    for_each = range(local.eventarc)
    content {
      trigger_region        = var.region
      event_type            = "google.cloud.pubsub.topic.v1.messagePublished"
      pubsub_topic          = google_pubsub_topic.trigger.id
      retry_policy          = "RETRY_POLICY_RETRY"
      service_account_email = google_service_account.function.email
    }
  }

  lifecycle {
    precondition {
      condition     = (var.cdf_cluster == null) != (var.cdf_url == null)
      error_message = "Set exactly one of cdf_cluster and cdf_url."
    }
    precondition {
      condition     = var.idp_client_secret == null || var.idp_client_secret_id == null
      error_message = "Set idp_client_secret or idp_client_secret_id, not both."
    }
    precondition {
      condition     = var.poll_budget_s < var.timeout_s
      error_message = "poll_budget_s must be below timeout_s: an invocation must hand its message back before it times out."
    }
  }

  # The function's identity must be able to read the secret when it is deployed.
  depends_on = [
    google_project_service.apis,
    google_project_iam_member.event_receiver,
    google_secret_manager_secret_iam_member.idp_client_secret_accessor,
    google_secret_manager_secret_version.idp_client_secret,
  ]
}

# Eventarc invokes the function's Cloud Run service as the trigger's service account.
resource "google_cloud_run_v2_service_iam_member" "trigger_invoker" {
  count = local.eventarc

  project  = var.project
  location = var.region
  name     = google_cloudfunctions2_function.matchrelay.name
  role     = "roles/run.invoker"
  member   = local.function_sa
}

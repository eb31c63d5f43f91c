# BigQuery (bigquery = true): a BigQuery subscription writes every message of the events topic to the table
# NAME_events.events with Pub/Sub's metadata columns (write_metadata), and the view NAME_events.matches reads the
# match events from it, one row per ce-id. docs/subscribers.md, "BigQuery", shows the view's SQL and what it assumes.

locals {
  bigquery = var.bigquery ? 1 : 0
  # Dataset ids allow letters, digits and underscores.
  bigquery_dataset = "${replace(var.name, "-", "_")}_events"
  bigquery_table   = var.bigquery ? "${var.project}.${google_bigquery_dataset.events[0].dataset_id}.${google_bigquery_table.events[0].table_id}" : null

  # The columns write_metadata fills: data is the message body (the event's JSON), attributes its attributes as a
  # JSON object (the ce- attributes).
  bigquery_columns = [
    { name = "subscription_name", type = "STRING", mode = "NULLABLE", description = "The BigQuery subscription that wrote the row." },
    { name = "message_id", type = "STRING", mode = "NULLABLE", description = "Pub/Sub's message id: a copy of an event published again has another." },
    { name = "publish_time", type = "TIMESTAMP", mode = "NULLABLE", description = "When Pub/Sub received the message." },
    { name = "data", type = "STRING", mode = "NULLABLE", description = "The event's data, a JSON object." },
    { name = "attributes", type = "STRING", mode = "NULLABLE", description = "The message's attributes as a JSON object: ce-id, ce-type, ce-cdfproject, ce-pipelineid, ce-runid, ..." },
  ]
}

resource "google_bigquery_dataset" "events" {
  #checkov:skip=CKV_GCP_81:BigQuery encrypts at rest with Google-managed keys; bigquery_kms_key_name sets a customer-managed key, which the tables inherit
  count = local.bigquery

  project     = var.project
  dataset_id  = local.bigquery_dataset
  location    = coalesce(var.bigquery_location, var.region)
  description = "matchrelay ${var.name}: every event of ${google_pubsub_topic.events.name}, as Pub/Sub delivered it."
  labels      = var.labels

  dynamic "default_encryption_configuration" {
    for_each = var.bigquery_kms_key_name == null ? [] : [var.bigquery_kms_key_name]
    content {
      kms_key_name = default_encryption_configuration.value
    }
  }

  depends_on = [google_project_service.apis]
}

resource "google_bigquery_table" "events" {
  #checkov:skip=CKV_GCP_80:the table takes the dataset's default encryption: Google-managed keys, or bigquery_kms_key_name
  count = local.bigquery

  project     = var.project
  dataset_id  = google_bigquery_dataset.events[0].dataset_id
  table_id    = "events"
  description = "One row per message of ${google_pubsub_topic.events.name}, at least once: deduplicate by the ce-id attribute."
  labels      = var.labels
  schema      = jsonencode(local.bigquery_columns)
  # The table holds the events' history: dropping it takes a deliberate step (see deploy/README.md).
  deletion_protection = var.bigquery_deletion_protection

  time_partitioning {
    type  = "DAY"
    field = "publish_time"
  }
}

# The Pub/Sub service agent writes the rows; this table is all it may write.
resource "google_bigquery_table_iam_member" "events_writer" {
  count = local.bigquery

  project    = var.project
  dataset_id = google_bigquery_table.events[0].dataset_id
  table_id   = google_bigquery_table.events[0].table_id
  role       = "roles/bigquery.dataEditor"
  member     = local.pubsub_service_agent
}

resource "google_bigquery_table" "matches" {
  #checkov:skip=CKV_GCP_80:a view stores no data of its own to encrypt; the table it reads takes the dataset's encryption
  count = local.bigquery

  project             = var.project
  dataset_id          = google_bigquery_dataset.events[0].dataset_id
  table_id            = "matches"
  description         = "One row per match event (com.cognite.entitymatching.match), deduplicated by ce-id: score, source and target ids, the run's coordinates."
  labels              = var.labels
  deletion_protection = var.bigquery_deletion_protection

  view {
    query          = templatefile("${path.module}/bigquery/matches.sql", { events_table = local.bigquery_table })
    use_legacy_sql = false
  }
}

resource "google_pubsub_subscription" "bigquery" {
  count = local.bigquery

  project = var.project
  name    = "${var.name}-bigquery"
  topic   = google_pubsub_topic.events.id
  labels  = var.labels

  bigquery_config {
    table          = local.bigquery_table
    write_metadata = true
  }

  expiration_policy {
    ttl = "" # never expires
  }

  # Pub/Sub checks that it may write to the table when the subscription is created.
  depends_on = [google_bigquery_table_iam_member.events_writer]
}

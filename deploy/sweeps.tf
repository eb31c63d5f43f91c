# Scheduled sweeps: each entry of var.sweeps is a Cloud Scheduler job that publishes a sweep trigger to the trigger
# topic. The worker relays every run created in the last whole window before the message's publish time, so a job
# that fires once per window (checked in variables.tf) covers every moment exactly once.
#
# Cloud Scheduler publishes as its service agent, whose role (roles/cloudscheduler.serviceAgent, granted when the
# API is enabled) includes pubsub.topics.publish: no grant on the topic is needed.

locals {
  sweeps = {
    for s in var.sweeps : "${var.name}-sweep-${s.pipeline_id == null ? "all" : s.pipeline_id}-${s.window_s}" => s
  }
}

resource "google_cloud_scheduler_job" "sweep" {
  for_each = local.sweeps

  project     = var.project
  region      = var.region
  name        = each.key
  description = "${var.name}: relay the runs created in each ${each.value.window_s} s window (${each.value.pipeline_id == null ? "every pipeline" : "pipeline ${each.value.pipeline_id}"})."
  schedule    = each.value.schedule
  time_zone   = "Etc/UTC" # the windows are counted from the epoch, in UTC

  pubsub_target {
    topic_name = google_pubsub_topic.trigger.id
    data = base64encode(each.value.pipeline_id == null
      ? jsonencode({ runsCreated = { windowS = each.value.window_s } })
    : jsonencode({ pipelineId = each.value.pipeline_id, runsCreated = { windowS = each.value.window_s } }))
  }

  # A failed publish is retried 5, 10 and 20 s later: done within 35 s, so inside the shortest (60 s) window and
  # still covering the window it was meant for.
  retry_config {
    retry_count          = 3
    min_backoff_duration = "5s"
    max_backoff_duration = "20s"
    max_doublings        = 2
  }

  # No tick before the function's subscription exists: a message on a topic without one is lost.
  depends_on = [google_project_service.apis, google_cloudfunctions2_function.matchrelay]
}

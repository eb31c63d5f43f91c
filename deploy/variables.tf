# Where and what to deploy.

variable "project" {
  description = "Google Cloud project id to deploy into."
  type        = string
}

variable "region" {
  description = "Region of the function, its Eventarc trigger and the source bucket, e.g. europe-west1."
  type        = string
}

variable "name" {
  description = "Name of the function; also the prefix of its topics (NAME-trigger, NAME-events, NAME-errors, NAME-dead-letter), dead-letter subscription, service account, secret and source bucket."
  type        = string
  default     = "matchrelay"

  validation {
    # The service account id derived from it allows 6 to 30 characters.
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.name))
    error_message = "name must be 6 to 30 lowercase letters, digits or hyphens, starting with a letter and not ending with a hyphen."
  }
}

variable "runtime" {
  description = "Python runtime of the function."
  type        = string
  default     = "python311"

  validation {
    condition     = can(regex("^python3[0-9]+$", var.runtime))
    error_message = "runtime must be a Python runtime such as python311 or python312."
  }
}

variable "memory" {
  description = "Memory of one function instance (service_config.available_memory). 1Gi fits the default 80 concurrent requests: about 100 MB base, at most about 64 MB of unconfirmed publishes per process, runs that are waiting cost almost nothing, and a run streaming a million matches peaks near 100 MB."
  type        = string
  default     = "1Gi"

  validation {
    condition     = can(regex("^[0-9]+(k|M|G|Ki|Mi|Gi)$", var.memory))
    error_message = "memory must be a number with one of the units k, M, G, Ki, Mi, Gi, e.g. 512Mi."
  }
}

variable "max_instances" {
  description = "Most function instances running at once; at most max_instances * concurrency trigger messages are handled at a time."
  type        = number
  default     = 10

  validation {
    condition     = var.max_instances >= 1 && var.max_instances <= 1000 && floor(var.max_instances) == var.max_instances
    error_message = "max_instances must be a whole number from 1 to 1000."
  }
}

variable "concurrency" {
  description = "Requests one instance serves at a time (max_instance_request_concurrency); the function's THREADS is set to the same. Each instance gets 1 vCPU, which Cloud Run needs for more than one."
  type        = number
  default     = 80

  validation {
    condition     = var.concurrency >= 1 && var.concurrency <= 1000 && floor(var.concurrency) == var.concurrency
    error_message = "concurrency must be a whole number from 1 to 1000."
  }
}

variable "timeout_s" {
  description = "Seconds an invocation may run before Cloud Run ends it (service_config.timeout_seconds); the function's INVOCATION_TIMEOUT_S is set to the same. poll_budget_s must be below it."
  type        = number
  default     = 540

  validation {
    # 540 s is the most an event-driven function may take; below 5 s the worker has no time to work.
    condition     = var.timeout_s >= 5 && var.timeout_s <= 540 && floor(var.timeout_s) == var.timeout_s
    error_message = "timeout_s must be a whole number of seconds from 5 to 540 (the most for an event-driven function)."
  }
}

variable "kms_key_name" {
  description = "Cloud KMS key (projects/P/locations/L/keyRings/R/cryptoKeys/K) that encrypts the topics; null uses Google-managed keys. The Pub/Sub service agent must hold the Cloud KMS CryptoKey Encrypter/Decrypter role on it (grant that outside this module)."
  type        = string
  default     = null

  validation {
    condition     = var.kms_key_name == null || can(regex("^projects/[^/]+/locations/[^/]+/keyRings/[^/]+/cryptoKeys/[^/]+$", var.kms_key_name))
    error_message = "kms_key_name must be projects/PROJECT/locations/LOCATION/keyRings/RING/cryptoKeys/KEY."
  }
}

variable "source_dir" {
  description = "Directory zipped as the function source; null means the repository root (the parent of this module). Files named in .gcloudignore are left out."
  type        = string
  default     = null
}

variable "enable_apis" {
  description = "Enable the Google APIs the deployment needs (Cloud Functions, Cloud Run, Cloud Build, Artifact Registry, Eventarc, Pub/Sub, Secret Manager). They are left enabled on destroy."
  type        = bool
  default     = true
}

variable "labels" {
  description = "Labels put on the function, topics, bucket, secret and alert policies."
  type        = map(string)
  default     = {}
}

# The function's configuration (environment variables, see docs/contract.md section 3).

variable "cdf_project" {
  description = "CDF project (CDF_PROJECT)."
  type        = string
}

variable "cdf_cluster" {
  description = "CDF cluster, e.g. westeurope-1 (CDF_CLUSTER, gives https://CLUSTER.cognitedata.com). Set this or cdf_url, not both."
  type        = string
  default     = null

  validation {
    condition     = var.cdf_cluster == null || can(regex("^[a-z0-9][a-z0-9-]*$", var.cdf_cluster))
    error_message = "cdf_cluster must be a cluster name such as westeurope-1."
  }
}

variable "cdf_url" {
  description = "Base URL of the CDF API (CDF_URL). Set this or cdf_cluster, not both."
  type        = string
  default     = null

  validation {
    condition     = var.cdf_url == null || can(regex("^https://[^/?#]+", var.cdf_url))
    error_message = "cdf_url must be an https:// URL."
  }
}

variable "cdf_allowed_projects" {
  description = "CDF projects a trigger message may name (CDF_ALLOWED_PROJECTS); empty means only cdf_project."
  type        = list(string)
  default     = []
}

variable "idp_token_url" {
  description = "OAuth 2.0 token endpoint for the client-credentials grant (IDP_TOKEN_URL)."
  type        = string

  validation {
    condition     = can(regex("^https://", var.idp_token_url))
    error_message = "idp_token_url must be an https:// URL."
  }
}

variable "idp_client_id" {
  description = "OAuth 2.0 client id (IDP_CLIENT_ID)."
  type        = string
}

variable "idp_client_secret" {
  description = "OAuth 2.0 client secret; stored in a new Secret Manager secret NAME-idp-client-secret and given to the function as IDP_CLIENT_SECRET. It ends up in the Terraform state: keep the state private. Set this or idp_client_secret_id."
  type        = string
  default     = null
  sensitive   = true
}

variable "idp_client_secret_id" {
  description = "Id of an existing Secret Manager secret in the project holding the client secret (its latest version is used), instead of idp_client_secret."
  type        = string
  default     = null

  validation {
    condition     = var.idp_client_secret_id == null || can(regex("^[A-Za-z0-9_-]{1,255}$", var.idp_client_secret_id))
    error_message = "idp_client_secret_id must be a secret id (letters, digits, _ and -), not a resource path."
  }
}

variable "idp_scopes" {
  description = "Space- or comma-separated scopes (IDP_SCOPES); null leaves the function's default, CDF_URL/.default."
  type        = string
  default     = null
}

variable "idp_audience" {
  description = "Audience sent with the token request (IDP_AUDIENCE); null sends none."
  type        = string
  default     = null
}

variable "poll_budget_s" {
  description = "Seconds one invocation polls before it hands the message back (POLL_BUDGET_S); below timeout_s (540 s by default)."
  type        = number
  default     = 480

  validation {
    condition     = var.poll_budget_s >= 1 && var.poll_budget_s < 540 && floor(var.poll_budget_s) == var.poll_budget_s
    error_message = "poll_budget_s must be a whole number of seconds from 1 to 539: event functions time out at 540 s at most, and it must also be below timeout_s."
  }
}

variable "run_max_wait_s" {
  description = "Age of a trigger in seconds after which the function gives up with wait_timeout (RUN_MAX_WAIT_S); Eventarc keeps a message 24 h."
  type        = number
  default     = 82800

  validation {
    condition     = var.run_max_wait_s >= 1 && var.run_max_wait_s <= 86400 && floor(var.run_max_wait_s) == var.run_max_wait_s
    error_message = "run_max_wait_s must be a whole number of seconds from 1 to 86400."
  }
}

variable "log_level" {
  description = "Log level of the function (LOG_LEVEL)."
  type        = string
  default     = "INFO"

  validation {
    condition     = contains(["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"], var.log_level)
    error_message = "log_level must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL."
  }
}

variable "extra_environment_variables" {
  description = "Further environment variables of the functions (the relay's, the link's and the review's), e.g. CDF_API_VERSION, POLL_INITIAL_DELAY_S, POLL_MAX_DELAY_S, HTTP_TIMEOUT_S. Variables this module sets itself and secrets are refused."
  type        = map(string)
  default     = {}

  validation {
    condition = length(setintersection(keys(var.extra_environment_variables), [
      "CDF_PROJECT", "CDF_CLUSTER", "CDF_URL", "CDF_ALLOWED_PROJECTS", "IDP_TOKEN_URL", "IDP_CLIENT_ID",
      "IDP_CLIENT_SECRET", "IDP_SCOPES", "IDP_AUDIENCE", "CDF_TOKEN", "RELAY_TOPIC", "RELAY_ERROR_TOPIC",
      "RELAY_TRIGGER_TOPIC", "POLL_BUDGET_S", "INVOCATION_TIMEOUT_S", "RUN_MAX_WAIT_S", "LOG_LEVEL", "THREADS",
      "LINK_MIN_SCORE", "LINK_OVERWRITE", "LINK_CONCURRENCY", "LINK_PIPELINES", "LINK_DRY_RUN", "LINK_TOPIC",
      "LINK_TRUST_RULES", "REVIEW_MIN_SCORE", "REVIEW_MAX_EVENTS", "REVIEW_TOPIC", "OTEL_TRACES_EXPORTER",
      "OTEL_SERVICE_NAME",
    ])) == 0
    error_message = "extra_environment_variables must not set a variable that has its own module variable, nor IDP_CLIENT_SECRET or CDF_TOKEN."
  }
}

# Delivery.

variable "trigger" {
  description = "How trigger messages reach the function: \"push\", a push subscription this module creates and owns (600 s ack deadline, retry policy, dead-letter policy), or \"eventarc\", an Eventarc trigger whose subscription the eventarc_subscription_commands output configures after each apply. Changing it replaces the function."
  type        = string
  default     = "push"

  validation {
    condition     = contains(["push", "eventarc"], var.trigger)
    error_message = "trigger must be \"push\" or \"eventarc\"."
  }
}

variable "max_delivery_attempts" {
  description = "Deliveries of a trigger message before Pub/Sub moves it to the dead-letter topic (5 to 100). Each one can poll for poll_budget_s; with Pub/Sub's backoff the default, 100, covers about a day, like run_max_wait_s."
  type        = number
  default     = 100

  validation {
    condition     = var.max_delivery_attempts >= 5 && var.max_delivery_attempts <= 100 && floor(var.max_delivery_attempts) == var.max_delivery_attempts
    error_message = "max_delivery_attempts must be a whole number from 5 to 100."
  }
}

variable "dead_letter_retention" {
  description = "How long the dead-letter subscription keeps unacknowledged messages, in seconds with an s suffix (10 minutes to 31 days)."
  type        = string
  default     = "604800s"

  validation {
    condition     = can(regex("^[0-9]+s$", var.dead_letter_retention)) && try(tonumber(trimsuffix(var.dead_letter_retention, "s")) >= 600 && tonumber(trimsuffix(var.dead_letter_retention, "s")) <= 2678400, false)
    error_message = "dead_letter_retention must be a number of seconds from 600s to 2678400s."
  }
}

# Scheduled sweeps (sweeps.tf).

variable "sweeps" {
  description = "Cloud Scheduler jobs that publish a sweep trigger ({\"pipelineId\": N, \"runsCreated\": {\"windowS\": W}}, or without pipelineId for the whole project) to the trigger topic. Each sweep covers the last whole window of window_s seconds (windows aligned to multiples of window_s since the epoch) before it fires, so schedule (unix cron, UTC) must fire once in every window: every M minutes on the minute (\"*/M * * * *\", M divides 60), every h hours at a fixed minute (\"MM */h * * *\", h divides 24; \"MM * * * *\" hourly), daily (\"MM HH * * *\") or weekly (\"MM HH * * D\", D from 0 to 6)."
  type = list(object({
    pipeline_id = optional(number) # null sweeps every pipeline of the CDF project
    window_s    = number
    schedule    = string
  }))
  default = []

  validation {
    condition     = alltrue([for s in var.sweeps : s.window_s >= 60 && s.window_s <= 2678400 && floor(s.window_s) == s.window_s])
    error_message = "sweeps: window_s must be a whole number of seconds from 60 to 2678400 (31 days)."
  }

  validation {
    condition     = alltrue([for s in var.sweeps : s.pipeline_id == null || try(s.pipeline_id >= 1 && s.pipeline_id <= 9007199254740991 && floor(s.pipeline_id) == s.pipeline_id, false)])
    error_message = "sweeps: pipeline_id must be a whole number from 1 to 9007199254740991, or null for every pipeline."
  }

  validation {
    # The window's length picks the one cron pattern that fires once per window, on its boundary or at a fixed
    # offset inside it; a window no cron can follow (say 7 minutes, or 5 days) has no entry and is refused.
    condition = alltrue([for s in var.sweeps : can(regex({
      "60"     = "^\\*(/1)? \\* \\* \\* \\*$"
      "120"    = "^\\*/2 \\* \\* \\* \\*$"
      "180"    = "^\\*/3 \\* \\* \\* \\*$"
      "240"    = "^\\*/4 \\* \\* \\* \\*$"
      "300"    = "^\\*/5 \\* \\* \\* \\*$"
      "360"    = "^\\*/6 \\* \\* \\* \\*$"
      "600"    = "^\\*/10 \\* \\* \\* \\*$"
      "720"    = "^\\*/12 \\* \\* \\* \\*$"
      "900"    = "^\\*/15 \\* \\* \\* \\*$"
      "1200"   = "^\\*/20 \\* \\* \\* \\*$"
      "1800"   = "^\\*/30 \\* \\* \\* \\*$"
      "3600"   = "^[0-5]?[0-9] \\* \\* \\* \\*$"
      "7200"   = "^[0-5]?[0-9] \\*/2 \\* \\* \\*$"
      "10800"  = "^[0-5]?[0-9] \\*/3 \\* \\* \\*$"
      "14400"  = "^[0-5]?[0-9] \\*/4 \\* \\* \\*$"
      "21600"  = "^[0-5]?[0-9] \\*/6 \\* \\* \\*$"
      "28800"  = "^[0-5]?[0-9] \\*/8 \\* \\* \\*$"
      "43200"  = "^[0-5]?[0-9] \\*/12 \\* \\* \\*$"
      "86400"  = "^[0-5]?[0-9] (1?[0-9]|2[0-3]) \\* \\* \\*$"
      "604800" = "^[0-5]?[0-9] (1?[0-9]|2[0-3]) \\* \\* [0-6]$"
    }[tostring(s.window_s)], s.schedule))])
    error_message = "sweeps: schedule must fire once in every window of window_s seconds (UTC): \"*/M * * * *\" for window_s = 60*M with M dividing 60; \"MM */h * * *\" (\"MM * * * *\" for an hour) for window_s = 3600*h with h dividing 24; \"MM HH * * *\" for 86400; \"MM HH * * D\" (D from 0 to 6) for 604800. Other windows cannot be scheduled."
  }

  validation {
    condition     = length(distinct([for s in var.sweeps : "${coalesce(s.pipeline_id, 0)}/${s.window_s}"])) == length(var.sweeps)
    error_message = "sweeps: each pair of pipeline_id and window_s may appear once (it names the job)."
  }
}

# Alerts (alerts.tf).

variable "alerts" {
  description = "Create the log-based metric of run.failed events and the alert policies on dead letters, run.failed events and the trigger backlog."
  type        = bool
  default     = true
}

variable "notification_channels" {
  description = "Cloud Monitoring notification channels (projects/P/notificationChannels/ID) the alert policies notify; empty means incidents show in the console only."
  type        = list(string)
  default     = []
}

variable "trigger_backlog_alert_s" {
  description = "Age in seconds of the oldest unacknowledged trigger message above which the backlog alert fires. A run still going in CDF keeps its trigger unacknowledged, so set it above your longest normal run."
  type        = number
  default     = 10800

  validation {
    condition     = var.trigger_backlog_alert_s >= 300 && var.trigger_backlog_alert_s <= 604800 && floor(var.trigger_backlog_alert_s) == var.trigger_backlog_alert_s
    error_message = "trigger_backlog_alert_s must be a whole number of seconds from 300 to 604800."
  }
}

# The link (link.tf): a second function, on_run_completed, that applies each completed run's matches to CDF.

variable "link" {
  description = "Deploy the link: the function NAME-link (entry point on_run_completed, the same source) with its own service account and CDF client credentials, fed by its own push subscription NAME-link on the events topic that takes only run.completed events."
  type        = bool
  default     = false
}

variable "link_idp_client_id" {
  description = "OAuth 2.0 client id of the link's own CDF identity (its IDP_CLIENT_ID), which may write links; the relay keeps its read-only one. Required with link = true."
  type        = string
  default     = null
}

variable "link_idp_client_secret" {
  description = "The link's client secret; stored in a new Secret Manager secret NAME-link-idp-client-secret that only the link's service account may read. It ends up in the Terraform state. Set this or link_idp_client_secret_id when link = true."
  type        = string
  default     = null
  sensitive   = true
}

variable "link_idp_client_secret_id" {
  description = "Id of an existing Secret Manager secret in the project holding the link's client secret, instead of link_idp_client_secret."
  type        = string
  default     = null

  validation {
    condition     = var.link_idp_client_secret_id == null || can(regex("^[A-Za-z0-9_-]{1,255}$", var.link_idp_client_secret_id))
    error_message = "link_idp_client_secret_id must be a secret id (letters, digits, _ and -), not a resource path."
  }
}

variable "link_min_score" {
  description = "LINK_MIN_SCORE: a match that is not previously confirmed links only with a score at or above this (0 to 1)."
  type        = number
  default     = 0.9

  validation {
    condition     = var.link_min_score >= 0 && var.link_min_score <= 1
    error_message = "link_min_score must be a number from 0 to 1."
  }
}

variable "link_overwrite" {
  description = "LINK_OVERWRITE: replace a single-valued asset link that points elsewhere (true), or leave it and count a conflict (false)."
  type        = bool
  default     = false
}

variable "link_trust_rules" {
  description = "LINK_TRUST_RULES: a match of one of the pipeline's rules links whatever its score (true), or needs link_min_score like a model match (false)."
  type        = bool
  default     = true
}

variable "link_concurrency" {
  description = "LINK_CONCURRENCY: CDF write requests in flight at once per link invocation, 1 to 16."
  type        = number
  default     = 4

  validation {
    condition     = var.link_concurrency >= 1 && var.link_concurrency <= 16 && floor(var.link_concurrency) == var.link_concurrency
    error_message = "link_concurrency must be a whole number from 1 to 16."
  }
}

variable "link_pipelines" {
  description = "LINK_PIPELINES: the pipeline ids the link acts on; run.completed events of other pipelines are acked untouched. Empty: every pipeline."
  type        = list(number)
  default     = []

  validation {
    condition     = alltrue([for id in var.link_pipelines : id >= 1 && id <= 9007199254740991 && floor(id) == id])
    error_message = "link_pipelines must hold whole numbers from 1 to 9007199254740991."
  }
}

variable "link_dry_run" {
  description = "LINK_DRY_RUN: decide and report in run.linked, write nothing to CDF."
  type        = bool
  default     = false
}

variable "link_topic" {
  description = "LINK_TOPIC: the topic run.linked events go to, projects/PROJECT/topics/TOPIC; null: the events topic. The link's service account is granted publish on it."
  type        = string
  default     = null

  validation {
    condition     = var.link_topic == null || can(regex("^projects/[^/]+/topics/[^/]+$", var.link_topic))
    error_message = "link_topic must be projects/PROJECT/topics/TOPIC."
  }
}

variable "link_max_instances" {
  description = "Most instances of the link function at once. With link_instance_concurrency and link_concurrency it bounds the CDF writes in flight: 1 x 4 x 4 = 16 by default, since CDF limits concurrent writes per project."
  type        = number
  default     = 1

  validation {
    condition     = var.link_max_instances >= 1 && var.link_max_instances <= 100 && floor(var.link_max_instances) == var.link_max_instances
    error_message = "link_max_instances must be a whole number from 1 to 100."
  }
}

variable "link_instance_concurrency" {
  description = "run.completed events one link instance handles at a time (its max_instance_request_concurrency and THREADS)."
  type        = number
  default     = 4

  validation {
    condition     = var.link_instance_concurrency >= 1 && var.link_instance_concurrency <= 80 && floor(var.link_instance_concurrency) == var.link_instance_concurrency
    error_message = "link_instance_concurrency must be a whole number from 1 to 80."
  }
}

# The review (review.tf): a third function, on_review_decision, that applies people's decisions on what the link left.

variable "review" {
  description = "Deploy the review: the function NAME-review (entry point on_review_decision, the same source) with its own service account and CDF client credentials, fed by its own push subscription NAME-review, with message ordering, on the new decisions topic NAME-decisions. Needs link = true."
  type        = bool
  default     = false
}

variable "review_idp_client_id" {
  description = "OAuth 2.0 client id of the review's own CDF identity (its IDP_CLIENT_ID), which may write the pipeline's confirmed and rejected matches and the asset links. Required with review = true."
  type        = string
  default     = null
}

variable "review_idp_client_secret" {
  description = "The review's client secret; stored in a new Secret Manager secret NAME-review-idp-client-secret that only the review's service account may read. It ends up in the Terraform state. Set this or review_idp_client_secret_id when review = true."
  type        = string
  default     = null
  sensitive   = true
}

variable "review_idp_client_secret_id" {
  description = "Id of an existing Secret Manager secret in the project holding the review's client secret, instead of review_idp_client_secret."
  type        = string
  default     = null

  validation {
    condition     = var.review_idp_client_secret_id == null || can(regex("^[A-Za-z0-9_-]{1,255}$", var.review_idp_client_secret_id))
    error_message = "review_idp_client_secret_id must be a secret id (letters, digits, _ and -), not a resource path."
  }
}

variable "review_topic" {
  description = "REVIEW_TOPIC, of the link and the review: the topic link.review and review.applied events go to, projects/PROJECT/topics/TOPIC; null: LINK_TOPIC (link_topic, else the events topic). The link's and the review's service accounts are granted publish on it."
  type        = string
  default     = null

  validation {
    condition     = var.review_topic == null || can(regex("^projects/[^/]+/topics/[^/]+$", var.review_topic))
    error_message = "review_topic must be projects/PROJECT/topics/TOPIC."
  }
}

variable "review_min_score" {
  description = "REVIEW_MIN_SCORE, of the link: a source below link_min_score gets a link.review event only if its best score is at or above this (0 to 1)."
  type        = number
  default     = 0.5

  validation {
    condition     = var.review_min_score >= 0 && var.review_min_score <= 1
    error_message = "review_min_score must be a number from 0 to 1."
  }
}

variable "review_max_events" {
  description = "REVIEW_MAX_EVENTS, of the link: at most this many link.review events per run, the best-scored first; 0: none."
  type        = number
  default     = 10000

  validation {
    condition     = var.review_max_events >= 0 && var.review_max_events <= 1000000000 && floor(var.review_max_events) == var.review_max_events
    error_message = "review_max_events must be a whole number from 0 to 1000000000."
  }
}

variable "review_max_instances" {
  description = "Most instances of the review function at once. Message ordering already applies one pipeline's decisions one message at a time; more instances serve more pipelines at once."
  type        = number
  default     = 1

  validation {
    condition     = var.review_max_instances >= 1 && var.review_max_instances <= 100 && floor(var.review_max_instances) == var.review_max_instances
    error_message = "review_max_instances must be a whole number from 1 to 100."
  }
}

variable "review_instance_concurrency" {
  description = "Decision messages one review instance handles at a time (its max_instance_request_concurrency and THREADS)."
  type        = number
  default     = 4

  validation {
    condition     = var.review_instance_concurrency >= 1 && var.review_instance_concurrency <= 80 && floor(var.review_instance_concurrency) == var.review_instance_concurrency
    error_message = "review_instance_concurrency must be a whole number from 1 to 80."
  }
}

# Tracing.

variable "tracing" {
  description = "Send each function's spans to Cloud Trace: sets OTEL_TRACES_EXPORTER=gcp_trace and OTEL_SERVICE_NAME (the function's name) and grants roles/cloudtrace.agent to the functions' service accounts."
  type        = bool
  default     = false
}

# The dashboard (dashboard.tf).

variable "dashboard" {
  description = "Create the Cloud Monitoring dashboard \"NAME\" and the log-based metrics it charts (NAME_outcomes, NAME_events, NAME_completed_lag, with the link NAME_link_*, and with the review NAME_review_*)."
  type        = bool
  default     = true
}

# BigQuery (bigquery.tf).

variable "bigquery" {
  description = "Write every message of the events topic to BigQuery: a dataset NAME_events (dashes become underscores) with the table events (Pub/Sub's write_metadata columns), a BigQuery subscription NAME-bigquery, and the view matches (one row per match event, deduplicated by ce-id)."
  type        = bool
  default     = false
}

variable "bigquery_location" {
  description = "Location of the BigQuery dataset; null: the region."
  type        = string
  default     = null
}

variable "bigquery_kms_key_name" {
  description = "Cloud KMS key (projects/P/locations/L/keyRings/R/cryptoKeys/K, in the dataset's location) that encrypts the BigQuery dataset; null uses Google-managed keys. BigQuery's service agent must hold the Cloud KMS CryptoKey Encrypter/Decrypter role on it (grant that outside this module)."
  type        = string
  default     = null

  validation {
    condition     = var.bigquery_kms_key_name == null || can(regex("^projects/[^/]+/locations/[^/]+/keyRings/[^/]+/cryptoKeys/[^/]+$", var.bigquery_kms_key_name))
    error_message = "bigquery_kms_key_name must be projects/PROJECT/locations/LOCATION/keyRings/RING/cryptoKeys/KEY."
  }
}

variable "bigquery_deletion_protection" {
  description = "Keep Terraform from deleting the BigQuery table and view, which hold the events' history. To drop them, apply with false first, then with bigquery = false."
  type        = bool
  default     = true
}

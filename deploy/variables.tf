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
  description = "Memory available to one function instance (service_config.available_memory)."
  type        = string
  default     = "512Mi"

  validation {
    condition     = can(regex("^[0-9]+(k|M|G|Ki|Mi|Gi)$", var.memory))
    error_message = "memory must be a number with one of the units k, M, G, Ki, Mi, Gi, e.g. 512Mi."
  }
}

variable "max_instances" {
  description = "Most function instances running at once (each handles one message at a time)."
  type        = number
  default     = 10

  validation {
    condition     = var.max_instances >= 1 && var.max_instances <= 1000 && floor(var.max_instances) == var.max_instances
    error_message = "max_instances must be a whole number from 1 to 1000."
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
  description = "Labels put on the function, topics, bucket and secret."
  type        = map(string)
  default     = {}
}

# The function's configuration (environment variables, see CONTRACT.md section 3).

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
  description = "Seconds one invocation polls before it hands the message back (POLL_BUDGET_S); below the function's 540 s timeout."
  type        = number
  default     = 480

  validation {
    condition     = var.poll_budget_s >= 1 && var.poll_budget_s < 540 && floor(var.poll_budget_s) == var.poll_budget_s
    error_message = "poll_budget_s must be a whole number of seconds from 1 to 539: event functions time out at 540 s."
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
  description = "Further environment variables of the function, e.g. CDF_API_VERSION, POLL_INITIAL_DELAY_S, POLL_MAX_DELAY_S, HTTP_TIMEOUT_S. Variables this module sets itself and secrets are refused."
  type        = map(string)
  default     = {}

  validation {
    condition = length(setintersection(keys(var.extra_environment_variables), [
      "CDF_PROJECT", "CDF_CLUSTER", "CDF_URL", "CDF_ALLOWED_PROJECTS", "IDP_TOKEN_URL", "IDP_CLIENT_ID",
      "IDP_CLIENT_SECRET", "IDP_SCOPES", "IDP_AUDIENCE", "CDF_TOKEN", "RELAY_TOPIC", "RELAY_ERROR_TOPIC",
      "POLL_BUDGET_S", "RUN_MAX_WAIT_S", "LOG_LEVEL",
    ])) == 0
    error_message = "extra_environment_variables must not set a variable that has its own module variable, nor IDP_CLIENT_SECRET or CDF_TOKEN."
  }
}

# Delivery.

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

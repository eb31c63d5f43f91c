terraform {
  # 1.5: preconditions, startswith() and the checks this module relies on.
  required_version = ">= 1.5.0"

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = ">= 5.0.0, < 8.0.0"
    }
    # 2.5.0: glob patterns in archive_file excludes (see .gcloudignore).
    archive = {
      source  = "hashicorp/archive"
      version = ">= 2.5.0"
    }
  }
}

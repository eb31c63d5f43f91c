"""Tests of deploy/: the Terraform module, its dashboard, checkov and deploy.sh, without a cloud."""

# The example project: one null_resource per environment, so the whole gate (plan,
# approval, apply, verify, promotion) can be tried without any cloud account.
#
# State: the local backend, at the path each environment's backend file names (see
# lockstep.yaml, backend_config_files). scripts/demo.sh points dev and staging at files
# under examples/state/tfstate/, so their state outlives each run's folder and a later
# release plans against what is deployed. A real project names shared state there.
terraform {
  required_version = ">= 1.0.0"
  backend "local" {}
  required_providers {
    null = {
      source  = "hashicorp/null"
      version = "2.1.2"
    }
  }
}

variable "app_version" {
  description = "The release being deployed; set in release.auto.tfvars by the release pull request."
  type        = string
}

variable "environment" {
  description = "Which environment this is; set by the environment's var file."
  type        = string
}

variable "replicas" {
  description = "How many instances the environment runs."
  type        = number
}

resource "null_resource" "app" {
  # A new version or size replaces the resource, so every release shows up in the plan.
  triggers = {
    app_version = var.app_version
    environment = var.environment
    replicas    = tostring(var.replicas)
  }
}

output "app_version" {
  value = var.app_version
}

output "environment" {
  value = var.environment
}

output "deployment_id" {
  value = null_resource.app.id
}

# A stand-in for real infrastructure: `terraform_data` is built into OpenTofu (and Terraform),
# so this plans and applies with no provider to download: it runs offline. Replace the resources
# with your own; the task file (task.yaml) stays the same.

terraform {
  required_version = ">= 1.6"

  # The state lives outside the task's working directory (that one is deleted when the task
  # ends): the plan step passes its path with `tofu init -backend-config=path=...`.
  backend "local" {}
}

variable "environment" {
  description = "Which copy of the stack this is; part of every resource's name."
  type        = string
  default     = "dev"
}

resource "terraform_data" "network" {
  input = {
    name = "net-${var.environment}"
    cidr = "10.42.0.0/16"
  }
}

resource "terraform_data" "database" {
  input = {
    name    = "db-${var.environment}"
    network = terraform_data.network.output.name
  }
}

resource "terraform_data" "app" {
  input = {
    name     = "app-${var.environment}"
    database = terraform_data.database.output.name
  }
}

output "app" {
  value = terraform_data.app.output
}

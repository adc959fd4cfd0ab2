# Seed 000's Concourse web job as far as workers go, with a STAND-IN for
# Concourse's TSA (concourse-standin tsa: an SSH server that lets in exactly
# the keys in authorized_worker_keys; it is not Concourse). The template
# renders every worker's public key from Vault with the concourse-web
# policy that `bootstrapd cluster init` writes, as the real web node's does.
# `make demo` and the end-to-end tests run it on a Nomad client named "web":
#
#   nomad job run -var standin=/path/to/concourse-standin \
#     -var listen=10.77.0.1:2222 -var host_key=/path/to/key concourse-web.nomad.hcl
#
# consul-template polls a LIST in Vault only every 5 minutes: a new `run`
# makes a new allocation, which renders the keys afresh (the tests do that
# after a retire to show the TSA refusing the retired worker's key).

variable "standin" {
  type        = string
  description = "path of the concourse-standin binary on the web node"
}

variable "listen" {
  type        = string
  description = "host:port the TSA stand-in listens on (Concourse's is 2222)"
}

variable "host_key" {
  type        = string
  description = "path of the TSA's private host key on the web node"
}

variable "run" {
  type    = string
  default = "1"
}

job "concourse-web" {
  type        = "service"
  datacenters = ["*"]

  meta {
    run = var.run
  }

  constraint {
    attribute = "${node.unique.name}"
    value     = "web"
  }

  group "web" {
    task "tsa" {
      driver = "raw_exec"
      config {
        command = var.standin
        args    = ["tsa", "-listen", var.listen, "-host-key", var.host_key, "-authorized-keys", "${NOMAD_SECRETS_DIR}/authorized_worker_keys"]
      }

      vault {
        policies = ["concourse-web"]
      }

      template {
        destination = "${NOMAD_SECRETS_DIR}/authorized_worker_keys"
        # The TSA reads the file at every connection: nothing to restart.
        change_mode = "noop"
        data        = <<-EOF
          {{ range secrets "kv/metadata/concourse/workers/" }}
          {{ with secret (printf "kv/data/concourse/workers/%s" .) }}
          {{ .Data.data.public_key }}
          {{ end }}
          {{ end }}
        EOF
      }

      resources {
        cpu    = 20
        memory = 64
      }
    }
  }
}

# The lab's headless bootstrapd (runit on Void, or systemd): it owns a
# dedicated provisioning VLAN, so it serves DHCP for it itself (pool), and
# enrolls every installed node into the lab's Nomad and Vault, where the
# Concourse worker system job runs on it.
interface       = "prov0"
server_address  = "10.77.0.2"
state_dir       = "/var/lib/bootstrapd"
netboot_dir     = "/var/lib/bootstrapd/netboot"
profiles_dir    = "/usr/local/share/bootstrapd/profiles"
default_profile = "void-nomad"

dhcp {
  mode       = "pool"
  subnet     = "10.77.0.0/24"
  range      = ["10.77.0.100", "10.77.0.199"]
  router     = "10.77.0.1"
  dns        = ["10.77.0.1"]
  domain     = "lab.example"
  lease_time = "12h"
}

api {
  socket     = "/run/bootstrapd.sock"
  listen     = "10.77.0.2:8081" # the operators' CLI over the lab network...
  token_file = "/etc/bootstrapd/api-token" # ...with this bearer token
}

node {
  authorized_keys = "/etc/bootstrapd/authorized_keys"
}

router {
  api           = "10.77.0.1:8729"
  ca_file       = "/etc/bootstrapd/lab-ca.pem"
  password_file = "/etc/bootstrapd/router-password"
  identity      = "lab-gw"
  interface     = "bridge"
  vlan_id       = 77
  api_from      = ["10.77.0.2"]
}

vault {
  address    = "https://vault.lab.example:8200"
  token_file = "/etc/bootstrapd/vault-token"
  ca_file    = "/etc/bootstrapd/lab-ca.pem"
}

nomad {
  servers           = ["10.77.0.10:4647", "10.77.0.11:4647", "10.77.0.12:4647"]
  address           = "https://nomad.lab.example:4646"
  token_file        = "/etc/bootstrapd/nomad-token"
  ca_file           = "/etc/bootstrapd/lab-ca.pem"
  tsa_host          = "ci.lab.example:2222"
  tsa_public_key    = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC7 ci-web"
  worker_vault_role = "concourse-worker"
  drain_deadline    = "1h"
}

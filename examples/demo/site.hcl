# The site `make demo` serves: a provisioning network that exists only inside
# a network namespace the demo creates (bridge br0, 10.77.0.1/24), so it can
# never answer DHCP on a real interface. Vault, Nomad and the router are the
# demo's too: dev agents and a RouterOS *stand-in* (bootstrapd's test router,
# which speaks the API wire protocol; it is not a MikroTik), all on br0.
interface       = "br0"
server_address  = "10.77.0.1"
state_dir       = "/tmp/bootstrapd-demo/state"
netboot_dir     = "/tmp/bootstrapd-demo/netboot" # iPXE + the imported stand-in installer
profiles_dir    = "../../profiles"                # the real void-nomad profile
default_profile = "void-nomad"

dhcp {
  mode       = "reservation" # only enrolled MACs get an answer
  subnet     = "10.77.0.0/24"
  range      = ["10.77.0.100", "10.77.0.199"]
  router     = "10.77.0.254" # the router stand-in
  dns        = ["10.77.0.254"]
  domain     = "demo.lab"
  lease_time = "1h"
}

api {
  socket = "/tmp/bootstrapd-demo/api.sock"
}

router {
  api           = "10.77.0.254:8729"
  # The stand-in's certificate is router-standin.pem beside this file.
  fingerprint   = "1cef6972e0e8c4526982e255f759d89c77d52b640b99a3111a2fb9da531d842a"
  password_file = "/tmp/bootstrapd-demo/router-password"
  identity      = "demo-gw"
  interface     = "ether2"
  vlan_id       = 77
  api_from      = ["10.77.0.1/32"]
}

vault {
  address    = "http://10.77.0.1:8200"
  token_file = "/tmp/bootstrapd-demo/vault-token"
}

nomad {
  servers        = ["10.77.0.1:4647"]
  address        = "http://10.77.0.1:4646"
  token_file     = "/tmp/bootstrapd-demo/nomad-token"
  stand_in       = true # the worker job runs a stand-in task, not Concourse
  raw_exec       = true
  drain_deadline = "30s"
  # Concourse's TSA, stand-in (concourse-standin tsa, on the demo's "web"
  # Nomad client): its host key is tsa-standin-host-key beside this file.
  tsa_host       = "10.77.0.1:2222"
  tsa_public_key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIK1mFF+HnDpAMey3TZ6HLdaZNGxAqhptgokhUknPWsAY"
  # The stand-in worker, served by bootstrapd at /stand-in/concourse-standin
  # and fetched by each node's worker task (sha256-checked).
  stand_in_worker = "/tmp/bootstrapd-demo/concourse-standin"
}

# The nodes install through bootstrapd's package cache of the demo's package
# repository stand-in (Debian's binaries and the real Nomad, over HTTP).
package_cache {
  upstream = "http://10.77.0.1:8081"
  dir      = "/tmp/bootstrapd-demo/xbps-cache"
}

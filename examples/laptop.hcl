# A laptop cabled to a new rack's provisioning switch (port eth1 here). The
# rack's MikroTik serves the LAN's DHCP, so bootstrapd runs as proxyDHCP:
# it never hands out addresses, it only tells PXE clients where to boot.
# bootstrapd also configures the router: a fresh one first gets
# `bootstrapd router bootstrap-script` (netinstall or its terminal), which
# lets this laptop in on the bootstrap address below.
interface       = "eth1"
state_dir       = "/var/lib/bootstrapd"
netboot_dir     = "/var/lib/bootstrapd/netboot"
profiles_dir    = "/usr/local/share/bootstrapd/profiles"
default_profile = "void-nomad"

dhcp {
  mode   = "proxy"
  subnet = "10.77.0.0/24"
  router = "10.77.0.1" # the MikroTik
  domain = "rack7.lab"
}

node {
  authorized_keys = "/home/ops/.ssh/id_ed25519.pub" # root's keys on every node
}

router {
  api           = "192.0.2.2:8729" # the bootstrap address until the first apply...
  fingerprint   = "3f7ae04d2b9c1e56a8f0d3c47b2e9a1650cd8e7f4a3b2c1d0e9f8a7b6c5d4e3f"
  password_file = "/etc/bootstrapd/router-password"
  identity      = "rack7-gw"
  interface     = "bridge"
  vlan_id       = 77
  dhcp          = "router" # RouterOS serves addresses; bootstrapd is proxyDHCP
  api_from      = ["192.0.2.1", "10.77.0.2"]
  bootstrap {
    interface = "ether1" # ...where this laptop is plugged in
    vlan_id   = 4000
    address   = "192.0.2.2/30"
    operator  = "192.0.2.1"
  }
}

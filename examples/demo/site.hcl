# The site `make demo` serves: a provisioning network that exists only inside
# a network namespace the demo creates (bridge br0, 10.77.0.1/24), so it can
# never answer DHCP on a real interface.
interface       = "br0"
state_dir       = "/tmp/bootstrapd-demo/state"
netboot_dir     = "../../netboot"
profiles_dir    = "profiles"
default_profile = "demo"

dhcp {
  mode       = "reservation" # only enrolled MACs get an answer
  subnet     = "10.77.0.0/24"
  range      = ["10.77.0.100", "10.77.0.199"]
  router     = "10.77.0.1"
  dns        = ["10.77.0.1"]
  domain     = "demo.lab"
  lease_time = "1h"
}

api {
  socket = "/tmp/bootstrapd-demo/api.sock"
}

# Void Linux (glibc or musl, whichever the imported NETBOOT initrd was built
# for) installed unattended by void-mklive's autoinstaller, then made a Nomad
# client by the post-install script. See profiles/void-nomad/*.tmpl.
#
# Node labels it reads (bootstrapd enroll -label k=v):
#   disk=/dev/vda                  install disk (default /dev/sda; wiped)
#   timezone=Europe/Berlin         default UTC
#   xbps_repository=https://...    mirror (default: the site's package_cache when
#                                  it has one, else repo-default; musl-aware);
#                                  nonfree is taken from <mirror>/nonfree
profile "void-nomad" {
  description = "Void Linux + Nomad client (Concourse worker capacity)"

  # The names `bootstrapd netboot import` gives the NETBOOT tarball's files.
  kernel = "void/vmlinuz"
  initrd = ["void/initrd"]

  # The NETBOOT initrd has no root to mount: root=/dev/null (as in
  # void-mklive's pxelinux.cfg), `auto` runs the autoinstaller, which fetches
  # autourl itself (it runs dhclient; no ip= needed).
  cmdline = "root=/dev/null auto autourl={{.ConfigURL}}/autoinstall.cfg console=tty0 console=ttyS0,115200n8 vconsole.unicode=1 vconsole.keymap=us locale.LANG=en_US.UTF-8 loglevel=4"

  install_timeout = "45m"
  local_boot      = "exit"

  templates = {
    "autoinstall.cfg" = "void-nomad/autoinstall.cfg.tmpl"
    "postinstall.sh"  = "void-nomad/postinstall.sh.tmpl"
  }

  nomad {
    datacenter = "dc1"
    node_pool  = "default"
    node_class = "ci"
    meta       = { concourse_worker = "true" }
  }
}

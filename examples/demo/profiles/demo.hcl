# A stand-in installer: a Debian kernel and a busybox initramfs whose /init
# gets an address by DHCP and reports to bootstrapd's status URL, the same
# call a real installer makes when it has finished.
profile "demo" {
  description     = "stand-in installer (Debian kernel + busybox) that reports back"
  kernel          = "demo/vmlinuz"
  initrd          = ["demo/initramfs.gz"]
  cmdline         = "console=ttyS0 panic=-1 quiet bootstrapd.report={{.StatusURL}}"
  install_timeout = "10m"
  local_boot      = "exit"
}

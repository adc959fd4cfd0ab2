# bootstrapd. `make help` lists the targets.
# Go's official tarball installs to /usr/local/go, which root's PATH often
# lacks; the scripts below run `go` too.
export PATH := $(PATH):/usr/local/go/bin
GO        ?= go
BIN       := bin/bootstrapd
VERSION   ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
IPXE_DIR  ?= /usr/lib/ipxe
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2
# make install: where to, and which service files (default: the ones this
# machine's init system uses; SYSTEMD=1 or RUNIT=1 forces one).
PREFIX    ?= /usr/local
DESTDIR   ?=
SYSTEMD   ?= $(shell test -d /run/systemd/system && echo 1)
RUNIT     ?= $(shell test -d /etc/runit && echo 1)

.PHONY: help demo build deps test lint netboot bench bench-dhcp bench-files bench-storm fuzz clean install

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

demo: ## a rack bring-up in network namespaces, from bare metal to ready (NODES=3 for three; needs root)
	scripts/demo.sh

build: ## build bin/bootstrapd
	$(GO) build -ldflags "-X main.version=$(VERSION)" -o $(BIN) ./cmd/bootstrapd

# Packages whose goroutines share state: their tests run under the race
# detector too.
RACE_PKGS := ./internal/inventory/... ./internal/store/... ./internal/pxe/... ./internal/daemon/... ./internal/api/... ./internal/routeros/...

# Everything the tests need that is not Go: Debian's packages, and peers
# built once and cached in /var/cache/bootstrapd-test by version (the test
# kernel, Vault and Nomad from their Go modules, the Void stand-in). A cold
# run takes about 12 minutes besides apt (Vault and Nomad: 11; the kernel
# and the stand-in: 10 s each), a warm one seconds.
deps: ## install the Debian packages and build the cached test peers (needs root; the first run takes ~12 min)
	scripts/deps.sh
	scripts/testkernel.sh >/dev/null
	@scripts/clusterbins.sh >/tmp/bootstrapd-clusterbins.log 2>&1 || { tail -n 40 /tmp/bootstrapd-clusterbins.log; exit 1; }
	scripts/standin-void.sh >/dev/null

test: deps netboot ## run every test, and the race detector on the concurrent packages (needs root: network namespaces, QEMU)
	$(GO) test -race -count=1 -timeout 20m $(RACE_PKGS)
	$(GO) test -count=1 -timeout 40m ./...

lint: ## gofmt, go vet, staticcheck, shellcheck
	@test -z "$$(gofmt -l .)" || { gofmt -l .; echo "gofmt: the files above need formatting"; exit 1; }
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...
	shellcheck scripts/*.sh .ci/run testdata/initramfs/init testdata/initramfs/udhcpc.script testdata/voidinstaller/init testdata/voidinstaller/target-passwd testdata/voidinstaller/stubs/* testdata/voidinstaller/dracut-init testdata/voidinstaller/pkgs/*/etc/sv/*/* testdata/voidinstaller/pkgs/*/etc/runit/[123] testdata/voidinstaller/pkgs/*/etc/runit/ctrlaltdel testdata/voidinstaller/pkgs/*/usr/bin/* contrib/runit/bootstrapd/run contrib/runit/bootstrapd/log/run

netboot: ## put the iPXE binaries from Debian's ipxe package into netboot/
	@test -f $(IPXE_DIR)/undionly.kpxe || { echo "missing $(IPXE_DIR)/undionly.kpxe: apt-get install ipxe"; exit 1; }
	install -m 0644 $(IPXE_DIR)/undionly.kpxe $(IPXE_DIR)/ipxe.efi $(IPXE_DIR)/snponly.efi netboot/

bench: bench-dhcp bench-files bench-storm ## the three benchmarks below, one after the other (needs root)

bench-dhcp: build ## DHCP load: bootstrapd vs Kea under perfdhcp (needs root)
	scripts/bench-dhcp.sh

bench-files: build ## HTTP and TFTP files: bootstrapd vs nginx and tftpd-hpa, side by side (needs root)
	scripts/bench-files.sh

# STORM_NODES and STORM_INITRD_MB size the storm; the daemon's log is kept
# in STORM_LOG when set.
STORM_NODES     ?= 500
STORM_INITRD_MB ?= 50
bench-storm: ## a boot storm: STORM_NODES (500) simulated nodes PXE-boot and install at once against one bootstrapd (needs root)
	BOOTSTRAPD_STORM_NODES=$(STORM_NODES) BOOTSTRAPD_STORM_INITRD_MB=$(STORM_INITRD_MB) BOOTSTRAPD_STORM_LOG=$(STORM_LOG) \
		$(GO) test -count=1 -run '^$$' -bench BootStorm -benchtime 1x -timeout 30m ./internal/e2e/

fuzz: ## run every fuzz target for FUZZTIME (default 60s)
	FUZZTIME=$(FUZZTIME) GO=$(GO) scripts/fuzz.sh

install: build ## install the binary, the profiles, the service file (not enabled) and /etc/bootstrapd/site.hcl.example
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)/etc/bootstrapd $(DESTDIR)$(PREFIX)/share/bootstrapd/profiles/void-nomad
	install -m 0755 $(BIN) $(DESTDIR)$(PREFIX)/bin/bootstrapd
	install -m 0644 profiles/*.hcl profiles/*.tmpl $(DESTDIR)$(PREFIX)/share/bootstrapd/profiles/
	install -m 0644 profiles/void-nomad/* $(DESTDIR)$(PREFIX)/share/bootstrapd/profiles/void-nomad/
	install -m 0644 examples/lab.hcl $(DESTDIR)/etc/bootstrapd/site.hcl.example
ifeq ($(SYSTEMD),1)
	install -d $(DESTDIR)/etc/systemd/system
	sed 's|/usr/local/bin/bootstrapd|$(PREFIX)/bin/bootstrapd|' contrib/systemd/bootstrapd.service >$(DESTDIR)/etc/systemd/system/bootstrapd.service
	chmod 0644 $(DESTDIR)/etc/systemd/system/bootstrapd.service
	@echo "systemd: write /etc/bootstrapd/site.hcl, then: systemctl daemon-reload && systemctl enable --now bootstrapd"
endif
ifeq ($(RUNIT),1)
	install -d $(DESTDIR)/etc/sv/bootstrapd/log
	install -m 0755 contrib/runit/bootstrapd/run $(DESTDIR)/etc/sv/bootstrapd/run
	install -m 0755 contrib/runit/bootstrapd/log/run $(DESTDIR)/etc/sv/bootstrapd/log/run
	@echo "runit: write /etc/bootstrapd/site.hcl, then: ln -s /etc/sv/bootstrapd /var/service/"
endif

clean:
	rm -rf bin

# bootstrapd. `make help` lists the targets.
GO        ?= go
BIN       := bin/bootstrapd
VERSION   ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
IPXE_DIR  ?= /usr/lib/ipxe
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2

.PHONY: help demo build test lint netboot bench clean

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

demo: ## PXE-boot one node in QEMU through bootstrapd, in a network namespace (needs root)
	scripts/demo.sh

build: ## build bin/bootstrapd
	$(GO) build -ldflags "-X main.version=$(VERSION)" -o $(BIN) ./cmd/bootstrapd

test: netboot ## run every test (needs root: tests make network namespaces and run QEMU)
	$(GO) test -count=1 -timeout 40m ./...

lint: ## gofmt, go vet, staticcheck, shellcheck
	@test -z "$$(gofmt -l .)" || { gofmt -l .; echo "gofmt: the files above need formatting"; exit 1; }
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...
	shellcheck scripts/*.sh .ci/run testdata/initramfs/init testdata/initramfs/udhcpc.script

netboot: ## put the iPXE binaries from Debian's ipxe package into netboot/
	@test -f $(IPXE_DIR)/undionly.kpxe || { echo "missing $(IPXE_DIR)/undionly.kpxe: apt-get install ipxe"; exit 1; }
	install -m 0644 $(IPXE_DIR)/undionly.kpxe $(IPXE_DIR)/ipxe.efi $(IPXE_DIR)/snponly.efi netboot/

bench: build ## DHCP load: bootstrapd vs Kea under perfdhcp (needs root)
	scripts/bench-dhcp.sh

clean:
	rm -rf bin

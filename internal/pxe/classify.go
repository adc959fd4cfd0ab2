// Package pxe holds the boot services: DHCP, TFTP and the node-facing HTTP
// that serves iPXE scripts and netboot assets.
//
// Deciding what a client gets is done by plain functions of the request
// (this file), so it is tested without sockets; the listeners only move bytes.
package pxe

import (
	"bytes"
	"strings"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
)

// Client is what a DHCP request tells us about the firmware that sent it.
type Client struct {
	Arch       iana.Arch
	HasArch    bool
	PXE        bool // vendor class PXEClient or HTTPClient, or an arch option
	IPXE       bool // already running iPXE: send the script, not the binary
	HTTPClient bool // UEFI HTTP boot: wants a URL and option 60 "HTTPClient"
}

// optEtherboot is option 175, which iPXE sends with its feature flags; some
// iPXE builds change the user class, but they all send this.
const optEtherboot = dhcpv4.GenericOptionCode(175)

// Classify reads the boot-relevant options of a request.
func Classify(m *dhcpv4.DHCPv4) Client {
	var c Client
	if archs := m.ClientArch(); len(archs) > 0 {
		c.Arch, c.HasArch = archs[0], true
	}
	vc := m.ClassIdentifier()
	c.HTTPClient = strings.HasPrefix(vc, "HTTPClient") || isHTTPArch(c.Arch) && c.HasArch
	c.PXE = c.HasArch || strings.HasPrefix(vc, "PXEClient") || c.HTTPClient
	c.IPXE = m.Options.Has(optEtherboot)
	for _, uc := range m.UserClass() {
		if uc == "iPXE" {
			c.IPXE = true
		}
	}
	// Option 77 may also arrive RFC 3004-encoded by other clients.
	if raw := m.Options.Get(dhcpv4.OptionUserClassInformation); bytes.Contains(raw, []byte("iPXE")) {
		c.IPXE = true
	}
	return c
}

func isHTTPArch(a iana.Arch) bool {
	switch a {
	case iana.EFI_X86_HTTP, iana.EFI_X86_64_HTTP, iana.EFI_BC_HTTP, iana.EFI_ARM32_HTTP, iana.EFI_ARM64_HTTP, iana.INTEL_X86PC_HTTP:
		return true
	}
	return false
}

// BootFiles names the iPXE binary per firmware family, and where the
// HTTP-side entry points are.
type BootFiles struct {
	BIOS, EFI, ARM64 string
	ScriptURL        string // iPXE clients chain this (…/boot.ipxe)
	AssetURL         string // base URL of the netboot directory over HTTP
}

// BootFile picks what the client should load next: the HTTP script for
// iPXE (this is the chainload loop break), an iPXE binary by TFTP name for
// PXE firmware, or an absolute URL for UEFI HTTP boot. override is a
// per-node file that replaces the arch default. ok is false when there is
// nothing suitable (a non-PXE client, or an arch with no binary configured).
func (b BootFiles) BootFile(c Client, override string) (file string, ok bool) {
	if !c.PXE && !c.IPXE {
		return "", false
	}
	if c.IPXE {
		return b.ScriptURL, true
	}
	file = override
	if file == "" {
		file = b.byArch(c)
	}
	if file == "" {
		return "", false
	}
	if c.HTTPClient {
		return b.AssetURL + file, true
	}
	return file, true
}

func (b BootFiles) byArch(c Client) string {
	switch c.Arch {
	case iana.INTEL_X86PC:
		return b.BIOS
	case iana.EFI_IA32, iana.EFI_X86_64, iana.EFI_BC, iana.EFI_X86_HTTP, iana.EFI_X86_64_HTTP:
		return b.EFI
	case iana.EFI_ARM64, iana.EFI_ARM64_HTTP:
		return b.ARM64
	}
	if !c.HasArch {
		// Old PXE ROMs that send a PXEClient vendor class but no option 93
		// are BIOS machines.
		return b.BIOS
	}
	return ""
}

// ArchName is a short label for logs and the inventory.
func ArchName(c Client) string {
	if !c.HasArch {
		return "bios"
	}
	switch c.Arch {
	case iana.INTEL_X86PC:
		return "bios"
	case iana.EFI_IA32:
		return "efi-ia32"
	case iana.EFI_X86_64, iana.EFI_BC:
		return "efi-x64"
	case iana.EFI_ARM64:
		return "efi-arm64"
	case iana.EFI_X86_64_HTTP, iana.EFI_X86_HTTP:
		return "http-x64"
	case iana.EFI_ARM64_HTTP:
		return "http-arm64"
	}
	return c.Arch.String()
}

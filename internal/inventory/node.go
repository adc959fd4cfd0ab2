package inventory

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"time"
)

// State is where a node is in its life.
type State string

// The lifecycle. A node moves along discovered -> ... -> ready; failed and
// retiring/retired can be reached from the middle of it.
const (
	Discovered State = "discovered"
	Enrolled   State = "enrolled"
	Installing State = "installing"
	Installed  State = "installed"
	Joined     State = "joined"
	Ready      State = "ready"
	Failed     State = "failed"
	Retiring   State = "retiring"
	Retired    State = "retired"
)

// transitions lists, for each state, where a node may go next. Going back to
// Enrolled is how reinstall and re-enroll are spelled.
var transitions = map[State][]State{
	Discovered: {Enrolled},
	Enrolled:   {Installing, Failed, Retiring},
	Installing: {Installed, Failed, Enrolled, Retiring},
	Installed:  {Joined, Failed, Enrolled, Retiring},
	Joined:     {Ready, Failed, Enrolled, Retiring},
	Ready:      {Joined, Failed, Enrolled, Retiring},
	Failed:     {Enrolled, Retiring},
	Retiring:   {Retired, Failed},
	Retired:    {Enrolled},
}

// CanMove reports whether from -> to is a legal transition.
func CanMove(from, to State) bool { return slices.Contains(transitions[from], to) }

// Local-boot methods for an installed node. Firmware differs in which of
// these actually falls through to the disk, so it is chosen per node.
const (
	BootExit    = "exit"    // iPXE exits; the firmware tries the next boot device
	BootSanboot = "sanboot" // iPXE boots the first local disk itself
	BootNone    = "none"    // no script (404): the boot script retries, gives up and iPXE exits
)

// Node is one machine bootstrapd knows about, keyed by its MAC.
type Node struct {
	MAC        string            `json:"mac"`
	Hostname   string            `json:"hostname,omitempty"`
	IP         netip.Addr        `json:"ip,omitzero"`
	Profile    string            `json:"profile,omitempty"`
	State      State             `json:"state"`
	Reason     string            `json:"reason,omitempty"` // why it failed
	BootMethod string            `json:"boot_method,omitempty"`
	BootFile   string            `json:"boot_file,omitempty"` // per-node override of the arch default
	Labels     map[string]string `json:"labels,omitempty"`    // free-form, for templates (and, later, Nomad meta)
	Arch       string            `json:"arch,omitempty"`      // last client arch seen on DHCP
	LastSeen   time.Time         `json:"last_seen,omitzero"`
	// SeenOn is the subnet of the instance whose DHCP saw the node last:
	// with racks sharing an inventory, the rack it is cabled to.
	SeenOn netip.Prefix `json:"seen_on,omitzero"`
	// Deadline is when a node waiting in its state (installing, say) is
	// failed for taking too long. Zero: no deadline.
	Deadline time.Time `json:"deadline,omitzero"`
	Created  time.Time `json:"created"`
	History  []Event   `json:"history,omitempty"`

	// The install token is stored only as a hash: a copy of the store does
	// not let anyone claim a node's install.
	TokenHash    []byte    `json:"token_hash,omitempty"`
	TokenExpires time.Time `json:"token_expires,omitzero"`
	// TokenAddr is the address the install token was handed to (the node's
	// reservation, or whatever fetched its script where bootstrapd hands
	// out no addresses): the token is accepted only from there.
	TokenAddr netip.Addr `json:"token_addr,omitzero"`
	// JoinClaimed is when the join bundle was handed out with the current
	// token; it is handed out once per install.
	JoinClaimed time.Time `json:"join_claimed,omitzero"`
	// VaultAccessor is the accessor of the Vault token in the node's last
	// join bundle: retire revokes the token by it. It cannot be used as
	// the token.
	VaultAccessor string `json:"vault_accessor,omitempty"`
	// Alert is the last sign of someone else using the node's install: a
	// second join claim, its token from another address, a script fetched
	// after its bundle was out. Reinstall clears it.
	Alert string `json:"alert,omitempty"`
	// Pending are the teardown steps a retiring node still waits for
	// ("drain", "revoke token", ...), so that retire can say what is left
	// rather than claim it is done; each goes when it is done.
	Pending []string `json:"pending,omitempty"`
	// BMC is the node's controller for power and one-time boot, when it
	// has one: where it is and where its credentials are, never them.
	BMC *BMC `json:"bmc,omitempty"`
	// InstallRetries counts the power-cycle retries of the current
	// install (bmc install_retries bounds them); enroll and reinstall
	// start it afresh.
	InstallRetries int `json:"install_retries,omitempty"`

	// rev is the version of the stored record this one was read as, or
	// store.Own once this instance has written it: a write of the node
	// says what it replaces (store.Entry.Rev). Not stored.
	rev int64
	// seenStored is LastSeen as the store holds it (as written or read).
	// Not stored.
	seenStored time.Time
}

// Event is one recorded transition or report.
type Event struct {
	At    time.Time `json:"at"`
	From  State     `json:"from,omitempty"`
	To    State     `json:"to,omitempty"`
	Cause string    `json:"cause"`
	Actor string    `json:"actor,omitempty"`
	// Count is how many times in a row this note was made (0 or 1: once);
	// repeats update At and Count instead of growing the history.
	Count int `json:"count,omitempty"`
}

// ParseMAC accepts the notations people paste (52:54:00:aa:bb:cc,
// 52-54-00-AA-BB-CC, 5254.00aa.bbcc) and returns the canonical lower-case
// colon form, which is the key everywhere.
func ParseMAC(s string) (string, error) {
	hw, err := net.ParseMAC(s)
	if err == nil && len(hw) == 6 {
		return hw.String(), nil
	}
	if len(s) == 12 {
		if hw, err := net.ParseMAC(fmt.Sprintf("%s:%s:%s:%s:%s:%s", s[0:2], s[2:4], s[4:6], s[6:8], s[8:10], s[10:12])); err == nil {
			return hw.String(), nil
		}
	}
	return "", fmt.Errorf("%q is not an Ethernet MAC address (want 6 bytes, like 52:54:00:aa:bb:cc)", s)
}

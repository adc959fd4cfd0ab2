package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"

	"github.com/bootstrapd/bootstrapd/internal/inventory"
)

// Power actions, as POST /v1/nodes/{ref}/power and the lifecycle name them.
const (
	PowerStatus = "status"
	PowerOn     = "on"
	PowerOff    = "off"
	PowerCycle  = "cycle"
	// PowerInstall sets a one-time PXE boot and powers the node on, or
	// cycles it when it is on: what enroll and reinstall -power do.
	PowerInstall = "install"
	// PowerWake sends a Wake-on-LAN magic packet: machines without a BMC.
	PowerWake = "wake"
)

// PowerRequest is the body of POST /v1/nodes/{ref}/power.
type PowerRequest struct {
	Action string `json:"action"`        // status, on, off or cycle
	WoL    bool   `json:"wol,omitempty"` // with on: a Wake-on-LAN magic packet instead of the BMC
}

// PowerResult is what a power action did, in the BMC's own words. It never
// holds a credential: the BMC is named by its URL.
type PowerResult struct {
	Node    string `json:"node"`
	MAC     string `json:"mac"`
	BMC     string `json:"bmc,omitempty"`
	Action  string `json:"action"`
	State   string `json:"state,omitempty"`   // the power state, when the action read it
	Answer  string `json:"answer,omitempty"`  // what the BMC said
	Warning string `json:"warning,omitempty"` // done, but not all of it (a one-time boot refused)
	Error   string `json:"error,omitempty"`   // not done: why, naming the node and the BMC
}

// Power drives nodes' BMCs and Wake-on-LAN for the API. Act records every
// action but status in the node's history, and is bounded by the BMC
// timeout: it runs in the daemon's background, so the request returns
// when it is done or when the client goes away, whichever is first.
type Power interface {
	Act(ctx context.Context, n inventory.Node, action, actor string) PowerResult
	// Allowed says why the site refuses a node's BMC (redfish+http
	// without insecure_http), or nil.
	Allowed(b inventory.BMC) error
	// DefaultOn is the site's power_on_enroll: what enroll does without
	// -power.
	DefaultOn() bool
}

// NodeReply is a node as enroll and reinstall return it, with what its
// power action did when one was asked for.
type NodeReply struct {
	inventory.Node
	Power *PowerResult `json:"power,omitempty"`
}

// BMCRequest is the body of PUT /v1/nodes/{ref}/bmc: the node's BMC, or
// none (an empty URL).
type BMCRequest struct {
	URL         string `json:"url"`
	Credentials string `json:"credentials,omitempty"`
}

func (s *Server) powerRoutes(mux *http.ServeMux) {
	mux.HandleFunc("POST /v1/nodes/{ref}/power", func(w http.ResponseWriter, r *http.Request) {
		var req PowerRequest
		if !decode(w, r, &req) {
			return
		}
		switch {
		case req.Action == PowerOn && req.WoL:
			req.Action = PowerWake
		case req.WoL:
			reply(w, http.StatusBadRequest, Error{Error: "wol goes with on only: Wake-on-LAN can only wake a machine"})
			return
		}
		switch req.Action {
		case PowerStatus, PowerOn, PowerOff, PowerCycle, PowerWake:
		default:
			reply(w, http.StatusBadRequest, Error{Error: fmt.Sprintf("power action %q is not one of status, on, off, cycle", req.Action)})
			return
		}
		n, err := s.Inv.Find(r.PathValue("ref"))
		if err != nil {
			fail(w, err)
			return
		}
		res, err := s.power(r.Context(), n, req.Action)
		if err != nil {
			fail(w, err)
			return
		}
		if res.Error != "" {
			// The daemon is fine; the BMC, or the way to it, is not.
			reply(w, http.StatusBadGateway, Error{Error: res.Error})
			return
		}
		reply(w, http.StatusOK, res)
	})
	mux.HandleFunc("PUT /v1/nodes/{ref}/bmc", func(w http.ResponseWriter, r *http.Request) {
		var req BMCRequest
		if !decode(w, r, &req) {
			return
		}
		var b *inventory.BMC
		if req.URL != "" {
			pb, err := s.checkBMC(req.URL, req.Credentials)
			if err != nil {
				reply(w, http.StatusBadRequest, Error{Error: err.Error()})
				return
			}
			b = &pb
		} else if req.Credentials != "" {
			reply(w, http.StatusBadRequest, Error{Error: "credentials without a BMC URL: give the URL too, or none to remove the BMC"})
			return
		}
		n, err := s.Inv.SetBMC(r.Context(), r.PathValue("ref"), b, "api")
		if err != nil {
			fail(w, err)
			return
		}
		reply(w, http.StatusOK, public(n))
	})
}

// errNoPower is a power action asked of a daemon without power control.
var errNoPower = errors.New("this bootstrapd has no power control")

// power runs a power action on n, an enrolled node.
func (s *Server) power(ctx context.Context, n inventory.Node, action string) (PowerResult, error) {
	if n.State == inventory.Discovered || n.State == inventory.Retired {
		return PowerResult{}, fmt.Errorf("%w: %s (%s) is %s; enroll it first (with -bmc)", inventory.ErrConflict, n.MAC, n.Hostname, n.State)
	}
	if err := s.canPower(n, action); err != nil {
		return PowerResult{}, err
	}
	return s.Power.Act(ctx, n, action, "api"), nil
}

// canPower says why action cannot be run on n, or nil.
func (s *Server) canPower(n inventory.Node, action string) error {
	switch {
	case s.Power == nil:
		return errNoPower
	case n.BMC == nil && action != PowerWake:
		return fmt.Errorf("%w: %s (%s) has no BMC: give it one with `bootstrapd node bmc %s ipmi://...` (or redfish://), or wake it with `bootstrapd power on -wol %s`",
			inventory.ErrConflict, n.Hostname, n.MAC, n.Hostname, n.Hostname)
	}
	return nil
}

// checkBMC parses a BMC and asks the site whether it may be used.
func (s *Server) checkBMC(rawURL, creds string) (inventory.BMC, error) {
	b, err := inventory.ParseBMC(rawURL, creds)
	if err != nil {
		return b, err
	}
	if s.Power != nil {
		err = s.Power.Allowed(b)
	}
	return b, err
}

// decode reads a JSON body into v, refusing unknown fields; an empty body
// is v's zero value. It answers 400 itself and returns false on a bad one.
func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(r.Body) // bounded by Handler
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil && !errors.Is(err, io.EOF) {
		reply(w, http.StatusBadRequest, Error{Error: "bad request body: " + err.Error()})
		return false
	}
	return true
}

// Power runs a power action on a node: status, on, off, cycle, or on with
// wol. A BMC's failure is an error naming the node and the BMC.
func (c *Client) Power(ctx context.Context, ref string, req PowerRequest) (PowerResult, error) {
	var out PowerResult
	return out, c.do(ctx, http.MethodPost, "/v1/nodes/"+url.PathEscape(ref)+"/power", req, &out)
}

// SetBMC gives a node a BMC, changes it, or (an empty URL) removes it.
func (c *Client) SetBMC(ctx context.Context, ref string, req BMCRequest) (inventory.Node, error) {
	var out inventory.Node
	return out, c.do(ctx, http.MethodPut, "/v1/nodes/"+url.PathEscape(ref)+"/bmc", req, &out)
}

// FirmwareLabel is the label that says a node's firmware, uefi or bios,
// for its one-time PXE boot before DHCP has seen it (after that, the arch
// it sent wins unless the label says otherwise).
const FirmwareLabel = "firmware"

// enrollPower checks an enroll request's BMC and power settings before
// anything is enrolled, and says which power action follows ("" for none).
func (s *Server) enrollPower(req EnrollRequest) (*inventory.BMC, string, error) {
	var b *inventory.BMC
	if req.BMC != "" {
		pb, err := s.checkBMC(req.BMC, req.BMCCredentials)
		if err != nil {
			return nil, "", err
		}
		b = &pb
	} else if req.BMCCredentials != "" {
		return nil, "", errors.New("-bmc-credentials without -bmc: give the node's BMC URL too")
	}
	switch fw := req.Labels[FirmwareLabel]; fw {
	case "", "uefi", "bios":
	default:
		return nil, "", fmt.Errorf("label %s=%s: the firmware is uefi or bios", FirmwareLabel, fw)
	}
	power := req.Power != nil && *req.Power
	switch {
	case power && req.WoL:
		return nil, "", errors.New("-power or -wol, not both: -power uses the node's BMC, -wol is for a machine without one")
	case power && b == nil:
		return nil, "", errors.New("-power needs the node's BMC (-bmc ipmi://... or redfish://...); a machine without one can be woken with -wol")
	case (power || req.WoL) && s.Power == nil:
		return nil, "", errNoPower
	case req.WoL:
		return b, PowerWake, nil
	case power || req.Power == nil && b != nil && s.Power != nil && s.Power.DefaultOn():
		return b, PowerInstall, nil
	}
	return b, "", nil
}

// powerAfter runs action ("" for none) on a node just enrolled or sent to
// reinstall, and returns the node as it is then, with the action's result:
// the node is enrolled whatever the BMC says.
func (s *Server) powerAfter(ctx context.Context, n inventory.Node, action string) NodeReply {
	if action == "" {
		return NodeReply{Node: public(n)}
	}
	res := s.Power.Act(ctx, n, action, "api")
	if now, err := s.Inv.Find(n.MAC); err == nil {
		n = now // with the power events
	}
	return NodeReply{Node: public(n), Power: &res}
}

package api

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"

	"github.com/bootstrapd/bootstrapd/internal/inventory"
	"github.com/bootstrapd/bootstrapd/internal/profile"
)

func (s *Server) lifecycleRoutes(mux *http.ServeMux) {
	mux.HandleFunc("POST /v1/nodes/{ref}/retire", func(w http.ResponseWriter, r *http.Request) {
		n, err := s.Inv.Retire(r.Context(), r.PathValue("ref"), "api")
		if err != nil {
			fail(w, err)
			return
		}
		reply(w, http.StatusOK, public(n))
	})
	mux.HandleFunc("POST /v1/nodes/{ref}/reinstall", func(w http.ResponseWriter, r *http.Request) {
		var req PowerAfter
		if !decode(w, r, &req) {
			return
		}
		action := ""
		switch {
		case req.Power && req.WoL:
			reply(w, http.StatusBadRequest, Error{Error: "-power or -wol, not both: -power uses the node's BMC, -wol is for a machine without one"})
			return
		case req.Power:
			action = PowerInstall
		case req.WoL:
			action = PowerWake
		}
		if action != "" {
			// Refused before the reinstall, not after it.
			n, err := s.Inv.Find(r.PathValue("ref"))
			if err == nil {
				err = s.canPower(n, action)
			}
			if err != nil {
				fail(w, err)
				return
			}
		}
		n, err := s.Inv.Reinstall(r.Context(), r.PathValue("ref"), "api")
		if err != nil {
			fail(w, err)
			return
		}
		reply(w, http.StatusOK, s.powerAfter(r.Context(), n, action))
	})
	mux.HandleFunc("PUT /v1/nodes/{ref}/boot-method", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			BootMethod string `json:"boot_method"`
		}
		if !decode(w, r, &req) {
			return
		}
		n, err := s.Inv.SetBootMethod(r.Context(), r.PathValue("ref"), req.BootMethod, "api")
		if err != nil {
			fail(w, err)
			return
		}
		reply(w, http.StatusOK, public(n))
	})
	mux.HandleFunc("GET /v1/events", s.events)
	mux.HandleFunc("GET /v1/profiles", func(w http.ResponseWriter, r *http.Request) {
		out := []ProfileInfo{}
		for _, name := range profile.Names(s.Profiles) {
			p := s.Profiles[name]
			out = append(out, ProfileInfo{Name: p.Name, Description: p.Description, Kernel: p.Kernel, Initrd: p.Initrd,
				InstallTimeout: p.Timeout.String(), LocalBoot: p.LocalBoot, Default: name == s.DefaultProfile, File: p.File})
		}
		reply(w, http.StatusOK, out)
	})
}

// ProfileInfo is a profile as `bootstrapd profiles` shows it.
type ProfileInfo struct {
	Name           string   `json:"name"`
	Description    string   `json:"description,omitempty"`
	Kernel         string   `json:"kernel"`
	Initrd         []string `json:"initrd,omitempty"`
	InstallTimeout string   `json:"install_timeout"`
	LocalBoot      string   `json:"local_boot,omitempty"`
	Default        bool     `json:"default,omitempty"`
	File           string   `json:"file"`
}

// events streams the event log as JSON lines: those after ?since=N, then,
// with ?follow=1, new ones as they happen until the client goes away.
// ?node=<mac|hostname> keeps one node's.
func (s *Server) events(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	since, err := strconv.ParseUint(q.Get("since"), 10, 64)
	if q.Get("since") != "" && err != nil {
		reply(w, http.StatusBadRequest, Error{Error: "since must be an event number"})
		return
	}
	var mac string
	if ref := q.Get("node"); ref != "" {
		n, err := s.Inv.Find(ref)
		if err != nil {
			fail(w, err)
			return
		}
		mac = n.MAC
	}
	follow := q.Get("follow") == "1" || q.Get("follow") == "true"
	w.Header().Set("Content-Type", "application/x-ndjson")
	enc := json.NewEncoder(w)
	rc := http.NewResponseController(w)
	s.follow(r.Context(), since, nil, func(e inventory.LogEvent) error {
		if mac != "" && e.MAC != mac {
			return nil
		}
		return enc.Encode(e)
	}, func(bool) error {
		rc.Flush()
		if !follow {
			return errStreamEnd
		}
		return nil
	})
}

// errStreamEnd ends a stream that was asked for what is there now only.
var errStreamEnd = errors.New("end of stream")

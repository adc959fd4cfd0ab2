package routerostest

import (
	"fmt"
	"maps"
	"net"
)

// Reboot drops every connection, as a router restarting does: a client's
// next command on its old session fails (EOF, or a reset), and it must log
// in again. The configuration stays and the listeners keep accepting, so
// a new session works at once. The router itself never said goodbye on
// the old sessions: no !fatal is sent.
func (r *Router) Reboot() {
	r.mu.Lock()
	conns := make([]net.Conn, 0, len(r.conns))
	for c := range r.conns {
		conns = append(conns, c)
	}
	r.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
}

// Upgrade reboots the router into another release (see Reboot): the
// configuration is kept, a renamed property carries its value over (7.24's
// /ip/service available-from takes address's, and back on a downgrade),
// properties the release lacks are dropped, and /system/resource reports
// the new version. It panics on a version it cannot read, which is a bug
// in the test.
func (r *Router) Upgrade(version string) {
	ver, err := parseVersion(version)
	if err != nil {
		panic(err)
	}
	r.mu.Lock()
	old := r.st
	st := newStore(ver)
	maps.Copy(st.next, old.next)
	for path, t := range old.tables {
		m, ok := st.menus[path]
		if !ok {
			continue
		}
		var rows []*row
		for _, rw := range t.rows {
			// Connection rows belong to the sessions the reboot ends.
			if path == pathService && rw.vals["connection"] == "true" {
				continue
			}
			vals := map[string]string{}
			for k, val := range rw.vals {
				k = renamed(path, k, m)
				if _, ok := m.prop(k); ok {
					vals[k] = val
				}
			}
			rows = append(rows, &row{id: rw.id, vals: vals})
		}
		st.tables[path].rows = rows
	}
	r.st, r.verText = st, version
	st.tables[pathResource].rows[0].vals["version"] = resourceVersion(version, ver)
	r.mu.Unlock()
	r.Reboot()
}

// renamed is the name property k of path has in menu m's release: an
// upgrade carries a renamed property's value over, as RouterOS migrates
// its configuration.
func renamed(path, k string, m *menu) string {
	if _, ok := m.prop(k); ok {
		return k
	}
	for _, rn := range [...]struct{ path, old, new string }{
		{pathService, "address", "available-from"}, // 7.24 (community.routeros PR #475)
		{pathDHCPServer, "src-address", "server-address"},
	} {
		switch {
		case rn.path != path:
		case k == rn.old:
			return rn.new
		case k == rn.new:
			return rn.old
		}
	}
	return k
}

// resourceVersion is /system/resource's version: "7.19 (stable)".
func resourceVersion(text string, ver version) string {
	release := "stable"
	if ver.major < 7 {
		release = "long-term"
	}
	return fmt.Sprintf("%s (%s)", text, release)
}

package routeros

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
)

// Object is one thing bootstrapd wants on the router.
type Object struct {
	Path string // menu, e.g. "/ip/address"
	// Key names the properties that identify the object among the path's
	// rows (a vlan's name, an address's address and interface).
	Key   []string
	Props map[string]string // desired values, keys included
	// Fixed objects are RouterOS's own rows (the api service): never added
	// or removed and carrying no marker, only set.
	Fixed bool
	// Singleton menus (/system/identity) have one row and no .id: set only.
	Singleton bool
	// Absent objects must not exist: a marked row matching the key is
	// removed (the bootstrap VLAN once it is no longer needed), an
	// unmarked one is left alone.
	Absent bool
}

// id is the object's identity within its path, for messages and matching.
func (o Object) id() string {
	parts := make([]string, len(o.Key))
	for i, k := range o.Key {
		parts[i] = k + "=" + o.Props[k]
	}
	return strings.Join(parts, " ")
}

// Op is what a change does.
type Op string

// Ops, in the order Apply runs them: removing first frees names and
// addresses that sets and adds may reuse.
const (
	Remove Op = "remove"
	Set    Op = "set"
	Add    Op = "add"
)

// Change is one write to the router.
type Change struct {
	Op     Op                `json:"op"`
	Path   string            `json:"path"`
	Object string            `json:"object"`          // the key, e.g. "name=prov"
	ID     string            `json:"id,omitempty"`    // the row's .id, for set and remove
	Props  map[string]string `json:"props,omitempty"` // for set, only what changes
	Old    map[string]string `json:"old,omitempty"`   // for set, what those were
}

// Conflict is a row bootstrapd would need but does not own.
type Conflict struct {
	Path   string `json:"path"`
	Object string `json:"object"`
	ID     string `json:"id"`
	Hint   string `json:"hint"`
}

// Plan is what Apply would do.
type Plan struct {
	Changes   []Change   `json:"changes"`
	Conflicts []Conflict `json:"conflicts,omitempty"`
	// Notes explain what the plan leaves alone on purpose.
	Notes []string `json:"notes,omitempty"`
}

// Planner compares desired objects with the router.
type Planner struct {
	Conn *Conn
	// Marker is written in every owned object's comment; only marked rows
	// are ever changed or removed.
	Marker string
	// Prune removes marked rows that are no longer desired, in every path.
	// Rows for nodes (DNS records, static leases) mirror the inventory and
	// are pruned always, so a retired node's name goes away.
	Prune bool
	// Version is the router's RouterOS version ("7.19.1"), which decides
	// some property names and filters.
	Version string
}

// Plan reads each path once and diffs it against desired.
func (p *Planner) Plan(ctx context.Context, desired []Object) (Plan, error) {
	// Paths are visited in the order desired names them, which is
	// dependency order (a pool before the DHCP server that uses it).
	byPath := map[string][]Object{}
	var paths []string
	for _, o := range desired {
		if byPath[o.Path] == nil {
			paths = append(paths, o.Path)
		}
		byPath[o.Path] = append(byPath[o.Path], o)
	}
	// The last node's DNS record must go when it retires, though nothing
	// in that path is desired any more.
	if !slices.Contains(paths, dnsPath) {
		paths = append(paths, dnsPath)
	}
	var plan Plan
	for _, path := range paths {
		objs := byPath[path]
		rows, err := p.read(ctx, path, objs)
		if err != nil {
			return Plan{}, err
		}
		p.diff(&plan, path, objs, rows)
	}
	// Removes go first and in reverse, dependents before what they use;
	// then sets and adds in dependency order.
	var removes []Change
	for _, c := range plan.Changes {
		if c.Op == Remove {
			removes = append([]Change{c}, removes...)
		}
	}
	rest := slices.DeleteFunc(plan.Changes, func(c Change) bool { return c.Op == Remove })
	sort.SliceStable(rest, func(i, j int) bool { return order(rest[i].Op) < order(rest[j].Op) })
	plan.Changes = append(removes, rest...)
	return plan, nil
}

func order(op Op) int { return slices.Index([]Op{Remove, Set, Add}, op) }

// read prints a path once, with only the properties the objects use.
// Dynamic rows (leases handed out, say) are not configuration and are
// left out.
func (p *Planner) read(ctx context.Context, path string, objs []Object) ([]map[string]string, error) {
	props := map[string]bool{".id": true, "comment": true}
	if len(objs) > 0 && objs[0].Singleton {
		props = map[string]bool{}
	}
	for _, o := range objs {
		for k := range o.Props {
			props[k] = true
		}
	}
	words := []string{path + "/print", "=.proplist=" + strings.Join(sortedKeys(props), ",")}
	if p.hasDynamic(path) {
		words = append(words, "?dynamic=false")
	}
	reply, err := p.Conn.Run(ctx, words...)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	rows := make([]map[string]string, len(reply.Re))
	for i, s := range reply.Re {
		rows[i] = s.Map
	}
	return rows, nil
}

// hasDynamic lists the menus whose rows RouterOS may create itself.
// /ip/service shows each connection as a dynamic row since 7.19; before,
// its rows have no dynamic property at all, and the filter would hide them.
func (p *Planner) hasDynamic(path string) bool {
	switch path {
	case "/ip/dhcp-server/lease", "/ip/address", "/ip/dns/static":
		return true
	case "/ip/service":
		return AtLeast(p.Version, 7, 19)
	}
	return false
}

func (p *Planner) diff(plan *Plan, path string, objs []Object, rows []map[string]string) {
	used := map[string]bool{}
	for _, o := range objs {
		want := maps.Clone(o.Props)
		want["comment"] = p.Marker
		row := match(rows, o)
		if o.Fixed || o.Singleton {
			delete(want, "comment")
		}
		if o.Singleton && len(rows) == 1 {
			row = rows[0]
		}
		switch {
		case o.Absent:
			if row != nil && p.owns(row) {
				used[row[".id"]] = true
				plan.Changes = append(plan.Changes, Change{Op: Remove, Path: path, Object: o.id(), ID: row[".id"]})
			}
		case row == nil && o.Singleton:
			plan.Conflicts = append(plan.Conflicts, Conflict{Path: path, Object: o.id(),
				Hint: fmt.Sprintf("%s printed %d rows, want exactly one", path, len(rows))})
		case row == nil && o.Fixed:
			plan.Conflicts = append(plan.Conflicts, Conflict{Path: path, Object: o.id(),
				Hint: fmt.Sprintf("%s has no %s row; is this RouterOS too old for it?", path, o.id())})
		case row == nil:
			plan.Changes = append(plan.Changes, Change{Op: Add, Path: path, Object: o.id(), Props: want})
		case !o.Fixed && !o.Singleton && !p.owns(row):
			used[row[".id"]] = true
			plan.Conflicts = append(plan.Conflicts, Conflict{Path: path, Object: o.id(), ID: row[".id"],
				Hint: fmt.Sprintf("%s %s exists but is not bootstrapd's (its comment is %q); remove it, or add %q to its comment to hand it over", path, o.id(), row["comment"], p.Marker)})
		default:
			used[row[".id"]] = true
			set, old := map[string]string{}, map[string]string{}
			for k, v := range want {
				if !equal(row[k], v) {
					set[k], old[k] = v, row[k]
				}
			}
			if len(set) > 0 {
				plan.Changes = append(plan.Changes, Change{Op: Set, Path: path, Object: o.id(), ID: row[".id"], Props: set, Old: old})
			}
		}
	}
	if !p.Prune && !nodePath(path) {
		return
	}
	// Only rows marked exactly: the bootstrap objects carry a longer
	// comment and go only as Absent objects, when it is safe.
	for _, row := range rows {
		if !used[row[".id"]] && p.Marker != "" && row["comment"] == p.Marker {
			plan.Changes = append(plan.Changes, Change{Op: Remove, Path: path, Object: describe(row), ID: row[".id"]})
		}
	}
}

// owns reports whether a row carries bootstrapd's marker.
func (p *Planner) owns(row map[string]string) bool {
	return p.Marker != "" && strings.HasPrefix(row["comment"], p.Marker)
}

func match(rows []map[string]string, o Object) map[string]string {
	for _, row := range rows {
		ok := true
		for _, k := range o.Key {
			if !equal(row[k], o.Props[k]) {
				ok = false
				break
			}
		}
		if ok {
			return row
		}
	}
	return nil
}

// equal compares RouterOS values: it answers true/false and takes
// yes/no, and an absent value is the empty one.
func equal(have, want string) bool {
	norm := func(v string) string {
		switch v {
		case "yes":
			return "true"
		case "no":
			return "false"
		}
		return v
	}
	return norm(have) == norm(want)
}

func describe(row map[string]string) string {
	for _, k := range []string{"name", "address", "mac-address", "src-address", "interface"} {
		if v := row[k]; v != "" {
			return k + "=" + v
		}
	}
	return row[".id"]
}

// ApplyError is a change the router refused; changes before it are done.
type ApplyError struct {
	Change Change
	Err    error
}

func (e *ApplyError) Error() string {
	return fmt.Sprintf("%s %s %s: %v (run plan again to see what is left)", e.Change.Op, e.Change.Path, e.Change.Object, e.Err)
}

func (e *ApplyError) Unwrap() error { return e.Err }

// Apply makes the changes in order, one command each, and stops at the
// first the router refuses. Running it again after fixing the cause
// converges: a new plan starts from what the router has now.
func (p *Planner) Apply(ctx context.Context, plan Plan) (done int, err error) {
	if len(plan.Conflicts) > 0 {
		c := plan.Conflicts[0]
		return 0, fmt.Errorf("the plan has %d conflict(s); resolve them first: %s", len(plan.Conflicts), c.Hint)
	}
	for _, c := range plan.Changes {
		words := []string{c.Path + "/" + string(c.Op)}
		if c.ID != "" {
			words = append(words, "=.id="+c.ID)
		}
		for _, k := range sortedKeys(c.Props) {
			words = append(words, "="+k+"="+c.Props[k])
		}
		if _, err := p.Conn.Run(ctx, words...); err != nil {
			return done, &ApplyError{Change: c, Err: err}
		}
		done++
	}
	return done, nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

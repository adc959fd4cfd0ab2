package routerostest

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// store is the router's configuration: one table per menu. The Router's
// mutex guards it.
type store struct {
	ver    version
	menus  map[string]*menu
	tables map[string]*table
	// next is the last id handed out per counter. RouterOS never reuses an
	// id, and an interface keeps one id in /interface and in its type's
	// menu, so interface menus share one counter.
	next map[string]uint64
}

type table struct {
	m    *menu
	rows []*row
}

type row struct {
	id   uint64
	vals map[string]string
}

// idString is RouterOS's spelling of an internal id: *1A.
func idString(id uint64) string { return "*" + strings.ToUpper(strconv.FormatUint(id, 16)) }

// parseID reads *1A; ok is false for anything else.
func parseID(s string) (uint64, bool) {
	if !strings.HasPrefix(s, "*") {
		return 0, false
	}
	id, err := strconv.ParseUint(s[1:], 16, 64)
	return id, err == nil
}

func newStore(x version) *store {
	s := &store{ver: x, menus: map[string]*menu{}, tables: map[string]*table{}, next: map[string]uint64{}}
	for _, m := range allMenus(x) {
		s.menus[m.path] = m
		t := &table{m: m}
		if m.singleton {
			t.rows = []*row{{vals: map[string]string{}}}
		}
		s.tables[m.path] = t
	}
	return s
}

// newID hands out the next id of the menu's counter.
func (s *store) newID(m *menu) uint64 {
	key := m.group
	if key == "" {
		key = m.path
	}
	s.next[key]++
	return s.next[key]
}

// insert adds a row at the end, or before the row with id before.
func (s *store) insert(m *menu, vals map[string]string, before uint64) *row {
	r := &row{id: s.newID(m), vals: vals}
	t := s.tables[m.path]
	i := len(t.rows)
	if before != 0 {
		if j := slices.IndexFunc(t.rows, func(x *row) bool { return x.id == before }); j >= 0 {
			i = j
		}
	}
	t.rows = slices.Insert(t.rows, i, r)
	return r
}

// remove deletes rows by id.
func (s *store) remove(m *menu, ids map[uint64]bool) {
	t := s.tables[m.path]
	t.rows = slices.DeleteFunc(t.rows, func(r *row) bool { return ids[r.id] })
}

// pair is one printed property.
type pair struct{ key, value string }

// view is a row as print shows it: .id first (except in singletons), then
// each property with a value or a default, in menu order. Write-only values
// never appear.
func (s *store) view(m *menu, r *row) []pair {
	var out []pair
	if !m.singleton {
		out = append(out, pair{".id", idString(r.id)})
	}
	for _, p := range m.props {
		if p.writeOnly {
			continue
		}
		val, ok := r.vals[p.name]
		if !ok && p.hasDflt {
			val, ok = p.dflt, true
		}
		if !ok || (p.hide != "" && val == p.hide) {
			continue
		}
		out = append(out, pair{p.name, val})
	}
	return out
}

// rows returns what print iterates over. /interface also lists every
// interface of the typed menus (VLANs, bridges), under the same id, as
// RouterOS does.
func (s *store) rows(m *menu) []*row {
	t := s.tables[m.path]
	if m.path != pathInterface {
		return t.rows
	}
	all := slices.Clone(t.rows)
	for _, other := range s.menus {
		if other.group != m.group || other.ifType == "" {
			continue
		}
		for _, r := range s.tables[other.path].rows {
			all = append(all, &row{id: r.id, vals: interfaceVals(other, r)})
		}
	}
	slices.SortFunc(all, func(a, b *row) int { return cmpUint(a.id, b.id) })
	return all
}

func cmpUint(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// interfaceVals is a typed interface's row as /interface shows it.
func interfaceVals(m *menu, r *row) map[string]string {
	vals := map[string]string{"type": m.ifType}
	for _, k := range []string{"name", "mac-address", "comment"} {
		if v, ok := r.vals[k]; ok {
			vals[k] = v
		}
	}
	vals["disabled"] = effective(m, r.vals, "disabled")
	vals["running"] = effective(m, r.vals, "running")
	mtu := effective(m, r.vals, "mtu")
	vals["mtu"], vals["actual-mtu"] = mtu, mtu
	if mtu == "auto" {
		vals["actual-mtu"] = "1500"
	}
	return vals
}

// interfaceRow finds an interface by name across /interface and its types.
func (s *store) interfaceRow(name string) (map[string]string, bool) {
	for _, r := range s.rows(s.menus[pathInterface]) {
		if r.vals["name"] == name {
			return r.vals, true
		}
	}
	return nil, false
}

// names lists the values of the menu's name key, for reference checks.
// For /interface that includes every interface type.
func (s *store) names(path string) []string {
	m := s.menus[path]
	var out []string
	for _, r := range s.rows(m) {
		out = append(out, r.vals[m.nameKey])
	}
	return out
}

// find resolves an =.id= or =numbers= value: a comma list of *ids or, in
// menus with a name key, names. A name may match several rows (/ip/service
// on 7.19 has dynamic rows named like the static ones).
func (s *store) find(m *menu, list string) ([]*row, *trap) {
	t := s.tables[m.path]
	var out []*row
	seen := map[uint64]bool{}
	for _, item := range strings.Split(list, ",") {
		item = strings.TrimSpace(item)
		var hits []*row
		if strings.HasPrefix(item, "*") {
			id, ok := parseID(item)
			if !ok {
				return nil, errBadItemNumber()
			}
			if i := slices.IndexFunc(t.rows, func(r *row) bool { return r.id == id }); i >= 0 {
				hits = append(hits, t.rows[i])
			}
		} else if m.nameKey != "" && item != "" {
			for _, r := range t.rows {
				if r.vals[m.nameKey] == item {
					hits = append(hits, r)
				}
			}
		}
		if len(hits) == 0 {
			return nil, errNoSuchItem()
		}
		for _, r := range hits {
			if !seen[r.id] {
				seen[r.id] = true
				out = append(out, r)
			}
		}
	}
	return out, nil
}

// effective is a property's value on a row, or its default.
func effective(m *menu, vals map[string]string, name string) string {
	if v, ok := vals[name]; ok {
		return v
	}
	p, _ := m.prop(name)
	return p.dflt
}

// conflict reports whether vals (the row with id self, 0 for a new one)
// would share a unique property group with another row. Interface names are
// unique across every interface menu.
func (s *store) conflict(m *menu, self uint64, vals map[string]string) bool {
	for _, group := range m.unique {
		key := uniqueKey(m, vals, group)
		if key == "" {
			continue
		}
		if m.group != "" && len(group) == 1 && group[0] == m.nameKey {
			for _, r := range s.rows(s.menus[pathInterface]) {
				if r.id != self && r.vals["name"] == vals[m.nameKey] {
					return true
				}
			}
			continue
		}
		for _, r := range s.tables[m.path].rows {
			if r.id != self && uniqueKey(m, r.vals, group) == key {
				return true
			}
		}
	}
	return false
}

// uniqueKey joins a group's values; "" when the row has none of them, as a
// lease with only a client-id has no mac-address to clash on.
func uniqueKey(m *menu, vals map[string]string, group []string) string {
	var parts []string
	empty := true
	for _, name := range group {
		v := effective(m, vals, name)
		if v != "" {
			empty = false
		}
		parts = append(parts, v)
	}
	if empty {
		return ""
	}
	return fmt.Sprintf("%q", parts)
}

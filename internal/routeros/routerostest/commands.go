package routerostest

import (
	"maps"
	"slices"
	"strconv"
	"strings"
)

// done is the reply of a write that returns nothing.
func done() [][]string { return [][]string{{"!done"}} }

// exec runs a menu command. The command is known to exist in the menu.
func (s *store) exec(m *menu, cmd string, req *request) ([][]string, *trap) {
	if len(req.stray) > 0 {
		return nil, errUnknownParameter(s.ver, req.stray[0])
	}
	switch cmd {
	case "print", "getall":
		return s.print(m, req)
	case "add":
		return s.add(m, req)
	case "set":
		return s.set(m, req)
	case "unset":
		return s.unset(m, req)
	case "remove":
		return s.removeCmd(m, req)
	case "make-static":
		return s.makeStatic(m, req)
	case "enable", "disable":
		target, t := s.targetOf(req)
		if t != nil {
			return nil, t
		}
		value := "false"
		if cmd == "disable" {
			value = "true"
		}
		return s.update(m, target, true, []change{{"disabled", &value}})
	case "move":
		return s.move(m, req)
	}
	return nil, errNoSuchCommand(cmd)
}

// normalize checks a value against its property's kind and returns it as
// print will show it.
func (s *store) normalize(p prop, value string) (string, *trap) {
	switch p.kind {
	case kindBool:
		if b := normBool(value); b == "true" || b == "false" {
			return b, nil
		}
		return "", errInvalidValue(p.name)
	case kindInt:
		if _, err := strconv.Atoi(value); err != nil {
			return "", errNotInteger(p.name, value)
		}
	case kindAddress:
		if _, err := parsePrefix(value); err != nil {
			return "", errInvalidValue(p.name)
		}
	case kindRef:
		if !slices.Contains(p.refExtra, value) && !slices.Contains(s.names(p.refPath), value) {
			return "", errNoMatch(p.name)
		}
	}
	return value, nil
}

// writable returns the property a client may write, or the trap RouterOS
// gives for an argument the command does not have.
func (s *store) writable(m *menu, name string) (prop, *trap) {
	p, ok := m.prop(name)
	if !ok || p.readOnly {
		return prop{}, errUnknownParameter(s.ver, name)
	}
	return p, nil
}

func (s *store) add(m *menu, req *request) ([][]string, *trap) {
	vals := map[string]string{}
	var before uint64
	for _, a := range req.attrs {
		if a.key == "place-before" && m.ordered {
			rows, t := s.find(m, a.value)
			if t != nil {
				return nil, t
			}
			before = rows[0].id
			continue
		}
		p, t := s.writable(m, a.key)
		if t != nil {
			return nil, t
		}
		val, t := s.normalize(p, a.value)
		if t != nil {
			return nil, t
		}
		vals[p.name] = val
	}
	if m.autoName != "" && vals[m.nameKey] == "" {
		vals[m.nameKey] = s.freeName(m)
	}
	var missing []string
	for _, p := range m.props {
		if _, ok := vals[p.name]; p.required && !ok {
			missing = append(missing, p.name)
		}
	}
	if len(missing) > 0 {
		return nil, errMissing(strings.Join(missing, ","))
	}
	if m.derive != nil {
		m.derive(s, vals)
	}
	if s.conflict(m, 0, vals) {
		return nil, &trap{message: m.dupMsg}
	}
	r := s.insert(m, vals, before)
	return [][]string{{"!done", "=ret=" + idString(r.id)}}, nil
}

// freeName picks RouterOS's automatic name: the prefix and the lowest
// unused number (dhcp1, dhcp2, ...).
func (s *store) freeName(m *menu) string {
	names := s.names(m.path)
	for i := 1; ; i++ {
		if n := m.autoName + strconv.Itoa(i); !slices.Contains(names, n) {
			return n
		}
	}
}

// change is a property to write; value nil unsets it (back to default).
type change struct {
	name  string
	value *string
}

func (s *store) set(m *menu, req *request) ([][]string, *trap) {
	target, hasTarget := "", false
	var changes []change
	for _, a := range req.attrs {
		if (a.key == ".id" || a.key == "numbers") && !m.singleton {
			target, hasTarget = a.value, true
			continue
		}
		name, unset := strings.CutPrefix(a.key, "!")
		p, t := s.writable(m, name)
		if t != nil {
			return nil, t
		}
		if unset {
			changes = append(changes, change{name: p.name})
			continue
		}
		val, t := s.normalize(p, a.value)
		if t != nil {
			return nil, t
		}
		changes = append(changes, change{p.name, &val})
	}
	return s.update(m, target, hasTarget, changes)
}

// unset is /…/unset =numbers= =value-name=p.
func (s *store) unset(m *menu, req *request) ([][]string, *trap) {
	target, hasTarget := "", false
	var changes []change
	for _, a := range req.attrs {
		switch a.key {
		case ".id", "numbers":
			if m.singleton {
				return nil, errUnknownParameter(s.ver, a.key)
			}
			target, hasTarget = a.value, true
		case "value-name":
			for _, name := range strings.Split(a.value, ",") {
				p, t := s.writable(m, strings.TrimSpace(name))
				if t != nil {
					return nil, t
				}
				changes = append(changes, change{name: p.name})
			}
		default:
			return nil, errUnknownParameter(s.ver, a.key)
		}
	}
	if len(changes) == 0 {
		return nil, errMissing("value-name")
	}
	return s.update(m, target, hasTarget, changes)
}

// update applies changes to the target rows all at once or not at all.
func (s *store) update(m *menu, target string, hasTarget bool, changes []change) ([][]string, *trap) {
	var rows []*row
	if m.singleton {
		rows = s.tables[m.path].rows
	} else {
		if !hasTarget {
			return nil, errMissing("numbers")
		}
		var t *trap
		if rows, t = s.find(m, target); t != nil {
			return nil, t
		}
	}
	if t := dynamicGuard(m, rows); t != nil {
		return nil, t
	}
	updated := make([]map[string]string, len(rows))
	for i, r := range rows {
		vals := maps.Clone(r.vals)
		for _, c := range changes {
			if c.value == nil {
				delete(vals, c.name)
			} else {
				vals[c.name] = *c.value
			}
		}
		if m.derive != nil {
			m.derive(s, vals)
		}
		if s.conflict(m, r.id, vals) {
			return nil, &trap{message: m.dupMsg}
		}
		for _, other := range updated[:i] {
			for _, group := range m.unique {
				if k := uniqueKey(m, vals, group); k != "" && k == uniqueKey(m, other, group) {
					return nil, &trap{message: m.dupMsg}
				}
			}
		}
		updated[i] = vals
	}
	for i, r := range rows {
		r.vals = updated[i]
	}
	return done(), nil
}

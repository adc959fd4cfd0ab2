package routerostest

import "slices"

// dynamicGuard refuses to change dynamic rows, with the menu's message.
func dynamicGuard(m *menu, rows []*row) *trap {
	for _, r := range rows {
		if r.vals["dynamic"] == "true" {
			if m.dynamicSet != nil {
				return m.dynamicSet()
			}
			return errDynamic()
		}
	}
	return nil
}

// targetOf reads the =.id= or =numbers= of remove-like commands.
func (s *store) targetOf(req *request) (string, *trap) {
	target, hasTarget := "", false
	for _, a := range req.attrs {
		if a.key != ".id" && a.key != "numbers" {
			return "", errUnknownParameter(s.ver, a.key)
		}
		target, hasTarget = a.value, true
	}
	if !hasTarget {
		return "", errMissing("numbers")
	}
	return target, nil
}

func (s *store) removeCmd(m *menu, req *request) ([][]string, *trap) {
	target, t := s.targetOf(req)
	if t != nil {
		return nil, t
	}
	rows, t := s.find(m, target)
	if t != nil {
		return nil, t
	}
	if !m.removeDynamic {
		if t := dynamicGuard(m, rows); t != nil {
			return nil, t
		}
	}
	ids := map[uint64]bool{}
	for _, r := range rows {
		ids[r.id] = true
	}
	s.remove(m, ids)
	return done(), nil
}

// makeStatic turns dynamic leases into static ones (reference section 3:
// a command, not a property).
func (s *store) makeStatic(m *menu, req *request) ([][]string, *trap) {
	target, t := s.targetOf(req)
	if t != nil {
		return nil, t
	}
	rows, t := s.find(m, target)
	if t != nil {
		return nil, t
	}
	for _, r := range rows {
		delete(r.vals, "dynamic")
	}
	return done(), nil
}

// move is /…/move =numbers=a,b =destination=c: the rows go, in list order,
// just before c, or to the end without a destination.
func (s *store) move(m *menu, req *request) ([][]string, *trap) {
	target, hasTarget, dest := "", false, ""
	for _, a := range req.attrs {
		switch a.key {
		case ".id", "numbers":
			target, hasTarget = a.value, true
		case "destination":
			dest = a.value
		default:
			return nil, errUnknownParameter(s.ver, a.key)
		}
	}
	if !hasTarget {
		return nil, errMissing("numbers")
	}
	rows, t := s.find(m, target)
	if t != nil {
		return nil, t
	}
	var before uint64
	if dest != "" {
		d, t := s.find(m, dest)
		if t != nil {
			return nil, t
		}
		before = d[0].id
	}
	tb := s.tables[m.path]
	moving := map[uint64]bool{}
	for _, r := range rows {
		moving[r.id] = true
	}
	if moving[before] {
		return done(), nil
	}
	rest := slices.DeleteFunc(slices.Clone(tb.rows), func(r *row) bool { return moving[r.id] })
	i := len(rest)
	if before != 0 {
		i = slices.IndexFunc(rest, func(r *row) bool { return r.id == before })
	}
	tb.rows = slices.Insert(rest, i, rows...)
	return done(), nil
}

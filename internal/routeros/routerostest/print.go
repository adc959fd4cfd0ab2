package routerostest

import (
	"slices"
	"strconv"
	"strings"
)

// print lists rows. =.proplist= narrows and orders the properties (the
// manual leaves the order undefined; following the list keeps transcripts
// stable), ?words filter, =count-only= returns the count in =ret=. An
// empty result is !empty then !done from 7.18 (mikrotik-java #89).
func (s *store) print(m *menu, req *request) ([][]string, *trap) {
	var proplist []string
	hasProplist, countOnly := false, false
	for _, a := range req.attrs {
		switch a.key {
		case ".proplist":
			hasProplist = true
			for _, k := range strings.Split(a.value, ",") {
				if k = strings.TrimSpace(k); k != "" && !slices.Contains(proplist, k) {
					proplist = append(proplist, k)
				}
			}
		case "count-only":
			countOnly = true
		case "detail", "without-paging", "terse", "stats":
			// accepted; they only change console formatting or cost.
		default:
			return nil, errUnknownParameter(s.ver, a.key)
		}
	}
	bools := map[string]bool{}
	for _, p := range m.props {
		if p.kind == kindBool {
			bools[p.name] = true
		}
	}
	q, t := parseQuery(req.queries, bools)
	if t != nil {
		return nil, t
	}
	var out [][]string
	n := 0
	for _, r := range s.rows(m) {
		view := s.view(m, r)
		vals := make(map[string]string, len(view))
		for _, p := range view {
			vals[p.key] = p.value
		}
		if !q.match(vals) {
			continue
		}
		n++
		if countOnly {
			continue
		}
		sen := []string{"!re"}
		if hasProplist {
			for _, k := range proplist {
				if v, ok := vals[k]; ok {
					sen = append(sen, "="+k+"="+v)
				}
			}
		} else {
			for _, p := range view {
				sen = append(sen, "="+p.key+"="+p.value)
			}
		}
		out = append(out, sen)
	}
	if countOnly {
		return [][]string{{"!done", "=ret=" + strconv.Itoa(n)}}, nil
	}
	if n == 0 && s.ver.atLeast(v(7, 18)) {
		out = append(out, []string{"!empty"})
	}
	return append(out, []string{"!done"}), nil
}

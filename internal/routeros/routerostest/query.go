package routerostest

import (
	"strconv"
	"strings"
)

// query is a print's ? words, evaluated per row as the MikroTik API manual
// ("Queries") describes: a stack of booleans that starts as infinitely many
// trues; ?name, ?-name, ?name=x, ?=name=x, ?<name=x and ?>name=x push one
// value; ?# applies operations; the row is printed unless a false remains.
type query struct {
	words []string
	// bools lists the boolean properties, whose query values RouterOS
	// compares as true/false whatever spelling the client used [I].
	bools map[string]bool
}

// parseQuery checks the ?# words up front so a malformed one fails the
// command, not each row.
func parseQuery(words []string, bools map[string]bool) (*query, *trap) {
	for _, w := range words {
		if ops, ok := strings.CutPrefix(w, "?#"); ok {
			if err := runOps(&stack{fill: true}, ops); err != nil {
				return nil, errBadQuery(w)
			}
		} else if w == "?" || w == "?=" || w == "?-" || w == "?<" || w == "?>" {
			return nil, errBadQuery(w)
		}
	}
	return &query{words: words, bools: bools}, nil
}

// stack is the manual's stack: vals on top of infinitely many fill values.
// fill starts true; an index at the end of a ?# word replaces all values
// with one, which the fill then carries.
type stack struct {
	vals []bool
	fill bool
}

func (s *stack) push(b bool) { s.vals = append(s.vals, b) }

func (s *stack) pop() bool {
	if len(s.vals) == 0 {
		return s.fill
	}
	b := s.vals[len(s.vals)-1]
	s.vals = s.vals[:len(s.vals)-1]
	return b
}

// at returns the value at index i, 0 being the top.
func (s *stack) at(i int) bool {
	if i < len(s.vals) {
		return s.vals[len(s.vals)-1-i]
	}
	return s.fill
}

// ok is the query's result: no false anywhere.
func (s *stack) ok() bool {
	if !s.fill {
		return false
	}
	for _, b := range s.vals {
		if !b {
			return false
		}
	}
	return true
}

// match evaluates the query against one printed row.
func (q *query) match(vals map[string]string) bool {
	s := &stack{fill: true}
	for _, w := range q.words {
		if ops, ok := strings.CutPrefix(w, "?#"); ok {
			_ = runOps(s, ops) // parseQuery already refused bad ones
			continue
		}
		s.push(q.test(w[1:], vals))
	}
	return s.ok()
}

// test evaluates one ?word (without its ?) against a row.
func (q *query) test(w string, vals map[string]string) bool {
	op := byte('=')
	switch {
	case strings.HasPrefix(w, "-"):
		_, has := vals[w[1:]]
		return !has
	case strings.HasPrefix(w, "="), strings.HasPrefix(w, "<"), strings.HasPrefix(w, ">"):
		op, w = w[0], w[1:]
	}
	name, want, hasValue := strings.Cut(w, "=")
	got, has := vals[name]
	if !hasValue {
		return has // ?name: has the property
	}
	if q.bools[name] {
		want = normBool(want)
	}
	switch op {
	case '<':
		return has && compare(got, want) < 0
	case '>':
		return has && compare(got, want) > 0
	}
	// An absent property equals the empty string [I]: the manual's
	// ?>comment= for a non-empty comment implies an absent one is "".
	return got == want
}

// compare orders numbers and *ids numerically and anything else as text.
func compare(a, b string) int {
	if x, ok := number(a); ok {
		if y, ok := number(b); ok {
			return cmpUint(x, y)
		}
	}
	return strings.Compare(a, b)
}

func number(s string) (uint64, bool) {
	if id, ok := parseID(s); ok {
		return id, true
	}
	n, err := strconv.ParseUint(s, 10, 64)
	return n, err == nil
}

// runOps applies a ?# operation string. The manual: a run of digits is an
// index (top is 0); followed by another character it pushes a copy of that
// value, at the end of the word it replaces all values with it. ! negates
// the top, & and | pop two and push the result, . after an index does
// nothing and . elsewhere pushes a copy of the top.
func runOps(s *stack, ops string) error {
	afterIndex := false
	for i := 0; i < len(ops); {
		c := ops[i]
		switch {
		case c >= '0' && c <= '9':
			j := i
			for j < len(ops) && ops[j] >= '0' && ops[j] <= '9' {
				j++
			}
			n, err := strconv.Atoi(ops[i:j])
			if err != nil {
				return err
			}
			v := s.at(n)
			if j == len(ops) {
				s.vals, s.fill = nil, v
			} else {
				s.push(v)
			}
			i, afterIndex = j, true
			continue
		case c == '!':
			s.push(!s.pop())
		case c == '&':
			b, a := s.pop(), s.pop()
			s.push(a && b)
		case c == '|':
			b, a := s.pop(), s.pop()
			s.push(a || b)
		case c == '.':
			if !afterIndex {
				s.push(s.at(0))
			}
		default:
			return strconv.ErrSyntax
		}
		i, afterIndex = i+1, false
	}
	return nil
}

// normBool spells a boolean the way print does.
func normBool(s string) string {
	switch s {
	case "yes", "true":
		return "true"
	case "no", "false":
		return "false"
	}
	return s
}

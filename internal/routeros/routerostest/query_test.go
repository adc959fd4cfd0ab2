package routerostest

import (
	"slices"
	"strings"
	"testing"
)

// queryRows are the rows each query is evaluated against, as print would
// show them.
func queryRows() []map[string]string {
	return []map[string]string{
		{".id": "*1", "name": "ether1", "type": "ether", "mtu": "1500", "comment": "uplink", "disabled": "false"},
		{".id": "*A", "name": "v40", "type": "vlan", "mtu": "1500", "disabled": "true"},
		{".id": "*1B", "name": "br", "type": "bridge", "mtu": "9000", "disabled": "false"},
	}
}

func TestQuery(t *testing.T) {
	tests := []struct {
		query string // space-separated ? words
		want  string // names of the matching rows
	}{
		{"", "ether1 v40 br"},
		// one-word tests
		{"?type=ether", "ether1"},
		{"?=type=vlan", "v40"},
		{"?comment", "ether1"},
		{"?-comment", "v40 br"},
		{"?<mtu=2000", "ether1 v40"},
		{"?>mtu=1500", "br"},
		{"?>mtu=999", "ether1 v40 br"}, // numbers compare as numbers
		{"?>comment=", "ether1"},       // the manual: a non-empty comment
		{"?comment=", "v40 br"},        // absent reads as empty [I]
		{"?.id=*A", "v40"},
		{"?>.id=*A", "br"}, // ids compare as hex numbers
		{"?disabled=yes", "v40"},
		// several words: every pushed value must be true
		{"?type=ether ?type=vlan", ""},
		{"?type=ether ?mtu=1500", "ether1"},
		// the manual's examples
		{"?type=ether ?type=vlan ?#|", "ether1 v40"},
		{"?type=ether ?type=vlan ?#|!", "br"},
		// stack operations
		{"?#!", ""}, // negates one of the infinite trues
		{"?type=ether ?mtu=1500 ?#&", "ether1"},
		{"?type=ether ?type=vlan ?type=bridge ?#||", "ether1 v40 br"},
		{"?type=vlan ?type=ether ?#1", "v40"},     // index at the end: replace all
		{"?type=vlan ?#0", "v40"},                 // index 0 is the top
		{"?type=ether ?#0.", "ether1"},            // . after an index does nothing
		{"?type=ether ?#.!", ""},                  // . elsewhere copies the top
		{"?type=ether ?type=vlan ?#1|", "ether1"}, // e v e -> e (v|e): e must hold
		{"?type=ether ?#!!", "ether1"},
		{"?type=ether ?#! ?#!", "ether1"}, // operations span words
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			q, tr := parseQuery(strings.Fields(tt.query), map[string]bool{"disabled": true})
			if tr != nil {
				t.Fatalf("parseQuery: %v", tr)
			}
			var got []string
			for _, row := range queryRows() {
				if q.match(row) {
					got = append(got, row["name"])
				}
			}
			if want := strings.Fields(tt.want); !slices.Equal(got, want) {
				t.Errorf("matched %q, want %q", got, want)
			}
		})
	}
}

func TestQueryRefused(t *testing.T) {
	for _, w := range []string{"?#x", "?#&?", "?", "?-"} {
		if _, tr := parseQuery([]string{w}, nil); tr == nil {
			t.Errorf("parseQuery(%q) accepted", w)
		}
	}
}

package routeros

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/bootstrapd/bootstrapd/internal/routeros/routerostest"
)

const marker = "bootstrapd"

func desired(nodes ...string) []Object {
	objs := []Object{
		{Path: "/interface/vlan", Key: []string{"name"}, Props: map[string]string{"name": "prov", "vlan-id": "77", "interface": "ether2"}},
		{Path: "/ip/address", Key: []string{"address", "interface"}, Props: map[string]string{"address": "10.77.0.1/24", "interface": "prov"}},
		{Path: "/ip/pool", Key: []string{"name"}, Props: map[string]string{"name": "prov", "ranges": "10.77.0.100-10.77.0.199"}},
	}
	for i, n := range nodes {
		objs = append(objs, Object{Path: "/ip/dns/static", Key: []string{"name"},
			Props: map[string]string{"name": n + ".lab.example", "address": fmt.Sprintf("10.77.0.%d", 10*(i+1))}})
	}
	return objs
}

func writes(r *routerostest.Router) (prints, others int) {
	for _, c := range r.Commands() {
		switch {
		case strings.HasSuffix(c, "/print"):
			prints++
		case c != "/login":
			others++
		}
	}
	return
}

func TestPlanApplyConverges(t *testing.T) {
	r, d := newRouter(t)
	p := &Planner{Conn: NewConn(d), Marker: marker, Prune: true}
	ctx := context.Background()
	// Someone else's objects: never touched, even with prune.
	theirs := r.Seed("/ip/dns/static", map[string]string{"name": "nas.lab.example", "address": "10.77.0.5"})

	plan, err := p.Plan(ctx, desired("n1", "n2"))
	if err != nil {
		t.Fatal(err)
	}
	if len(plan.Changes) != 5 || len(plan.Conflicts) != 0 {
		t.Fatalf("first plan: %+v", plan)
	}
	if n, err := p.Apply(ctx, plan); err != nil || n != 5 {
		t.Fatalf("apply: %d %v", n, err)
	}
	prints, others := writes(r)
	if prints != 4 || others != 5 {
		t.Errorf("first plan and apply: %d prints (want one per path: 4), %d writes (want one per change: 5)", prints, others)
	}
	again, err := p.Plan(ctx, desired("n1", "n2"))
	if err != nil || len(again.Changes) != 0 {
		t.Fatalf("plan right after apply: %+v %v", again, err)
	}
	if _, others2 := writes(r); others2 != others {
		t.Error("a no-op plan wrote to the router")
	}

	// Drift on an owned object is planned as a set of just that field;
	// a node that left is pruned; the unowned row stays.
	for _, row := range r.Rows("/ip/dns/static") {
		if row["name"] == "n1.lab.example" {
			if _, err := p.Conn.Run(ctx, "/ip/dns/static/set", "=.id="+row[".id"], "=address=10.77.0.99"); err != nil {
				t.Fatal(err)
			}
		}
	}
	plan, _ = p.Plan(ctx, desired("n1"))
	var ops []string
	for _, c := range plan.Changes {
		ops = append(ops, string(c.Op)+" "+c.Object)
	}
	if got := strings.Join(ops, ", "); got != "remove name=n2.lab.example, set name=n1.lab.example" {
		t.Errorf("plan after drift: %s", got)
	}
	if set := plan.Changes[1]; set.Props["address"] != "10.77.0.10" || set.Old["address"] != "10.77.0.99" || len(set.Props) != 1 {
		t.Errorf("drift set: %+v", set)
	}
	if _, err := p.Apply(ctx, plan); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, row := range r.Rows("/ip/dns/static") {
		if row[".id"] == theirs {
			found = row["name"] == "nas.lab.example" && row["address"] == "10.77.0.5"
		}
	}
	if !found {
		t.Error("prune touched a row bootstrapd does not own")
	}
}

func TestPlanConflictsAreNotChanged(t *testing.T) {
	r, d := newRouter(t)
	p := &Planner{Conn: NewConn(d), Marker: marker}
	id := r.Seed("/ip/pool", map[string]string{"name": "prov", "ranges": "10.77.0.2-10.77.0.9", "comment": "by hand"})
	plan, err := p.Plan(context.Background(), desired())
	if err != nil {
		t.Fatal(err)
	}
	if len(plan.Conflicts) != 1 || plan.Conflicts[0].ID != id || !strings.Contains(plan.Conflicts[0].Hint, `add "bootstrapd" to its comment`) {
		t.Fatalf("conflicts: %+v", plan.Conflicts)
	}
	if _, err := p.Apply(context.Background(), plan); err == nil {
		t.Fatal("applied a plan with conflicts")
	}
	if rows := r.Rows("/ip/pool"); len(rows) != 1 || rows[0]["ranges"] != "10.77.0.2-10.77.0.9" {
		t.Errorf("unowned pool changed: %v", rows)
	}
}

func TestApplyStopsAtTrapAndRerunConverges(t *testing.T) {
	r, d := newRouter(t)
	p := &Planner{Conn: NewConn(d), Marker: marker}
	ctx := context.Background()
	r.FailNext("/ip/pool", "add", "failure: pool with such name exists")
	plan, _ := p.Plan(ctx, desired("n1"))
	done, err := p.Apply(ctx, plan)
	var ae *ApplyError
	var trap *TrapError
	if !errors.As(err, &ae) || !errors.As(err, &trap) || ae.Change.Path != "/ip/pool" || ae.Change.Object != "name=prov" ||
		!strings.Contains(err.Error(), "pool with such name exists") {
		t.Fatalf("apply: %d %v", done, err)
	}
	plan, _ = p.Plan(ctx, desired("n1"))
	if len(plan.Changes) != 4-done {
		t.Errorf("after a partial apply the plan has %d changes, want %d", len(plan.Changes), 4-done)
	}
	if _, err := p.Apply(ctx, plan); err != nil {
		t.Fatal(err)
	}
	if plan, _ := p.Plan(ctx, desired("n1")); len(plan.Changes) != 0 {
		t.Errorf("not converged: %+v", plan.Changes)
	}
}

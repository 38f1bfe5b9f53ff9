package evaluate

import (
	"fmt"
	"slices"
	"sync"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/responsibility-operator/responsibility-operator/api/v1alpha1"
)

// TestRelatedJoin: a related source is joined on a field when every read of
// it only looks at objects whose field (read optionally, with "" for
// missing) equals the workload's name; anything else re-evaluates every
// workload of the namespace.
func TestRelatedJoin(t *testing.T) {
	const join = `b.?spec.?cluster.?name.orValue("") == object.metadata.name`
	tests := []struct {
		name           string
		rule, message  string
		namespace      string
		want           []string
		secondDutyRule string
	}{
		{name: "exists joined", rule: `related.backups.exists(b, ` + join + ` && b.?status.?phase.orValue("") == "completed")`, want: []string{"spec", "cluster", "name"}},
		{name: "join on the right, nested in &&", rule: `related.backups.exists(b, b.?status.?phase.orValue("") == "completed" && (object.metadata.name == b.?spec.?cluster.?name.orValue("") && true))`, want: []string{"spec", "cluster", "name"}},
		{name: "on metadata", rule: `related.backups.exists(b, b.metadata.?ownerName.orValue("") == object.metadata.name)`, want: []string{"metadata", "ownerName"}},
		{name: "a plain selection inside the chain: spec may be missing", rule: `related.backups.exists(b, b.spec.?cluster.?name.orValue("") == object.metadata.name)`},
		{name: "filter joined in rule and message", rule: `related.backups.exists(b, ` + join + `)`,
			message: `related.backups.filter(b, ` + join + ` && has(b.status)).size() == 0 ? "none" : "stale"`, want: []string{"spec", "cluster", "name"}},
		{name: "exists_one joined", rule: `related.backups.exists_one(b, ` + join + `)`, want: []string{"spec", "cluster", "name"}},
		{name: "a plain selection is not a join: a missing field is an error", rule: `related.backups.exists(b, b.spec.cluster.name == object.metadata.name)`},
		{name: "a default other than empty is not a join", rule: `related.backups.exists(b, b.spec.?cluster.?name.orValue("x") == object.metadata.name)`},
		{name: "or is not a join", rule: `related.backups.exists(b, ` + join + ` || b.spec.?all.orValue(false))`},
		{name: "all is not a join", rule: `related.backups.all(b, ` + join + `)`},
		{name: "size reads every object", rule: `related.backups.exists(b, ` + join + `)`, message: `related.backups.size() > 0 ? "a" : "b"`},
		{name: "another field in the message", rule: `related.backups.exists(b, ` + join + `)`,
			message: `related.backups.exists(b, b.metadata.?labels[?"cluster"].orValue("") == object.metadata.name) ? "a" : "b"`},
		{name: "a list read from a fixed namespace", rule: `related.backups.exists(b, ` + join + `)`, namespace: "velero"},
		{name: "another duty reads it unjoined", rule: `related.backups.exists(b, ` + join + `)`, secondDutyRule: `related.backups.size() > 0`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			related := []v1alpha1.RelatedResource{{Name: "backups", APIVersion: "postgresql.cnpg.io/v1", Kind: "Backup", Namespace: tt.namespace}}
			duties := []v1alpha1.Duty{{Name: "backup-recent", Rule: tt.rule, MessageExpression: tt.message, Message: "m", Related: related}}
			if tt.secondDutyRule != "" {
				duties = append(duties, v1alpha1.Duty{Name: "other", Rule: tt.secondDutyRule, Message: "m", Related: related})
			}
			m := mustCompile(t, model("joins", func(rm *v1alpha1.ResponsibilityModel) {
				rm.Spec.Areas = []v1alpha1.Area{{Name: "Backups", Provider: "p", Customer: "c", Duties: duties}}
			}))
			srcs := m.RelatedSources()
			if len(srcs) != 1 {
				t.Fatalf("%d related sources, want 1", len(srcs))
			}
			if got := m.RelatedJoin(srcs[0]); !slices.Equal(got, tt.want) {
				t.Errorf("join %q, want %q", got, tt.want)
			}
		})
	}
}

// TestJoinedListsGiveTheSameVerdicts: evaluating a joined duty on only the
// related objects its join selects gives the verdicts and messages of
// evaluating it on all of them, whatever else the list holds (objects of
// other workloads, objects without the field, fields of the wrong type), in
// the list's order, through a label selector, on a short list (walked) and
// on a long one (looked up in the model's index).
func TestJoinedListsGiveTheSameVerdicts(t *testing.T) {
	const join = `b.?spec.?cluster.?name.orValue("") == object.metadata.name`
	compile := func(sel *metav1.LabelSelector) *Model {
		return mustCompile(t, model("joined", func(rm *v1alpha1.ResponsibilityModel) {
			rm.Spec.Areas = []v1alpha1.Area{{Name: "Backups", Provider: "p", Customer: "c", Duties: []v1alpha1.Duty{{
				Name:    "backup-completed",
				Related: []v1alpha1.RelatedResource{{Name: "backups", APIVersion: "postgresql.cnpg.io/v1", Kind: "Backup", Selector: sel}},
				Rule:    `related.backups.exists(b, ` + join + ` && b.status.phase == "completed")`,
				MessageExpression: `"backups of " + object.metadata.name + ": " +
					related.backups.filter(b, ` + join + `).map(b, b.metadata.name).join(", ")`,
				Message: "m",
			}}}}
		}))
	}
	backup := func(name string, spec, status any) map[string]any {
		o := map[string]any{"metadata": map[string]any{"name": name, "namespace": "team-a"}}
		if spec != nil {
			o["spec"] = spec
		}
		if status != nil {
			o["status"] = status
		}
		return o
	}
	of := func(cluster string) map[string]any { return map[string]any{"cluster": map[string]any{"name": cluster}} }
	others := []map[string]any{
		backup("other-done", of("other"), map[string]any{"phase": "completed"}),
		backup("no-spec", nil, map[string]any{"phase": "completed"}),
		backup("no-status", of("other"), nil),   // b.status.phase is an error
		backup("number", of("other"), int64(5)), // so is a field of a number
		backup("name-number", map[string]any{"cluster": map[string]any{"name": int64(7)}}, nil),
		backup("empty-name", of(""), map[string]any{"phase": "completed"}),
	}
	labeled := func(o map[string]any) map[string]any {
		o["metadata"].(map[string]any)["labels"] = map[string]any{"tier": "gold"}
		return o
	}
	tests := []struct {
		name        string
		first, last []map[string]any // of its own, before and after the others
	}{
		{"none of its own", nil, nil},
		{"its own completed", nil, []map[string]any{backup("orders-done", of("orders"), map[string]any{"phase": "completed"})}},
		{"its own running", []map[string]any{backup("orders-running", of("orders"), map[string]any{"phase": "running"})}, nil},
		{"its own without status", nil, []map[string]any{backup("orders-new", of("orders"), nil)}},
		{"two of its own, in order", []map[string]any{backup("orders-b", of("orders"), map[string]any{"phase": "running"})},
			[]map[string]any{backup("orders-a", of("orders"), map[string]any{"phase": "failed"})}},
		{"one of its own selected", []map[string]any{backup("orders-x", of("orders"), map[string]any{"phase": "completed"})},
			[]map[string]any{labeled(backup("orders-y", of("orders"), map[string]any{"phase": "running"}))}},
	}
	for _, sel := range []*metav1.LabelSelector{nil, {MatchLabels: map[string]string{"tier": "gold"}}} {
		m := compile(sel)
		src := m.RelatedSources()[0]
		if m.RelatedJoin(src) == nil {
			t.Fatal("the duty is not joined")
		}
		for _, long := range []bool{false, true} {
			for _, tt := range tests {
				t.Run(fmt.Sprintf("%s/selector=%v/long=%v", tt.name, sel != nil, long), func(t *testing.T) {
					list := slices.Concat(tt.first, others)
					for i := 0; long && len(list) < minJoinIndexed; i++ {
						list = append(list, backup(fmt.Sprintf("pad-%d", i), of(fmt.Sprintf("pad-%d", i%3)), map[string]any{"phase": "completed"}))
					}
					list = append(list, tt.last...)
					if long != (len(list) >= minJoinIndexed) {
						t.Fatalf("%d objects: not the list this case means", len(list))
					}
					in := Input{GVK: m.Targets[0].GVK, Object: cluster("orders", nil, map[string]any{}, nil), Namespace: namespace(nil),
						Related: map[RelatedSource][]map[string]any{src: list}}
					joined := Evaluate([]*Model{m}, in)
					again := Evaluate([]*Model{m}, in) // from the index, if any
					joins := m.joins
					m.joins = nil
					whole := Evaluate([]*Model{m}, in)
					m.joins = joins
					if len(joined.Duties) != 1 || len(whole.Duties) != 1 || len(again.Duties) != 1 {
						t.Fatalf("%d, %d and %d duty results", len(joined.Duties), len(again.Duties), len(whole.Duties))
					}
					for _, j := range []DutyResult{joined.Duties[0], again.Duties[0]} {
						if w := whole.Duties[0]; j.State != w.State || j.Message != w.Message {
							t.Errorf("joined: %s %q; on every object: %s %q", j.State, j.Message, w.State, w.Message)
						}
					}
				})
			}
		}
	}
}

// TestJoinIndex: the index of a list serves that list until another list
// (another array, or the same array at another length) is asked about;
// groups keep the list's order and cannot overwrite one another.
func TestJoinIndex(t *testing.T) {
	obj := func(name, cluster string) map[string]any {
		return map[string]any{"metadata": map[string]any{"name": name}, "spec": map[string]any{"cluster": cluster}}
	}
	src := RelatedSource{GVK: backupGVK}
	path := []string{"spec", "cluster"}
	list := []map[string]any{obj("a1", "a"), obj("b1", "b"), obj("a2", "a"), obj("c1", "c"), obj("none", "")}
	var x joinIndex
	names := func(objs []any) []string {
		var out []string
		for _, o := range objs {
			out = append(out, o.(map[string]any)["metadata"].(map[string]any)["name"].(string))
		}
		return out
	}
	if got := names(x.joined(src, "ns", path, list, "a")); !slices.Equal(got, []string{"a1", "a2"}) {
		t.Errorf("a: %v", got)
	}
	first := x.entries[joinIndexKey{src, "ns"}]
	if got := x.joined(src, "ns", path, list, ""); len(got) != 0 {
		t.Errorf("the empty name joins %v", names(got))
	}
	if x.entries[joinIndexKey{src, "ns"}] != first {
		t.Error("the same list was indexed again")
	}
	b := x.joined(src, "ns", path, list, "b")
	_ = append(b, "overflow")
	if got := names(x.joined(src, "ns", path, list, "c")); !slices.Equal(got, []string{"c1"}) {
		t.Errorf("c after an append to b: %v", got)
	}
	// The same array, shorter: another list.
	if got := names(x.joined(src, "ns", path, list[:3], "c")); len(got) != 0 {
		t.Errorf("c in the first three: %v", got)
	}
	// Another array with the same contents but one changed object.
	changed := slices.Clone(list)
	changed[3] = obj("c1", "a")
	if got := names(x.joined(src, "ns", path, changed, "a")); !slices.Equal(got, []string{"a1", "a2", "c1"}) {
		t.Errorf("a after c1 moved: %v", got)
	}
	// Another namespace has its own entry.
	if got := names(x.joined(src, "other", path, list[:1], "a")); !slices.Equal(got, []string{"a1"}) {
		t.Errorf("a in other: %v", got)
	}
	if len(x.entries) != 2 {
		t.Errorf("%d entries, want 2", len(x.entries))
	}
	for i := range maxJoinIndexes {
		x.joined(src, fmt.Sprint(i), path, list, "a")
	}
	if len(x.entries) > maxJoinIndexes {
		t.Errorf("%d entries, more than %d", len(x.entries), maxJoinIndexes)
	}
}

// TestJoinIndexConcurrent: the operator's workers look joined lists up at
// once, for the same list and as lists change (go test -race).
func TestJoinIndexConcurrent(t *testing.T) {
	src := RelatedSource{GVK: backupGVK}
	path := []string{"spec", "cluster"}
	lists := make([][]map[string]any, 4)
	for v := range lists {
		for i := range minJoinIndexed + v {
			lists[v] = append(lists[v], map[string]any{"metadata": map[string]any{"name": fmt.Sprint("b", i)},
				"spec": map[string]any{"cluster": fmt.Sprint("c", i%8)}})
		}
	}
	var x joinIndex
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := range 200 {
				list := lists[(w+i/50)%len(lists)]
				got := x.joined(src, fmt.Sprint("ns", w%2), path, list, "c3")
				for _, o := range got {
					if c := o.(map[string]any)["spec"].(map[string]any)["cluster"]; c != "c3" {
						t.Errorf("joined an object of %v", c)
						return
					}
				}
				if want := (len(list) - 3 + 7) / 8; len(got) != want {
					t.Errorf("%d objects of c3 in a list of %d, want %d", len(got), len(list), want)
					return
				}
			}
		})
	}
	wg.Wait()
}

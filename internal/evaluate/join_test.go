package evaluate

import (
	"slices"
	"testing"

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
// other workloads, objects without the field, fields of the wrong type).
func TestJoinedListsGiveTheSameVerdicts(t *testing.T) {
	const join = `b.?spec.?cluster.?name.orValue("") == object.metadata.name`
	m := mustCompile(t, model("joined", func(rm *v1alpha1.ResponsibilityModel) {
		rm.Spec.Areas = []v1alpha1.Area{{Name: "Backups", Provider: "p", Customer: "c", Duties: []v1alpha1.Duty{{
			Name:    "backup-completed",
			Related: []v1alpha1.RelatedResource{{Name: "backups", APIVersion: "postgresql.cnpg.io/v1", Kind: "Backup"}},
			Rule:    `related.backups.exists(b, ` + join + ` && b.status.phase == "completed")`,
			MessageExpression: `"backups of " + object.metadata.name + ": " +
				related.backups.filter(b, ` + join + `).map(b, b.metadata.name).join(", ")`,
			Message: "m",
		}}}}
	}))
	src := m.RelatedSources()[0]
	if m.RelatedJoin(src) == nil {
		t.Fatal("the duty is not joined")
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
	}
	tests := []struct {
		name string
		mine []map[string]any
	}{
		{"none of its own", nil},
		{"its own completed", []map[string]any{backup("orders-done", of("orders"), map[string]any{"phase": "completed"})}},
		{"its own running", []map[string]any{backup("orders-running", of("orders"), map[string]any{"phase": "running"})}},
		{"its own without status", []map[string]any{backup("orders-new", of("orders"), nil)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := Input{GVK: m.Targets[0].GVK, Object: cluster("orders", nil, map[string]any{}, nil), Namespace: namespace(nil),
				Related: map[RelatedSource][]map[string]any{src: append(append([]map[string]any{}, others...), tt.mine...)}}
			joined := Evaluate([]*Model{m}, in)
			joins := m.joins
			m.joins = nil
			whole := Evaluate([]*Model{m}, in)
			m.joins = joins
			if len(joined.Duties) != 1 || len(whole.Duties) != 1 {
				t.Fatalf("%d and %d duty results", len(joined.Duties), len(whole.Duties))
			}
			j, w := joined.Duties[0], whole.Duties[0]
			if j.State != w.State || j.Message != w.Message {
				t.Errorf("joined: %s %q; on every object: %s %q", j.State, j.Message, w.State, w.Message)
			}
		})
	}
}

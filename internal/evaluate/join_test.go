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
	const join = `b.spec.?cluster.?name.orValue("") == object.metadata.name`
	tests := []struct {
		name           string
		rule, message  string
		namespace      string
		want           []string
		secondDutyRule string
	}{
		{name: "exists joined", rule: `related.backups.exists(b, ` + join + ` && b.?status.?phase.orValue("") == "completed")`, want: []string{"spec", "cluster", "name"}},
		{name: "join on the right, nested in &&", rule: `related.backups.exists(b, b.?status.?phase.orValue("") == "completed" && (object.metadata.name == b.spec.?cluster.?name.orValue("") && true))`, want: []string{"spec", "cluster", "name"}},
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

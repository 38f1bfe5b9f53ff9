package evaluate

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/responsibility-operator/responsibility-operator/api/v1alpha1"
)

func TestNamespaceWide(t *testing.T) {
	tests := []struct {
		name, rule, messageExpr string
		want                    bool
	}{
		{"related only", `related.schedules.size() > 0`, "", true},
		{"namespace object", `namespaceObject.?metadata.?labels[?"tier"].orValue("") == "gold"`, "", true},
		{"params and now", `related.schedules.exists(s, now - timestamp(s.metadata.creationTimestamp) < duration("1h"))`, "", true},
		{"the object's namespace", `related.schedules.exists(s, s.metadata.namespace == object.metadata.namespace)`,
			`"No schedule in namespace " + object.metadata.namespace`, true},
		{"has the namespace", `has(object.metadata.namespace) && related.schedules.size() > 0`, "", true},
		{"join on the name", backupRule, "", false},
		{"a field of the object", tlsRule, "", false},
		{"the object's labels", `related.schedules.exists(s, s.spec.cluster.name in object.metadata.?labels.orValue({}))`, "", false},
		{"the object's kind", `object.kind == "Cluster" || related.schedules.size() > 0`, "", false},
		{"the whole object", `related.schedules.exists(s, s.spec.cluster == object)`, "", false},
		{"the whole metadata", `related.schedules.size() > 0 && object.metadata.size() > 0`, "", false},
		{"the name in the message only", `related.schedules.size() > 0`, `"Cluster " + object.metadata.name + " has no schedule"`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := mustCompile(t, model("m", func(rm *v1alpha1.ResponsibilityModel) {
				d := &rm.Spec.Areas[1].Duties[0]
				d.Rule, d.MessageExpression = tt.rule, tt.messageExpr
			}))
			d := m.Duties[slices.IndexFunc(m.Duties, func(d *Duty) bool { return d.Name == "backup-scheduled" })]
			if got := d.NamespaceWide(); got != tt.want {
				t.Errorf("NamespaceWide() = %v, want %v", got, tt.want)
			}
			// Evaluated on a namespaced object, the result and the annotation
			// say so; the same duty on an object of no namespace is its own.
			in := Input{Object: cluster("db", nil, map[string]any{}, nil), Namespace: namespace(nil)}
			res := Evaluate([]*Model{m}, in)
			scope := ParseDuties(res.Annotations[v1alpha1.AnnotationDuties])["m"]["backup-scheduled"].Scope
			if wantScope := map[bool]string{true: ScopeNamespace}[tt.want]; scope != wantScope {
				t.Errorf("annotation scope = %q, want %q", scope, wantScope)
			}
			obj := cluster("db", nil, map[string]any{}, nil)
			delete(obj["metadata"].(map[string]any), "namespace")
			for _, dr := range Evaluate([]*Model{m}, Input{Object: obj}).Duties {
				if dr.NamespaceWide {
					t.Errorf("duty %s of an object of no namespace is namespace-wide", dr.Duty.Name)
				}
			}
		})
	}
}

// TestNamespaceWideCatalog pins which catalog duties are namespace-wide, so
// that a change to a rule that moves a duty between the namespace's findings
// and the object's is a visible decision.
func TestNamespaceWideCatalog(t *testing.T) {
	files, err := filepath.Glob("../../config/catalog/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, f := range files {
		if filepath.Base(f) == "kustomization.yaml" {
			continue
		}
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		rm := &v1alpha1.ResponsibilityModel{}
		if err := yaml.UnmarshalStrict(data, rm); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for _, d := range mustCompile(t, rm).Duties {
			if d.NamespaceWide() {
				got = append(got, rm.Name+"/"+d.Name)
			}
		}
	}
	slices.Sort(got)
	want := []string{
		"danubedata-cross-cutting/alerts-configured",
		"danubedata-cross-cutting/network-policy-configured",
	}
	if !slices.Equal(got, want) {
		t.Errorf("namespace-wide catalog duties:\n got %q\nwant %q", got, want)
	}
}

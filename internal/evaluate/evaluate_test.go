package evaluate

import (
	"os"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/yaml"

	"github.com/responsibility-operator/responsibility-operator/api/v1alpha1"
)

var (
	clusterGVK  = schema.GroupVersionKind{Group: "postgresql.cnpg.io", Version: "v1", Kind: "Cluster"}
	backupGVK   = schema.GroupVersionKind{Group: "postgresql.cnpg.io", Version: "v1", Kind: "ScheduledBackup"}
	vmGVK       = schema.GroupVersionKind{Group: "kubevirt.io", Version: "v1", Kind: "VirtualMachine"}
	clusterTgt  = v1alpha1.Target{APIVersion: "postgresql.cnpg.io/v1", Kind: "Cluster"}
	tlsRule     = `object.spec.?postgresql.?parameters.?ssl_min_protocol_version.hasValue()`
	backupRule  = `related.schedules.exists(s, s.spec.cluster.name == object.metadata.name)`
	replicaRule = `object.spec.instances >= 2`
)

// model builds a ResponsibilityModel for tests; mutate tweaks it.
func model(name string, mutate ...func(*v1alpha1.ResponsibilityModel)) *v1alpha1.ResponsibilityModel {
	rm := &v1alpha1.ResponsibilityModel{
		ObjectMeta: metav1.ObjectMeta{Name: name, Generation: 1},
		Spec: v1alpha1.ResponsibilityModelSpec{
			Service:  "Managed Databases",
			Provider: "DanubeData",
			Targets:  []v1alpha1.Target{clusterTgt},
			Areas: []v1alpha1.Area{
				{Name: "Connection Security", Provider: "TLS certificates", Customer: "Enforce TLS in clients",
					Duties: []v1alpha1.Duty{{Name: "tls-enforced", Rule: tlsRule, Message: "Set ssl_min_protocol_version"}}},
				{Name: "Backups", Provider: "Backup storage", Customer: "Backup schedule",
					Duties: []v1alpha1.Duty{{Name: "backup-scheduled", Rule: backupRule, Message: "Create a ScheduledBackup",
						Related: []v1alpha1.RelatedResource{{Name: "schedules", APIVersion: "postgresql.cnpg.io/v1", Kind: "ScheduledBackup"}}}}},
			},
		},
	}
	for _, f := range mutate {
		f(rm)
	}
	return rm
}

func mustCompile(t testing.TB, rm *v1alpha1.ResponsibilityModel) *Model {
	t.Helper()
	m, err := Compile(rm)
	if err != nil {
		t.Fatalf("compile %s: %v", rm.Name, err)
	}
	return m
}

func cluster(name string, labels map[string]any, spec map[string]any, annotations map[string]any) map[string]any {
	meta := map[string]any{"name": name, "namespace": "team-a"}
	if labels != nil {
		meta["labels"] = labels
	}
	if annotations != nil {
		meta["annotations"] = annotations
	}
	return map[string]any{"apiVersion": "postgresql.cnpg.io/v1", "kind": "Cluster", "metadata": meta, "spec": spec}
}

func namespace(labels map[string]any) map[string]any {
	return map[string]any{"apiVersion": "v1", "kind": "Namespace", "metadata": map[string]any{"name": "team-a", "labels": labels}}
}

func schedule(cluster string) map[string]any {
	return map[string]any{"metadata": map[string]any{"name": cluster + "-daily"}, "spec": map[string]any{"cluster": map[string]any{"name": cluster}}}
}

func TestCompileErrors(t *testing.T) {
	tests := []struct {
		name    string
		mutate  func(*v1alpha1.ResponsibilityModel)
		wantErr []string // substrings, each must appear
	}{
		{name: "valid model", mutate: func(*v1alpha1.ResponsibilityModel) {}},
		{
			name:    "syntax error names the field and the position",
			mutate:  func(rm *v1alpha1.ResponsibilityModel) { rm.Spec.Areas[0].Duties[0].Rule = "object.spec.(" },
			wantErr: []string{"spec.areas[0].duties[0].rule", "compile", ":1:"},
		},
		{
			name:    "non-bool rule",
			mutate:  func(rm *v1alpha1.ResponsibilityModel) { rm.Spec.Areas[0].Duties[0].Rule = `"yes"` },
			wantErr: []string{"spec.areas[0].duties[0].rule", "must evaluate to bool"},
		},
		{
			name:    "undeclared related list is a compile error",
			mutate:  func(rm *v1alpha1.ResponsibilityModel) { rm.Spec.Areas[1].Duties[0].Rule = "related.backups.size() > 0" },
			wantErr: []string{"spec.areas[1].duties[0].rule", "backups"},
		},
		{
			name: "cost that is always over the limit is refused",
			mutate: func(rm *v1alpha1.ResponsibilityModel) {
				rm.Spec.Areas[0].Duties[0].Rule = `[` + strings.Repeat("1,", 999) + `1].map(a, [` + strings.Repeat("1,", 999) + `1].map(b, a + b)).size() > 0`
			},
			wantErr: []string{"estimated cost", "over the limit"},
		},
		{
			name:    "messageExpression must be a string",
			mutate:  func(rm *v1alpha1.ResponsibilityModel) { rm.Spec.Areas[0].Duties[0].MessageExpression = "1 + 1" },
			wantErr: []string{"messageExpression", "must evaluate to string"},
		},
		{
			name: "duplicate duty names across areas",
			mutate: func(rm *v1alpha1.ResponsibilityModel) {
				rm.Spec.Areas[1].Duties[0].Name = "tls-enforced"
			},
			wantErr: []string{`duplicate duty "tls-enforced"`},
		},
		{
			name: "bad selector",
			mutate: func(rm *v1alpha1.ResponsibilityModel) {
				rm.Spec.Targets[0].Selector = &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "a", Operator: "Bogus"}}}
			},
			wantErr: []string{"spec.targets[0].selector"},
		},
		{
			name:    "bad apiVersion",
			mutate:  func(rm *v1alpha1.ResponsibilityModel) { rm.Spec.Targets[0].APIVersion = "a/b/c" },
			wantErr: []string{"spec.targets[0]", "a/b/c"},
		},
		{
			name: "every error is reported at once",
			mutate: func(rm *v1alpha1.ResponsibilityModel) {
				rm.Spec.Areas[0].Duties[0].Rule = "object.("
				rm.Spec.Areas[1].Duties[0].Rule = "1"
			},
			wantErr: []string{"spec.areas[0].duties[0].rule", "spec.areas[1].duties[0].rule"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Compile(model("m", tt.mutate))
			if len(tt.wantErr) == 0 {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("expected an error containing %q", tt.wantErr)
			}
			for _, want := range tt.wantErr {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not contain %q", err, want)
				}
			}
		})
	}
}

func TestMatch(t *testing.T) {
	prod := &metav1.LabelSelector{MatchLabels: map[string]string{"env": "prod"}}
	tests := []struct {
		name       string
		target     v1alpha1.Target
		gvk        schema.GroupVersionKind
		objLabels  map[string]string
		nsLabels   map[string]any
		namespaced bool
		want       bool
	}{
		{name: "kind matches, no selectors", target: clusterTgt, gvk: clusterGVK, namespaced: true, want: true},
		{name: "other kind", target: clusterTgt, gvk: vmGVK, namespaced: true, want: false},
		{name: "other version of the group is another kind", target: clusterTgt, gvk: schema.GroupVersionKind{Group: "postgresql.cnpg.io", Version: "v2", Kind: "Cluster"}, namespaced: true, want: false},
		{name: "label selector matches", target: v1alpha1.Target{APIVersion: "postgresql.cnpg.io/v1", Kind: "Cluster", Selector: prod}, gvk: clusterGVK, objLabels: map[string]string{"env": "prod"}, namespaced: true, want: true},
		{name: "label selector does not match", target: v1alpha1.Target{APIVersion: "postgresql.cnpg.io/v1", Kind: "Cluster", Selector: prod}, gvk: clusterGVK, objLabels: map[string]string{"env": "dev"}, namespaced: true, want: false},
		{name: "namespace selector matches", target: v1alpha1.Target{APIVersion: "postgresql.cnpg.io/v1", Kind: "Cluster", NamespaceSelector: prod}, gvk: clusterGVK, nsLabels: map[string]any{"env": "prod"}, namespaced: true, want: true},
		{name: "namespace selector does not match", target: v1alpha1.Target{APIVersion: "postgresql.cnpg.io/v1", Kind: "Cluster", NamespaceSelector: prod}, gvk: clusterGVK, nsLabels: map[string]any{"env": "dev"}, namespaced: true, want: false},
		{name: "cluster-scoped object, no namespace selector", target: clusterTgt, gvk: clusterGVK, namespaced: false, want: true},
		{name: "cluster-scoped object never matches a namespace selector", target: v1alpha1.Target{APIVersion: "postgresql.cnpg.io/v1", Kind: "Cluster", NamespaceSelector: prod}, gvk: clusterGVK, namespaced: false, want: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := mustCompile(t, model("m", func(rm *v1alpha1.ResponsibilityModel) { rm.Spec.Targets = []v1alpha1.Target{tt.target} }))
			var ns map[string]any
			if tt.namespaced {
				ns = namespace(tt.nsLabels)
			}
			got := len(Match([]*Model{m}, tt.gvk, tt.objLabels, ns, tt.namespaced)) == 1
			if got != tt.want {
				t.Errorf("match = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestMatchIsSortedByName(t *testing.T) {
	b := mustCompile(t, model("b"))
	a := mustCompile(t, model("a"))
	got := Match([]*Model{b, a}, clusterGVK, nil, namespace(nil), true)
	if len(got) != 2 || got[0].Name != "a" || got[1].Name != "b" {
		t.Fatalf("got %v, want [a b]", names(got))
	}
}

func names(ms []*Model) []string {
	var out []string
	for _, m := range ms {
		out = append(out, m.Name)
	}
	return out
}

func readYAML(t testing.TB, path string, into any) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(raw, into); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

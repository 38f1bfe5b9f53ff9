package plugin

import (
	"fmt"
	"slices"
	"testing"

	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/responsibility-operator/responsibility-operator/api/v1alpha1"
)

// A namespace-wide duty is one row of the namespace per state and message,
// listing its objects; an object's own duties stay rows of the object, and
// --summary counts the objects either way.
func TestUnmetRowsFoldNamespaceFindings(t *testing.T) {
	gvk := schema.GroupVersionKind{Group: "postgresql.cnpg.io", Version: "v1", Kind: "Cluster"}
	flagged := func(ns, name, duties string) Flagged {
		return Flagged{GVK: gvk, Namespace: ns, Name: name, Annotations: map[string]string{v1alpha1.AnnotationDuties: duties}}
	}
	nsWide := `"alerts":{"state":"Unmet","message":"no alert in %s","scope":"Namespace"}`
	objects := []Flagged{
		flagged("b", "z", fmt.Sprintf(`{"db":{%s,"tls":{"state":"Unmet","message":"set TLS"}}}`, fmt.Sprintf(nsWide, "b"))),
		flagged("b", "y", fmt.Sprintf(`{"db":{%s}}`, fmt.Sprintf(nsWide, "b"))),
		flagged("a", "x", fmt.Sprintf(`{"db":{%s}}`, fmt.Sprintf(nsWide, "a"))),
		flagged("b", "w", `{"db":{"alerts":{"state":"Waived","message":"waived","scope":"Namespace"},"tls":{"state":"Unmet","message":"set TLS"}}}`),
	}
	rows := unmetRows(objects)
	var got []string
	for _, r := range rows {
		got = append(got, fmt.Sprintf("%s %s/%s %s %s %v", r.Namespace, r.Kind, r.Name, r.Duty, r.Scope, r.Objects))
	}
	want := []string{
		"a Namespace/a alerts Namespace [cluster.postgresql.cnpg.io/x]",
		"b Cluster/w tls  []",
		"b Cluster/z tls  []",
		"b Namespace/b alerts Namespace [cluster.postgresql.cnpg.io/y cluster.postgresql.cnpg.io/z]",
	}
	if !slices.Equal(got, want) {
		t.Errorf("rows:\n got %q\nwant %q", got, want)
	}
	var summary []string
	for _, s := range summarizeUnmet(rows) {
		summary = append(summary, fmt.Sprintf("%s %s %d %s", s.Namespace, s.Duty, s.Objects, s.Example))
	}
	wantSummary := []string{"a alerts 1 cluster.postgresql.cnpg.io/x", "b alerts 2 cluster.postgresql.cnpg.io/y", "b tls 2 cluster.postgresql.cnpg.io/w"}
	if !slices.Equal(summary, wantSummary) {
		t.Errorf("summary:\n got %q\nwant %q", summary, wantSummary)
	}
}

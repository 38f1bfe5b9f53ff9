package watch

import (
	"reflect"
	"strings"
	"testing"
	"unsafe"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/responsibility-operator/responsibility-operator/api/v1alpha1"
	"github.com/responsibility-operator/responsibility-operator/internal/evaluate"
)

func TestTransformForCache(t *testing.T) {
	transform := TransformForCache(nil)
	decoded := func() *unstructured.Unstructured {
		// A fresh copy of every string, as a decoder makes for each object.
		matrix := strings.Clone(`{"m":{"Backups":{"provider":"p","customer":"c"}}}`)
		return &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "postgresql.cnpg.io/v1", "kind": "Cluster",
			"metadata": map[string]any{
				"name": "db", strings.Clone("namespace"): strings.Clone("team-a"),
				"managedFields": []any{map[string]any{"manager": "kubectl"}},
				"labels":        map[string]any{strings.Clone("app.kubernetes.io/name"): strings.Clone("db")},
				"annotations": map[string]any{
					lastAppliedAnnotation:               `{"apiVersion":"postgresql.cnpg.io/v1"}`,
					v1alpha1.AnnotationMatrix:           matrix,
					strings.Clone("team.example/owner"): strings.Clone("alice"),
				},
			},
			"spec": map[string]any{"instances": int64(3)},
		}}
	}
	var got []*unstructured.Unstructured
	for range 2 {
		out, err := transform(decoded())
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, out.(*unstructured.Unstructured))
	}
	a, b := got[0].GetAnnotations(), got[1].GetAnnotations()
	if _, ok := got[0].Object["metadata"].(map[string]any)["managedFields"]; ok {
		t.Error("managedFields kept")
	}
	if _, ok := a[lastAppliedAnnotation]; ok {
		t.Error("last-applied configuration kept")
	}
	if a["team.example/owner"] != "alice" || got[0].Object["spec"].(map[string]any)["instances"] != int64(3) {
		t.Errorf("the tenant's data changed: %v %v", a, got[0].Object["spec"])
	}
	if a[v1alpha1.AnnotationMatrix] != b[v1alpha1.AnnotationMatrix] ||
		unsafe.StringData(a[v1alpha1.AnnotationMatrix]) != unsafe.StringData(b[v1alpha1.AnnotationMatrix]) {
		t.Error("two objects' equal matrix annotations are two copies, want one shared")
	}
	// Keys, and the namespace, are the same few strings on every object.
	metaA, metaB := got[0].Object["metadata"].(map[string]any), got[1].Object["metadata"].(map[string]any)
	labelsA, labelsB := metaA["labels"].(map[string]any), metaB["labels"].(map[string]any)
	annotationsA, annotationsB := metaA["annotations"].(map[string]any), metaB["annotations"].(map[string]any)
	for _, c := range []struct {
		key  string
		a, b map[string]any
	}{
		{"namespace", metaA, metaB},
		{"app.kubernetes.io/name", labelsA, labelsB},
		{"team.example/owner", annotationsA, annotationsB},
	} {
		if keyData(t, c.a, c.key) != keyData(t, c.b, c.key) {
			t.Errorf("two objects' key %q is two copies, want one shared", c.key)
		}
	}
	if got[0].GetNamespace() != "team-a" || unsafe.StringData(got[0].GetNamespace()) != unsafe.StringData(got[1].GetNamespace()) {
		t.Error("two objects' namespace is two copies, want one shared")
	}
	if got[0].GetLabels()["app.kubernetes.io/name"] != "db" {
		t.Errorf("labels changed: %v", got[0].GetLabels())
	}
	// Typed objects (models, namespaces) lose their managedFields too.
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "team-a", ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kubectl"}}}}
	out, err := transform(ns)
	if err != nil {
		t.Fatal(err)
	}
	if mf := out.(*corev1.Namespace).ManagedFields; mf != nil {
		t.Errorf("a typed object's managedFields kept: %v", mf)
	}
}

// keyData is where the key of m equal to key keeps its bytes.
func keyData(t *testing.T, m map[string]any, key string) *byte {
	t.Helper()
	for k := range m {
		if k == key {
			return unsafe.StringData(k)
		}
	}
	t.Fatalf("no key %q in %v", key, m)
	return nil
}

func TestTransformProjects(t *testing.T) {
	p := NewProjections()
	cluster := schema.GroupVersionKind{Group: "postgresql.cnpg.io", Version: "v1", Kind: "Cluster"}
	p.set(cluster, &evaluate.Fields{Named: map[string]*evaluate.Fields{"spec": {Named: map[string]*evaluate.Fields{"instances": evaluate.AllFields()}}}})
	transform := TransformForCache(p)
	object := func(apiVersion, kind string) *unstructured.Unstructured {
		return &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": apiVersion, "kind": kind,
			"metadata": map[string]any{"name": "x", "labels": map[string]any{"app": "db"}},
			"spec":     map[string]any{"instances": int64(3), "bootstrap": map[string]any{"initdb": "big"}},
			"status":   map[string]any{"phase": "ready"},
		}}
	}
	for _, tc := range []struct {
		name, apiVersion, kind string
		want                   map[string]any
	}{
		{"a projected kind keeps what is read", "postgresql.cnpg.io/v1", "Cluster", map[string]any{
			"apiVersion": "postgresql.cnpg.io/v1", "kind": "Cluster",
			"metadata": map[string]any{"name": "x", "labels": map[string]any{"app": "db"}},
			"spec":     map[string]any{"instances": int64(3)},
		}},
		{"another version of the kind is kept whole", "postgresql.cnpg.io/v2", "Cluster", object("postgresql.cnpg.io/v2", "Cluster").Object},
		{"another kind is kept whole", "v1", "Namespace", object("v1", "Namespace").Object},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := transform(object(tc.apiVersion, tc.kind))
			if err != nil {
				t.Fatal(err)
			}
			if got := out.(*unstructured.Unstructured).Object; !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got  %v\nwant %v", got, tc.want)
			}
		})
	}
	p.delete(cluster)
	out, _ := transform(object("postgresql.cnpg.io/v1", "Cluster"))
	if !reflect.DeepEqual(out.(*unstructured.Unstructured).Object, object("postgresql.cnpg.io/v1", "Cluster").Object) {
		t.Error("a kind whose projection was deleted is still projected")
	}
}

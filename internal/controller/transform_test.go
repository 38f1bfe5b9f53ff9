package controller

import (
	"reflect"
	"strings"
	"testing"
	"unsafe"

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
				"name": "db", "namespace": "team-a",
				"managedFields": []any{map[string]any{"manager": "kubectl"}},
				"annotations": map[string]any{
					lastAppliedAnnotation:     `{"apiVersion":"postgresql.cnpg.io/v1"}`,
					v1alpha1.AnnotationMatrix: matrix,
					"team.example/owner":      strings.Clone("alice"),
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
	if len(got[0].GetManagedFields()) != 0 {
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

package controller

import (
	"strings"
	"testing"
	"unsafe"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/responsibility-operator/responsibility-operator/api/v1alpha1"
)

func TestTransformForCache(t *testing.T) {
	transform := TransformForCache()
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

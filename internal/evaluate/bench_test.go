package evaluate

import (
	"fmt"
	"path/filepath"
	"slices"
	"testing"

	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/responsibility-operator/responsibility-operator/api/v1alpha1"
)

// benchModel is a typical catalog model: eight matrix rows and five duties,
// one of them reading related objects (the catalog's three that make bench
// keeps, and two of its own).
func benchModel(b *testing.B) *Model {
	b.Helper()
	rm := &v1alpha1.ResponsibilityModel{}
	readYAML(b, filepath.Join("..", "..", "config", "catalog", "managed-databases.yaml"), rm)
	var extra []v1alpha1.Duty
	extra = append(extra,
		v1alpha1.Duty{Name: "replicas", Message: "Run at least two instances", Rule: `object.spec.?instances.orValue(1) >= 2`},
		v1alpha1.Duty{Name: "resource-limits-set", Message: "Set resources.limits", Rule: `has(object.spec.resources) && has(object.spec.resources.limits) && has(object.spec.resources.limits.memory) && quantity(object.spec.resources.limits.memory).compareTo(quantity("256Mi")) >= 0`},
	)
	keep := []string{"tls-enforced", "superuser-access-restricted", "backup-scheduled"}
	for i := range rm.Spec.Areas {
		rm.Spec.Areas[i].Duties = slices.DeleteFunc(rm.Spec.Areas[i].Duties, func(d v1alpha1.Duty) bool { return !slices.Contains(keep, d.Name) })
		if rm.Spec.Areas[i].Name == "Performance" {
			rm.Spec.Areas[i].Duties = append(rm.Spec.Areas[i].Duties, extra...)
		}
	}
	m := mustCompile(b, rm)
	if len(m.Duties) != 5 {
		b.Fatalf("benchmark model has %d duties, want 5", len(m.Duties))
	}
	return m
}

// benchInput is the good CNPG sample (a realistic, ~2 KiB Cluster) with a
// status block like the one CNPG writes, in a namespace with three
// ScheduledBackups, only the last of which names it.
func benchInput(b *testing.B) Input {
	b.Helper()
	obj := map[string]any{}
	readYAML(b, filepath.Join("..", "..", "config", "samples", "workloads", "cnpg-cluster-good.yaml"), &obj)
	obj["status"] = map[string]any{
		"instances": int64(3), "readyInstances": int64(3), "phase": "Cluster in healthy state",
		"currentPrimary": "orders-db-1", "targetPrimary": "orders-db-1",
		"instanceNames": []any{"orders-db-1", "orders-db-2", "orders-db-3"},
		"conditions":    []any{map[string]any{"type": "Ready", "status": "True", "reason": "ClusterIsReady", "message": "Cluster is Ready"}},
	}
	var schedules []map[string]any
	for _, name := range []string{"billing-db", "users-db", "orders-db"} {
		schedules = append(schedules, map[string]any{
			"apiVersion": "postgresql.cnpg.io/v1", "kind": "ScheduledBackup",
			"metadata": map[string]any{"name": name + "-nightly", "namespace": "demo"},
			"spec":     map[string]any{"schedule": "0 0 3 * * *", "cluster": map[string]any{"name": name}},
		})
	}
	return Input{
		GVK:       schema.GroupVersionKind{Group: "postgresql.cnpg.io", Version: "v1", Kind: "Cluster"},
		Object:    obj,
		Namespace: namespace(map[string]any{"tenant": "shop"}),
		Related:   map[RelatedSource][]map[string]any{{GVK: schema.GroupVersionKind{Group: "postgresql.cnpg.io", Version: "v1", Kind: "ScheduledBackup"}}: schedules},
	}
}

// BenchmarkEvaluate5Duties is one object's whole evaluation: five rules, the
// duties and matrix annotations, the unmet list and the status label.
func BenchmarkEvaluate5Duties(b *testing.B) {
	models := []*Model{benchModel(b)}
	in := benchInput(b)
	res := Evaluate(models, in)
	if res.Status() != v1alpha1.StatusMet {
		b.Fatalf("benchmark object is %s, want met: %v", res.Status(), res.Annotations[v1alpha1.AnnotationDuties])
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		Evaluate(models, in)
	}
}

// BenchmarkEvaluateAndCompare adds what the reconciler does next: compare
// the result with the annotations already on the object.
func BenchmarkEvaluateAndCompare(b *testing.B) {
	models := []*Model{benchModel(b)}
	in := benchInput(b)
	res := Evaluate(models, in)
	labels := res.Labels
	annotations := res.Annotations
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		r := Evaluate(models, in)
		if !OwnedMetadataEqual(annotations, labels, r) {
			b.Fatal("unchanged object compares unequal")
		}
	}
}

// BenchmarkEvaluateManyModels shows how the cost grows with the number of
// models matching one object.
func BenchmarkEvaluateManyModels(b *testing.B) {
	base := benchModel(b)
	in := benchInput(b)
	for _, n := range []int{1, 3, 10} {
		models := make([]*Model, n)
		for i := range models {
			cp := *base
			cp.Name = fmt.Sprintf("model-%02d", i)
			models[i] = &cp
		}
		b.Run(fmt.Sprintf("models=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				Evaluate(models, in)
			}
		})
	}
}

// BenchmarkEvaluateRelatedPerNamespace shows how one object's evaluation
// grows with the related objects of its namespace: a rule such as the
// catalog's backup-scheduled walks every ScheduledBackup of the namespace
// until one names the cluster. Here it is the last, as for a cluster whose
// schedule was created after the others; 150 and 750 per kind are the
// namespaces of `make bench` at 10,000 and 50,000 workloads.
func BenchmarkEvaluateRelatedPerNamespace(b *testing.B) {
	models := []*Model{benchModel(b)}
	in := benchInput(b)
	var source RelatedSource
	for s := range in.Related {
		source = s
	}
	for _, n := range []int{3, 150, 750} {
		schedules := make([]map[string]any, n)
		for i := range schedules {
			cluster := fmt.Sprintf("db-%05d", i)
			if i == n-1 {
				cluster = "orders-db"
			}
			schedules[i] = map[string]any{
				"apiVersion": "postgresql.cnpg.io/v1", "kind": "ScheduledBackup",
				"metadata": map[string]any{"name": cluster + "-nightly", "namespace": "demo"},
				"spec":     map[string]any{"schedule": "0 0 3 * * *", "cluster": map[string]any{"name": cluster}},
			}
		}
		in.Related = map[RelatedSource][]map[string]any{source: schedules}
		if res := Evaluate(models, in); res.Status() != v1alpha1.StatusMet {
			b.Fatalf("benchmark object is %s, want met: %v", res.Status(), res.Annotations[v1alpha1.AnnotationDuties])
		}
		b.Run(fmt.Sprintf("related=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				Evaluate(models, in)
			}
		})
	}
}

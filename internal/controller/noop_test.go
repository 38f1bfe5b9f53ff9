package controller

import (
	"context"
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/responsibility-operator/responsibility-operator/api/v1alpha1"
	"github.com/responsibility-operator/responsibility-operator/internal/metrics"
)

// TestApplyThatChangesNothingDoesNotSpin: a tenant sets one of the operator's
// keys that the operator does not want on that object (ignored-waivers, with
// no waiver on it) under a field manager of its own. The operator's apply
// cannot remove a key it does not own, so it changes nothing and the
// object's resourceVersion stays. The operator must not then wait for the
// cache to show a newer version: that would requeue the object every 50 ms
// for ever, from the next time anything made it look again.
func TestApplyThatChangesNothingDoesNotSpin(t *testing.T) {
	startManager(t)
	ns := newNamespace(t, map[string]string{"test": "noop-apply"})
	applyModel(t, dbModel("noop-db", "noop-apply"))
	db := createObject(t, cnpg, "Cluster", ns, "orders", nil, tlsSpec())
	t.Cleanup(func() { deleteObjects(db) })
	waitAnnotation(t, db, v1alpha1.AnnotationUnmet, "noop-db/backup-scheduled", true)

	cur := getObject(t, db)
	ann := cur.GetAnnotations()
	ann[v1alpha1.AnnotationIgnoredWaivers] = "made-up"
	cur.SetAnnotations(ann)
	if err := k8s.Update(context.Background(), cur, client.FieldOwner("kubectl-edit")); err != nil {
		t.Fatalf("tenant update: %v", err)
	}
	reconciles := func() float64 {
		v, _ := metricValue(t, "controller_runtime_reconcile_total", map[string]string{"controller": "workload", "result": "requeue_after"})
		return v
	}
	// The tenant's update is seen and answered with one apply.
	applies := func() float64 {
		v, _ := metricValue(t, "responsibility_applies_total", map[string]string{"kind": "Cluster", "result": metrics.ApplySuccess})
		return v
	}
	before := applies()
	eventually(t, 10*time.Second, func() error {
		if applies() == before {
			return fmt.Errorf("no apply after the tenant's update yet")
		}
		return nil
	})
	// A later reason to look at the object again: a namespace annotation
	// (every object of the namespace is re-evaluated).
	nsObj := &corev1.Namespace{}
	if err := k8s.Get(context.Background(), client.ObjectKey{Name: ns}, nsObj); err != nil {
		t.Fatal(err)
	}
	nsObj.Annotations = map[string]string{"touched": "yes"}
	if err := k8s.Update(context.Background(), nsObj); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	start := reconciles()
	time.Sleep(2 * time.Second)
	if n := reconciles() - start; n > 2 {
		t.Errorf("%v requeued reconciles in 2 s after an apply that changed nothing, want none", n)
	}
}

package faults

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/responsibility-operator/responsibility-operator/api/v1alpha1"
	"github.com/responsibility-operator/responsibility-operator/internal/devcluster"
	"github.com/responsibility-operator/responsibility-operator/internal/report"
	"github.com/responsibility-operator/responsibility-operator/internal/samples"
)

// TestUninstallLeavesNothing installs the catalog and the samples, waits
// for the operator (with its webhook) to annotate every sample and write
// the tenants' policy reports, then runs what `make undeploy` runs first,
// `kubectl delete --ignore-not-found --wait responsibilitymodels --all`,
// while the operator still runs, and stops the operator. Nothing of the
// operator may remain: no model, no responsibility.io/ annotation or label
// (but a tenant's own waivers), no responsibility.io finalizer, no
// managedFields entry of the field manager responsibility-operator owning a
// field, and no policy report of the operator.
//
// It fails if a model's finalizer lets it go before its keys are removed
// from every object (or never lets it go: the delete times out), or if the
// removal leaves an operator key behind or touches a tenant's key, or if a
// policy report of the operator outlives the models (the finalizer waits
// until no report lists its model).
func TestUninstallLeavesNothing(t *testing.T) {
	e := startCluster(t, true)
	ctx := t.Context()
	op := e.startOperator("operator")
	e.waitReady(op)
	e.kubectl("", "apply", "-k", filepath.Join(root, "config", "catalog"))
	// The samples go in once every model is ready: applied while the models
	// are being set up, a sample now and then keeps a stale Unmet state of
	// the duties that read related objects (see the report of issue 8),
	// which is not what this test is about.
	eventually(t, time.Minute, "every model is ready", func() (bool, string) {
		models := &v1alpha1.ResponsibilityModelList{}
		if err := e.c.List(ctx, models); err != nil {
			return false, err.Error()
		}
		for _, m := range models.Items {
			if !meta.IsStatusConditionTrue(m.Status.Conditions, v1alpha1.ConditionReady) {
				return false, m.Name + " is not ready"
			}
		}
		return len(models.Items) > 0, "no model"
	})
	e.kubectl("", "apply", "-k", filepath.Join(root, "config", "samples", "workloads"))
	set, err := samples.Load(root)
	if err != nil {
		t.Fatal(err)
	}
	if err := devcluster.WriteStatus(ctx, e.c, set.Unstructured()); err != nil {
		t.Fatal(err)
	}
	workloads := set.Workloads()
	eventually(t, 2*time.Minute, "the operator annotates every sample", func() (bool, string) {
		var pending []string
		for _, w := range workloads {
			u, err := e.get(w.Unstructured)
			if err != nil {
				return false, err.Error()
			}
			if got := u.GetLabels()[v1alpha1.LabelStatus]; got != w.Status() {
				pending = append(pending, fmt.Sprintf("%s: status %q, want %q; unmet %q", objectKey(u), got, w.Status(), u.GetAnnotations()[v1alpha1.AnnotationUnmet]))
			}
		}
		return len(pending) == 0, strings.Join(pending, "\n  ")
	})
	eventually(t, 30*time.Second, "the operator writes the tenants' policy reports", func() (bool, string) {
		n, err := e.operatorReports()
		return err == nil && n >= 2, fmt.Sprintf("%d reports (%v)", n, err)
	})

	start := time.Now()
	out := e.kubectl("", "delete", "--ignore-not-found", "--wait", "--timeout=2m", "responsibilitymodels", "--all")
	t.Logf("kubectl delete responsibilitymodels --all took %s: %d models deleted", time.Since(start).Round(100*time.Millisecond), strings.Count(out, " deleted"))
	if err := op.Stop(); err != nil {
		t.Errorf("stop the operator: %v", err)
	}

	models := &v1alpha1.ResponsibilityModelList{}
	if err := e.c.List(ctx, models); err != nil {
		t.Fatal(err)
	}
	for _, m := range models.Items {
		t.Errorf("model %s is left (finalizers %v)", m.Name, m.Finalizers)
	}
	var leftovers []string
	managed := 0
	for _, o := range set.Objects {
		u, err := e.get(o.Unstructured)
		if err != nil {
			t.Fatal(err)
		}
		left, entries := leftoversOn(o.Unstructured, u)
		leftovers = append(leftovers, left...)
		managed += entries
	}
	if len(leftovers) > 0 {
		t.Errorf("after the models were deleted and the operator stopped, %d things are left:\n  %s", len(leftovers), sortedSample(leftovers, 20))
	}
	t.Logf("%d sample objects checked; %d of them keep a managedFields entry of %s that owns no field", len(set.Objects), managed, v1alpha1.FieldManager)
	reports, err := e.operatorReports()
	if err != nil {
		t.Fatal(err)
	}
	if reports > 0 {
		t.Errorf("%d policy reports of the operator outlive the models: a deleting model's finalizer must wait until no report lists it", reports)
	}
}

// leftoversOn lists what the operator left on an object (sample is the
// object as the tenant wrote it, live as it is now), and counts the
// managedFields entries of the operator that own no field.
func leftoversOn(sample, live *unstructured.Unstructured) (leftovers []string, emptyEntries int) {
	key := objectKey(live)
	for k := range live.GetAnnotations() {
		if strings.HasPrefix(k, v1alpha1.Prefix) && !isTenantWaiver(sample, k) {
			leftovers = append(leftovers, fmt.Sprintf("%s: annotation %s", key, k))
		}
	}
	for k := range live.GetLabels() {
		if strings.HasPrefix(k, v1alpha1.Prefix) {
			leftovers = append(leftovers, fmt.Sprintf("%s: label %s", key, k))
		}
	}
	for _, f := range live.GetFinalizers() {
		if strings.Contains(f, "responsibility.io") {
			leftovers = append(leftovers, fmt.Sprintf("%s: finalizer %s", key, f))
		}
	}
	for k := range sample.GetAnnotations() {
		if _, ok := live.GetAnnotations()[k]; !ok {
			leftovers = append(leftovers, fmt.Sprintf("%s: the tenant's annotation %s is gone", key, k))
		}
	}
	for _, mf := range live.GetManagedFields() {
		if mf.Manager != v1alpha1.FieldManager {
			continue
		}
		if mf.FieldsV1 != nil && mf.FieldsV1.String() != "{}" {
			leftovers = append(leftovers, fmt.Sprintf("%s: managedFields of %s (%s) still own %s", key, mf.Manager, mf.Operation, mf.FieldsV1.String()))
			continue
		}
		emptyEntries++
	}
	return leftovers, emptyEntries
}

// get reads an object's current state.
func (e *env) get(o *unstructured.Unstructured) (*unstructured.Unstructured, error) {
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(o.GroupVersionKind())
	if err := e.c.Get(e.t.Context(), client.ObjectKeyFromObject(o), u); err != nil {
		return nil, fmt.Errorf("get %s: %w", objectKey(o), err)
	}
	return u, nil
}

// isTenantWaiver reports whether an annotation is a waiver the tenant wrote
// into the sample itself.
func isTenantWaiver(sample *unstructured.Unstructured, key string) bool {
	_, ok := sample.GetAnnotations()[key]
	return ok && strings.HasPrefix(key, v1alpha1.AnnotationWaivePrefix)
}

// operatorReports counts the policy reports the operator wrote, of both
// kinds, in every namespace.
func (e *env) operatorReports() (int, error) {
	n := 0
	for _, gvk := range []schema.GroupVersionKind{report.OpenReports, report.WGPolicy} {
		list := &unstructured.UnstructuredList{}
		list.SetGroupVersionKind(gvk.GroupVersion().WithKind(gvk.Kind + "List"))
		if err := e.c.List(e.t.Context(), list, client.MatchingLabels{report.LabelManagedBy: report.Source}); err != nil {
			return 0, err
		}
		n += len(list.Items)
	}
	return n, nil
}

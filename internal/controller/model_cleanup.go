package controller

import (
	"context"
	"fmt"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/responsibility-operator/responsibility-operator/api/v1alpha1"
	"github.com/responsibility-operator/responsibility-operator/internal/watch"
)

// forget drops a model that is gone (its finalizer was removed elsewhere).
func (r *ModelReconciler) forget(ctx context.Context, name string) error {
	r.mu.Lock()
	delete(r.compiled, name)
	delete(r.statusWritten, name)
	r.mu.Unlock()
	r.Metrics.ModelReady.DeleteLabelValues(name)
	if prev := r.Registry.Delete(name); prev != nil {
		r.fanOut(ctx, prev)
	}
	return r.collectWatches(ctx)
}

// finalize removes a deleting model from the registry, re-evaluates its
// objects (which drops its annotations) and removes the finalizer once no
// cached object still names the model.
func (r *ModelReconciler) finalize(ctx context.Context, rm *v1alpha1.ResponsibilityModel) (reconcile.Result, error) {
	if !controllerutil.ContainsFinalizer(rm, v1alpha1.Finalizer) {
		return reconcile.Result{}, nil
	}
	if prev := r.Registry.Delete(rm.Name); prev != nil {
		r.fanOut(ctx, prev)
	}
	pending, err := r.pendingCleanup(ctx, rm)
	if err != nil {
		return reconcile.Result{}, err
	}
	if pending > 0 {
		log.FromContext(ctx).V(1).Info("waiting for annotations to be removed", "model", rm.Name, "objects", pending)
		return reconcile.Result{RequeueAfter: cleanupRetry}, nil
	}
	if r.Reports != nil {
		// The policy reports are built from the annotations: once those are
		// gone, the reports that still list the model are rewritten at once,
		// and the finalizer waits for them.
		r.mu.Lock()
		if r.cleanedAt == nil {
			r.cleanedAt = map[string]time.Time{}
		}
		since, ok := r.cleanedAt[rm.Name]
		if !ok {
			since = time.Now()
			r.cleanedAt[rm.Name] = since
		}
		r.mu.Unlock()
		cleared, err := r.Reports.Cleared(ctx, rm.Name, since)
		if err != nil {
			return reconcile.Result{}, err
		}
		if !cleared {
			log.FromContext(ctx).V(1).Info("waiting for policy reports to drop the model", "model", rm.Name)
			return reconcile.Result{RequeueAfter: cleanupRetry}, nil
		}
	}
	if r.Admission != nil {
		// The garbage collector would remove them after the model (they are
		// owned by it); until then they would answer for a deleted model.
		if err := r.Admission.Delete(ctx, rm.Name); err != nil {
			return reconcile.Result{}, err
		}
	}
	patch := client.MergeFrom(rm.DeepCopy())
	controllerutil.RemoveFinalizer(rm, v1alpha1.Finalizer)
	if err := r.Client.Patch(ctx, rm, patch); err != nil && !apierrors.IsNotFound(err) {
		return reconcile.Result{}, fmt.Errorf("remove finalizer of %s: %w", rm.Name, err)
	}
	r.mu.Lock()
	delete(r.compiled, rm.Name)
	delete(r.cleanedAt, rm.Name)
	r.mu.Unlock()
	return reconcile.Result{}, r.collectWatches(ctx)
}

// pendingCleanup counts cached objects of the model's target kinds that still
// name it. A kind that is not watched (after a restart) is watched first, and
// its objects are re-evaluated once its cache has synced.
func (r *ModelReconciler) pendingCleanup(ctx context.Context, rm *v1alpha1.ResponsibilityModel) (int, error) {
	pending := 0
	for _, need := range kindsOf(&rm.Spec) {
		gvk := need.gvk
		if !r.isTargetOf(rm, gvk) {
			continue
		}
		if served, err := r.Resolver.Served(gvk); err != nil {
			return 0, err
		} else if !served {
			continue // not served: no object can carry the annotations
		}
		if !r.Watcher.Watched(gvk) {
			// Only the models annotation is read.
			if err := r.Watcher.Ensure(ctx, gvk, nil); err != nil {
				return 0, err
			}
		}
		if !r.Watcher.Synced(gvk) {
			pending++
			continue
		}
		n, err := r.countNaming(ctx, gvk, rm.Name)
		if err != nil {
			return 0, err
		}
		if n > 0 {
			if err := r.Watcher.EnqueueKind(gvk, ""); err != nil {
				return 0, err
			}
		}
		pending += n
	}
	return pending, nil
}

func (r *ModelReconciler) isTargetOf(rm *v1alpha1.ResponsibilityModel, gvk schema.GroupVersionKind) bool {
	for _, t := range rm.Spec.Targets {
		if t.APIVersion == gvk.GroupVersion().String() && t.Kind == gvk.Kind {
			return true
		}
	}
	return false
}

// countNaming counts cached objects of a kind whose models annotation names a model.
func (r *ModelReconciler) countNaming(ctx context.Context, gvk schema.GroupVersionKind, model string) (int, error) {
	list := &unstructured.UnstructuredList{}
	list.SetGroupVersionKind(gvk.GroupVersion().WithKind(gvk.Kind + "List"))
	if err := r.Cache.List(ctx, list); err != nil {
		return 0, fmt.Errorf("list cached %s: %w", gvk, err)
	}
	n := 0
	for i := range list.Items {
		obj := &list.Items[i]
		if r.ExcludedNamespaces.Has(obj.GetNamespace()) {
			continue // never written, so never the operator's to clean
		}
		key := watch.Key{GVK: gvk, Namespace: obj.GetNamespace(), Name: obj.GetName()}
		if r.Written.Disowns(key, model) {
			continue // evaluated since: what names the model is a tenant's forgery
		}
		for _, name := range modelsOf(obj) {
			if name == model || model == "" {
				n++
				break
			}
		}
	}
	return n, nil
}

// collectWatches stops watching kinds that no installed model needs, once no
// cached object of the kind carries the operator's annotations any more.
func (r *ModelReconciler) collectWatches(ctx context.Context) error {
	needed := r.Registry.Kinds()
	for _, gvk := range r.Watcher.WatchedKinds() {
		if needed[gvk] || !r.Watcher.Synced(gvk) {
			continue
		}
		n, err := r.countNaming(ctx, gvk, "")
		if err != nil {
			return err
		}
		if n > 0 {
			continue
		}
		if err := r.Watcher.Stop(ctx, gvk); err != nil {
			return err
		}
	}
	return nil
}

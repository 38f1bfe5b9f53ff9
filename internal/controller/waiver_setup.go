package controller

import (
	"context"
	"fmt"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/client-go/util/workqueue"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/responsibility-operator/responsibility-operator/api/v1alpha1"
	"github.com/responsibility-operator/responsibility-operator/internal/evaluate"
	"github.com/responsibility-operator/responsibility-operator/internal/ledger"
	"github.com/responsibility-operator/responsibility-operator/internal/registry"
	"github.com/responsibility-operator/responsibility-operator/internal/watch"
)

// setupWaivers registers the DutyWaiver controller and returns the source
// the workload reconciler lists waivers from. Without the DutyWaiver CRD
// (an operator upgraded before its CRDs), it logs the fix and returns a
// disabled source: models and annotation waivers work as before.
func setupWaivers(mgr manager.Manager, compiled *registry.Registry, waived *ledger.Waived, events *EventEmitter, queue *queueRef[reconcile.Request]) (*WaiverSource, error) {
	src := &WaiverSource{Reader: mgr.GetCache()}
	gk := v1alpha1.GroupVersion.WithKind("DutyWaiver").GroupKind()
	if _, err := mgr.GetRESTMapper().RESTMapping(gk, v1alpha1.GroupVersion.Version); err != nil {
		if !meta.IsNoMatchError(err) {
			return nil, fmt.Errorf("find the DutyWaiver kind: %w", err)
		}
		log.Log.WithName("setup").Error(err, "the DutyWaiver CRD is not installed: DutyWaivers are not read; install config/crd (or the chart's crds/) and restart the operator")
		src.Disabled = true
		return src, nil
	}
	if err := mgr.GetFieldIndexer().IndexField(context.Background(), &v1alpha1.DutyWaiver{}, waiverModelIndex, func(o client.Object) []string {
		if dw, ok := o.(*v1alpha1.DutyWaiver); ok {
			return []string{dw.Spec.Model}
		}
		return nil
	}); err != nil {
		return nil, fmt.Errorf("index DutyWaivers by model: %w", err)
	}
	r := &WaiverReconciler{Client: mgr.GetClient(), Registry: compiled, Waived: waived, Events: events}
	err := ctrl.NewControllerManagedBy(mgr).
		Named("dutywaiver").
		For(&v1alpha1.DutyWaiver{}).
		WatchesRawSource(queue.source()).
		Complete(r)
	if err != nil {
		return nil, fmt.Errorf("set up DutyWaiver controller: %w", err)
	}
	return src, nil
}

// waiversOfModel returns the requests of the DutyWaivers naming a model.
func waiversOfModel(ctx context.Context, c client.Reader, src *WaiverSource, model string) []reconcile.Request {
	if src.Disabled {
		return nil
	}
	list := &v1alpha1.DutyWaiverList{}
	if err := c.List(ctx, list, client.MatchingFields{waiverModelIndex: model}); err != nil {
		log.FromContext(ctx).Error(err, "list the DutyWaivers of a model", "model", model)
		return nil
	}
	out := make([]reconcile.Request, 0, len(list.Items))
	for i := range list.Items {
		out = append(out, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&list.Items[i])})
	}
	return out
}

// waiverTargetsHandler re-evaluates the objects a DutyWaiver may cover when
// it is created, its spec changes, or it is deleted: every object of its
// model's (old and new model's) target kinds in its namespace. The waivers
// of the cache's initial list are no change: every object is evaluated after
// a start anyway, and lists them first.
func waiverTargetsHandler(w *watch.Watcher, compiled *registry.Registry, src *WaiverSource) handler.TypedEventHandler[*v1alpha1.DutyWaiver, watch.Key] {
	// A model that is not applied has none of its duties on any object.
	enqueue := func(ctx context.Context, namespace string, models ...string) {
		compiledModels := make([]*evaluate.Model, 0, len(models))
		for _, name := range models {
			compiledModels = append(compiledModels, compiled.Get(name))
		}
		enqueueTargets(ctx, w, namespace, compiledModels...)
	}
	return handler.TypedFuncs[*v1alpha1.DutyWaiver, watch.Key]{
		CreateFunc: func(ctx context.Context, e event.TypedCreateEvent[*v1alpha1.DutyWaiver], _ workqueue.TypedRateLimitingInterface[watch.Key]) {
			if !e.IsInInitialList {
				enqueue(ctx, e.Object.Namespace, e.Object.Spec.Model)
			}
		},
		UpdateFunc: func(ctx context.Context, e event.TypedUpdateEvent[*v1alpha1.DutyWaiver], _ workqueue.TypedRateLimitingInterface[watch.Key]) {
			if e.ObjectOld.Generation != e.ObjectNew.Generation {
				enqueue(ctx, e.ObjectNew.Namespace, e.ObjectOld.Spec.Model, e.ObjectNew.Spec.Model)
			}
		},
		DeleteFunc: func(ctx context.Context, e event.TypedDeleteEvent[*v1alpha1.DutyWaiver], _ workqueue.TypedRateLimitingInterface[watch.Key]) {
			src.Forget(e.Object.UID)
			enqueue(ctx, e.Object.Namespace, e.Object.Spec.Model)
		},
	}
}

package controller

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/sets"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/responsibility-operator/responsibility-operator/api/v1alpha1"
	"github.com/responsibility-operator/responsibility-operator/internal/evaluate"
	"github.com/responsibility-operator/responsibility-operator/internal/ledger"
	"github.com/responsibility-operator/responsibility-operator/internal/metrics"
	"github.com/responsibility-operator/responsibility-operator/internal/registry"
	"github.com/responsibility-operator/responsibility-operator/internal/watch"
)

const (
	// unresolvedRetry re-checks a model whose kinds are missing or forbidden;
	// CRD events usually trigger the re-check much sooner.
	unresolvedRetry = 30 * time.Second
	// cleanupRetry re-checks a deleting model whose annotations are still
	// being removed.
	cleanupRetry = 2 * time.Second
	// crdSettleRetry re-checks an unresolved model soon after a CRD changed:
	// a new CRD is served by discovery a moment after its create (and even
	// its Established) event, and no further event says when.
	crdSettleRetry = time.Second
	// crdSettleWindow is how long after a CRD change crdSettleRetry applies.
	crdSettleWindow = 30 * time.Second
)

// +kubebuilder:rbac:groups=responsibility.io,resources=responsibilitymodels,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups=responsibility.io,resources=responsibilitymodels/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=responsibility.io,resources=responsibilitymodels/finalizers,verbs=update
// +kubebuilder:rbac:groups="",resources=namespaces,verbs=get;list;watch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=get;create;patch
// +kubebuilder:rbac:groups=apiextensions.k8s.io,resources=customresourcedefinitions,verbs=get;list;watch
// +kubebuilder:rbac:groups=authorization.k8s.io,resources=selfsubjectaccessreviews,verbs=create

// ModelReconciler compiles models, resolves the kinds they need, installs
// them in the registry (which the workload reconciler applies), starts and
// stops watches, and reports status. On deletion it holds the model's
// finalizer until no object carries the model's annotations.
type ModelReconciler struct {
	Client   client.Client
	Cache    client.Reader
	Resolver *Resolver
	Registry *registry.Registry
	Tally    *ledger.Tally
	Watcher  *watch.Watcher
	Events   *EventEmitter
	Metrics  *metrics.Metrics
	// Written tells which remaining claims on an object are the operator's.
	Written *ledger.Written
	// ExcludedNamespaces are never written, so never waited for.
	ExcludedNamespaces sets.Set[string]
	// Reports, when set, are waited for by a deleting model's finalizer
	// until no policy report lists the model.
	Reports ReportsCleared
	// Admission keeps the models' ValidatingAdmissionPolicies.
	Admission *AdmissionPolicies
	// Changed, when set, is told the name of every model whose compiled
	// version is installed or removed (for the DutyWaivers naming it).
	Changed func(ctx context.Context, model string)

	mu       sync.Mutex
	compiled map[string]compiledModel
	// seen is the generation of each model last reconciled; settled
	// latches once every model that existed at start was seen.
	seen        map[string]int64
	atStart     map[string]int64
	settleAsked time.Time
	settled     atomic.Bool
	// crdEpoch counts CRD changes; a resolution older than the epoch is redone.
	crdEpoch uint64
	// crdChanged is when a CRD of each API group last changed.
	crdChanged map[string]time.Time
	// cleanedAt is when a deleting model's annotations were found removed.
	cleanedAt map[string]time.Time
	// statusWritten is when each model's status was last written.
	statusWritten map[string]time.Time
}

// ReportsCleared says whether the policy reports still list a model
// (ReportReconciler).
type ReportsCleared interface {
	Cleared(ctx context.Context, model string, since time.Time) (bool, error)
}

type compiledModel struct {
	generation int64
	model      *evaluate.Model
	err        error
	res        resolution
	epoch      uint64
}

// CRDChanged invalidates every cached resolution: a kind of group may have
// appeared or gone. For crdSettleWindow, the models that need a kind of
// the group are resolved again every crdSettleRetry: discovery serves a new
// CRD a moment after its create (and even its Established) event, and stops
// serving a deleted one a moment after its delete event, and no further
// event says when.
func (r *ModelReconciler) CRDChanged(group string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.crdEpoch++
	if r.crdChanged == nil {
		r.crdChanged = map[string]time.Time{}
	}
	now := time.Now()
	r.crdChanged[group] = now
	for g, at := range r.crdChanged {
		if now.Sub(at) > crdSettleWindow {
			delete(r.crdChanged, g)
		}
	}
}

// settling reports whether a CRD of a group the model needs changed less
// than crdSettleWindow ago.
func (r *ModelReconciler) settling(spec *v1alpha1.ResponsibilityModelSpec) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, need := range kindsOf(spec) {
		if at, ok := r.crdChanged[need.gvk.Group]; ok && time.Since(at) < crdSettleWindow {
			return true
		}
	}
	return false
}

// Reconcile brings one model's registry entry, watches and status up to date.
func (r *ModelReconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	rm := &v1alpha1.ResponsibilityModel{}
	if err := r.Client.Get(ctx, req.NamespacedName, rm); err != nil {
		if apierrors.IsNotFound(err) {
			return reconcile.Result{}, r.forget(ctx, req.Name)
		}
		return reconcile.Result{}, fmt.Errorf("get model %s: %w", req.Name, err)
	}
	if !rm.DeletionTimestamp.IsZero() {
		r.markSeen(rm)
		return r.finalize(ctx, rm)
	}
	if !controllerutil.ContainsFinalizer(rm, v1alpha1.Finalizer) {
		patch := client.MergeFrom(rm.DeepCopy())
		controllerutil.AddFinalizer(rm, v1alpha1.Finalizer)
		if err := r.Client.Patch(ctx, rm, patch); err != nil {
			return reconcile.Result{}, fmt.Errorf("add finalizer to %s: %w", rm.Name, err)
		}
	}

	cm, err := r.compile(ctx, rm)
	if err != nil {
		return reconcile.Result{}, err
	}
	// Watches first: an object evaluated with the new model reads its
	// related kinds from a cache that exists (and is waited for while it
	// lists), never from a missing one that reads as empty.
	// The cache must keep what the new model reads before the model is
	// registered: Ensure lists a kind again if it keeps too little.
	for _, gvk := range cm.res.resolved {
		var fields *evaluate.Fields
		if cm.model != nil {
			fields = cm.model.Fields(gvk)
		}
		if err := r.Watcher.Ensure(ctx, gvk, fields); err != nil {
			return reconcile.Result{}, err
		}
	}
	if cm.model != nil {
		if prev := r.Registry.Get(rm.Name); prev == nil || prev.Generation != cm.model.Generation {
			r.Registry.Set(cm.model)
			r.fanOut(ctx, prev, cm.model)
		}
	}
	r.markSeen(rm)
	if err := r.collectWatches(ctx); err != nil {
		return reconcile.Result{}, err
	}
	adm := r.syncAdmission(ctx, rm, cm)
	statusWait, err := r.updateStatus(ctx, rm, cm, adm)
	if err != nil {
		return reconcile.Result{}, err
	}
	res := reconcile.Result{RequeueAfter: statusWait}
	retry := time.Duration(0)
	switch {
	case r.settling(&rm.Spec):
		retry = crdSettleRetry
	case !cm.res.ok(), adm.requested && !adm.ok:
		retry = unresolvedRetry
	}
	if retry > 0 && (res.RequeueAfter == 0 || retry < res.RequeueAfter) {
		res.RequeueAfter = retry
	}
	return res, nil
}

// syncAdmission keeps the model's admission policies equal to it, with the
// resources of its served target kinds.
func (r *ModelReconciler) syncAdmission(ctx context.Context, rm *v1alpha1.ResponsibilityModel, cm compiledModel) admissionState {
	if r.Admission == nil {
		return admissionState{}
	}
	resources := map[schema.GroupVersionKind]schema.GroupVersionResource{}
	if cm.model == nil || len(cm.model.Admission()) == 0 {
		// No policy to build (Sync still removes those of an earlier
		// generation): no need to ask discovery for the resources.
		return r.Admission.Sync(ctx, rm, cm.model, resources)
	}
	for _, gvk := range cm.res.resolved {
		if gvr, ok, err := r.Resolver.resource(gvk); err == nil && ok {
			resources[gvk] = gvr
		}
	}
	return r.Admission.Sync(ctx, rm, cm.model, resources)
}

// modelsSettleLimit bounds how long workloads wait for the models that
// existed at start: a model that keeps failing must not stop the others.
const modelsSettleLimit = time.Minute

func (r *ModelReconciler) markSeen(rm *v1alpha1.ResponsibilityModel) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.seen == nil {
		r.seen = map[string]int64{}
	}
	r.seen[rm.Name] = rm.Generation
}

// Settled reports whether every model that was in the cache when it was
// first asked has been through a reconcile at that generation (registered,
// found broken or being deleted), or a minute has passed since. Once true it
// stays true: later model changes re-evaluate their objects themselves.
func (r *ModelReconciler) Settled(ctx context.Context) bool {
	if r.settled.Load() {
		return true
	}
	r.mu.Lock()
	if r.settleAsked.IsZero() {
		r.settleAsked = time.Now()
	}
	expired := time.Since(r.settleAsked) > modelsSettleLimit
	r.mu.Unlock()
	if expired {
		log.FromContext(ctx).Info("evaluating workloads although not every model is registered", "after", modelsSettleLimit)
		r.settled.Store(true)
		return true
	}
	if inf, ok := r.Cache.(cache.Informers); ok {
		informer, err := inf.GetInformer(ctx, &v1alpha1.ResponsibilityModel{}, cache.BlockUntilSynced(false))
		if err != nil || !informer.HasSynced() {
			return false
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.atStart == nil {
		// Only the models that exist now are waited for: models created
		// later re-evaluate their own objects when they are registered.
		list := &v1alpha1.ResponsibilityModelList{}
		if err := r.Cache.List(ctx, list); err != nil {
			return false
		}
		r.atStart = make(map[string]int64, len(list.Items))
		for i := range list.Items {
			r.atStart[list.Items[i].Name] = list.Items[i].Generation
		}
	}
	for name, generation := range r.atStart {
		if gen, ok := r.seen[name]; !ok || gen < generation {
			return false
		}
	}
	r.settled.Store(true)
	return true
}

// compile compiles and resolves a model, once per generation and CRD epoch.
// An invalid new generation leaves the last valid one in the registry, so a
// typo never strips the annotations from every workload.
func (r *ModelReconciler) compile(ctx context.Context, rm *v1alpha1.ResponsibilityModel) (compiledModel, error) {
	r.mu.Lock()
	if r.compiled == nil {
		r.compiled = map[string]compiledModel{}
	}
	cm, ok := r.compiled[rm.Name]
	epoch := r.crdEpoch
	r.mu.Unlock()

	if !ok || cm.generation != rm.Generation {
		cm = compiledModel{generation: rm.Generation}
		cm.model, cm.err = evaluate.Compile(rm)
		if cm.err != nil {
			r.Events.ModelProblem(rm, v1alpha1.EventRuleInvalid, actionCompile,
				fmt.Sprintf("The model does not compile: %v. The previous valid generation stays applied; fix the spec.", cm.err))
			log.FromContext(ctx).Info("model does not compile", "model", rm.Name, "generation", rm.Generation, "error", cm.err.Error())
		}
		cm.epoch = epoch - 1 // force resolution below
	}
	if cm.epoch != epoch || !cm.res.ok() || r.settling(&rm.Spec) {
		res, err := r.Resolver.Resolve(ctx, kindsOf(&rm.Spec))
		if err != nil {
			return cm, err
		}
		if !res.ok() && (res.reason != cm.res.reason || res.message != cm.res.message) {
			reason := v1alpha1.EventTargetNotInstalled
			if res.reason == v1alpha1.ReasonForbidden {
				reason = v1alpha1.EventForbidden
			}
			r.Events.ModelProblem(rm, reason, actionResolve, res.message)
		}
		cm.res, cm.epoch = res, epoch
	}
	r.mu.Lock()
	r.compiled[rm.Name] = cm
	r.mu.Unlock()
	return cm, nil
}

// fanOut re-evaluates every object of the kinds the old and new versions of
// a model target.
func (r *ModelReconciler) fanOut(ctx context.Context, models ...*evaluate.Model) {
	for _, m := range models {
		if m != nil && r.Changed != nil {
			r.Changed(ctx, m.Name)
		}
	}
	enqueueTargets(ctx, r.Watcher, "", models...)
}

// enqueueTargets re-evaluates every object of the kinds the models (nil
// ones skipped) target, in namespace ("" for all), each kind once.
func enqueueTargets(ctx context.Context, w *watch.Watcher, namespace string, models ...*evaluate.Model) {
	seen := map[schema.GroupVersionKind]bool{}
	for _, m := range models {
		if m == nil {
			continue
		}
		for _, gvk := range m.TargetKinds() {
			if seen[gvk] {
				continue
			}
			seen[gvk] = true
			if err := w.EnqueueKind(gvk, namespace); err != nil {
				log.FromContext(ctx).Error(err, "re-evaluate kind", "gvk", gvk.String(), "namespace", namespace)
			}
		}
	}
}

// modelRequest is the reconcile request of a model.
func modelRequest(name string) reconcile.Request {
	return reconcile.Request{NamespacedName: types.NamespacedName{Name: name}}
}

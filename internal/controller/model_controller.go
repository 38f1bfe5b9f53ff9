package controller

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
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
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch
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
	Registry *Registry
	Tally    *Tally
	Watcher  *Watcher
	Events   *EventEmitter
	Metrics  *Metrics
	// Written tells which remaining claims on an object are the operator's.
	Written *Written
	// ExcludedNamespaces are never written, so never waited for.
	ExcludedNamespaces sets.Set[string]

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
	// crdChanged is when a CRD last changed.
	crdChanged time.Time
	// statusWritten is when each model's status was last written.
	statusWritten map[string]time.Time
}

type compiledModel struct {
	generation int64
	model      *evaluate.Model
	err        error
	res        resolution
	epoch      uint64
}

// CRDChanged invalidates every cached resolution: a kind may have appeared
// or gone.
func (r *ModelReconciler) CRDChanged() {
	r.mu.Lock()
	r.crdEpoch++
	r.crdChanged = time.Now()
	r.mu.Unlock()
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
	statusWait, err := r.updateStatus(ctx, rm, cm)
	if err != nil {
		return reconcile.Result{}, err
	}
	res := reconcile.Result{RequeueAfter: statusWait}
	if !cm.res.ok() {
		if retry := r.unresolvedRetry(); res.RequeueAfter == 0 || retry < res.RequeueAfter {
			res.RequeueAfter = retry
		}
	}
	return res, nil
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

// unresolvedRetry is when to re-resolve a model whose kinds are missing:
// soon while a CRD change is settling, rarely otherwise.
func (r *ModelReconciler) unresolvedRetry() time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	if time.Since(r.crdChanged) < crdSettleWindow {
		return crdSettleRetry
	}
	return unresolvedRetry
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
	if cm.epoch != epoch || !cm.res.ok() {
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
			if err := r.Watcher.EnqueueKind(gvk, ""); err != nil {
				log.FromContext(ctx).Error(err, "re-evaluate kind", "gvk", gvk.String())
			}
		}
	}
}

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
	patch := client.MergeFrom(rm.DeepCopy())
	controllerutil.RemoveFinalizer(rm, v1alpha1.Finalizer)
	if err := r.Client.Patch(ctx, rm, patch); err != nil && !apierrors.IsNotFound(err) {
		return reconcile.Result{}, fmt.Errorf("remove finalizer of %s: %w", rm.Name, err)
	}
	r.mu.Lock()
	delete(r.compiled, rm.Name)
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
		if _, err := r.Resolver.Mapper.RESTMapping(gvk.GroupKind(), gvk.Version); err != nil {
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
		key := WorkloadKey{GVK: gvk, Namespace: obj.GetNamespace(), Name: obj.GetName()}
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

// statusCountsInterval is the least time between two status writes of a
// model that change nothing but its counts. While thousands of objects
// converge the counts move every second, and each write of a catalog model
// (tens of KiB, decoded, patched, validated and stored) costs the API server
// what a few dozen workload applies do; a condition or generation change is
// written at once.
const statusCountsInterval = 5 * time.Second

// updateStatus writes conditions and counts, only when they changed. A change
// of the counts alone waits until statusCountsInterval has passed since the
// model's last status write: it returns how long, and writes nothing.
func (r *ModelReconciler) updateStatus(ctx context.Context, rm *v1alpha1.ResponsibilityModel, cm compiledModel) (time.Duration, error) {
	before := rm.Status.DeepCopy()
	st := &rm.Status
	st.ObservedGeneration = rm.Generation
	st.TargetKinds = strings.Join(rm.Spec.TargetKinds(), ",")
	st.MatchedObjects, st.UnmetObjects, st.Duties = r.Tally.Counts(rm.Name)

	setCondition(st, rm.Generation, v1alpha1.ConditionRulesValid, cm.err == nil, v1alpha1.ReasonRulesCompiled, "Every rule compiles.",
		v1alpha1.ReasonRuleInvalid, truncate(errString(cm.err), maxConditionMessage))
	setCondition(st, rm.Generation, v1alpha1.ConditionTargetsResolved, cm.res.ok(), v1alpha1.ReasonResolved,
		"Every target and related kind is served and permitted.", cm.res.reason, cm.res.message)

	switch {
	case cm.err != nil:
		setCondition(st, rm.Generation, v1alpha1.ConditionReady, false, "", "", v1alpha1.ReasonRuleInvalid,
			servingMessage(r.Registry.Get(rm.Name), "A rule does not compile; see the RulesValid condition."))
	case !cm.res.ok():
		setCondition(st, rm.Generation, v1alpha1.ConditionReady, false, "", "", cm.res.reason,
			"Applied to the resolved kinds only; see the TargetsResolved condition.")
	default:
		setCondition(st, rm.Generation, v1alpha1.ConditionReady, true, v1alpha1.ReasonApplied,
			fmt.Sprintf("Applied to %d object(s), %d with unmet duties.", st.MatchedObjects, st.UnmetObjects), "", "")
	}
	ready := 0.0
	if meta.IsStatusConditionTrue(st.Conditions, v1alpha1.ConditionReady) {
		ready = 1
	}
	r.Metrics.ModelReady.WithLabelValues(rm.Name).Set(ready)
	if equality.Semantic.DeepEqual(before, st) {
		return 0, nil
	}
	now := time.Now()
	r.mu.Lock()
	last := r.statusWritten[rm.Name]
	r.mu.Unlock()
	if wait := statusCountsInterval - now.Sub(last); wait > 0 && countsOnly(before, st) {
		return wait, nil
	}
	patch := client.MergeFrom(&v1alpha1.ResponsibilityModel{ObjectMeta: metav1.ObjectMeta{Name: rm.Name}, Status: *before})
	if err := r.Client.Status().Patch(ctx, rm, patch); err != nil {
		if apierrors.IsNotFound(err) {
			return 0, nil
		}
		return 0, fmt.Errorf("update status of %s: %w", rm.Name, err)
	}
	r.mu.Lock()
	if r.statusWritten == nil {
		r.statusWritten = map[string]time.Time{}
	}
	r.statusWritten[rm.Name] = now
	r.mu.Unlock()
	return 0, nil
}

// countsOnly reports whether two statuses differ in nothing but the counts
// and the Ready condition's message, which states them.
func countsOnly(before, after *v1alpha1.ResponsibilityModelStatus) bool {
	a := after.DeepCopy()
	a.MatchedObjects, a.UnmetObjects, a.Duties = before.MatchedObjects, before.UnmetObjects, before.Duties
	if ready := meta.FindStatusCondition(a.Conditions, v1alpha1.ConditionReady); ready != nil {
		if was := meta.FindStatusCondition(before.Conditions, v1alpha1.ConditionReady); was != nil {
			ready.Message = was.Message
		}
	}
	return equality.Semantic.DeepEqual(before, a)
}

func servingMessage(active *evaluate.Model, msg string) string {
	if active == nil {
		return msg + " No generation of the model is applied."
	}
	return fmt.Sprintf("%s Generation %d stays applied.", msg, active.Generation)
}

func setCondition(st *v1alpha1.ResponsibilityModelStatus, generation int64, condType string, ok bool, okReason, okMessage, failReason, failMessage string) {
	c := metav1.Condition{Type: condType, ObservedGeneration: generation, Status: metav1.ConditionTrue, Reason: okReason, Message: okMessage}
	if !ok {
		c.Status, c.Reason, c.Message = metav1.ConditionFalse, failReason, failMessage
	}
	meta.SetStatusCondition(&st.Conditions, c)
}

// maxConditionMessage keeps condition messages readable and far below the
// API's limit of 32768 characters.
const maxConditionMessage = 4096

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + " …(truncated)"
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// modelRequest is the reconcile request of a model.
func modelRequest(name string) reconcile.Request {
	return reconcile.Request{NamespacedName: types.NamespacedName{Name: name}}
}

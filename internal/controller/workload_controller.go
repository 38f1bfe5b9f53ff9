package controller

import (
	"context"
	"fmt"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/sets"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/responsibility-operator/responsibility-operator/api/v1alpha1"
	"github.com/responsibility-operator/responsibility-operator/internal/evaluate"
)

var namespaceGVK = schema.GroupVersionKind{Version: "v1", Kind: "Namespace"}

// WorkloadReconciler keeps the operator's annotations and label on one target
// object equal to what the matching models say, and records duty transitions
// as events. It reads only from the cache and writes only when the desired
// metadata differs from what the object carries.
type WorkloadReconciler struct {
	// Reader is the manager's cache, for namespaces.
	Reader client.Reader
	// Writer sends server-side apply patches.
	Writer   MetadataApplier
	Registry *Registry
	// Watcher holds the target and related objects, and tells whether a
	// kind's cache is complete and keeps what the models read.
	Watcher *Watcher
	// Written records what each object carries after a write or a check.
	Written *Written
	// ModelsSettled, when set, says whether every model that existed at
	// start is registered; until then nothing is evaluated.
	ModelsSettled func(context.Context) bool
	Tally         *Tally
	Events        *EventEmitter
	Metrics       *Metrics
	// ExcludedNamespaces are never written.
	ExcludedNamespaces sets.Set[string]
	// NamespaceChanged, when set, is told the namespace of every object
	// evaluated or forgotten (for the namespace's policy reports).
	NamespaceChanged func(namespace string)
}

// Reconcile brings one object's operator-owned metadata up to date.
func (r *WorkloadReconciler) Reconcile(ctx context.Context, key WorkloadKey) (reconcile.Result, error) {
	if r.ExcludedNamespaces.Has(key.Namespace) {
		return reconcile.Result{}, nil
	}
	if r.ModelsSettled != nil && !r.waitModelsSettled(ctx) {
		// On start, an object evaluated before every existing model is
		// registered would lose the other models' keys and repeat their
		// events a moment later.
		return reconcile.Result{RequeueAfter: relatedSyncRetry}, nil
	}
	epoch := r.Watcher.Epoch()
	// Objects are read from the cache without a copy: nothing below
	// modifies them (the write is a new apply configuration).
	obj, err := r.Watcher.Get(ctx, key)
	if err != nil {
		if apierrors.IsNotFound(err) {
			r.forget(key)
			return reconcile.Result{}, nil
		}
		return reconcile.Result{}, fmt.Errorf("get %s: %w", key, err)
	}
	if r.Written.Behind(key, obj.GetResourceVersion()) {
		// The watch has not brought back the operator's last write yet.
		return reconcile.Result{RequeueAfter: cacheCatchUpRetry}, nil
	}
	if obj.GetDeletionTimestamp() != nil {
		// Going away: its annotations go with it, and a write would only race
		// the deletion.
		r.forget(key)
		return reconcile.Result{}, nil
	}

	var nsObj map[string]any
	if key.Namespace != "" {
		ns := newObject(namespaceGVK)
		if err := r.Reader.Get(ctx, types.NamespacedName{Name: key.Namespace}, ns, client.UnsafeDisableDeepCopy); err != nil && !apierrors.IsNotFound(err) {
			return reconcile.Result{}, fmt.Errorf("get namespace of %s: %w", key, err)
		}
		nsObj = ns.Object
	}

	// Each getter copies the whole map out of the object: once each.
	annotations, labels := obj.GetAnnotations(), obj.GetLabels()
	matched := evaluate.Match(r.Registry.ModelsFor(key.GVK), key.GVK, labels, nsObj, key.Namespace != "")
	related, complete, err := r.relatedObjects(matched, key.Namespace)
	if err != nil {
		return reconcile.Result{}, err
	}
	if !complete {
		// A related kind's initial list is still arriving: evaluating now
		// could report a duty unmet for an object that is on its way.
		return reconcile.Result{RequeueAfter: relatedSyncRetry}, nil
	}
	if !r.Watcher.Covers(ctx, epoch, key.GVK, matched) {
		// A kind was listed again, with more fields, while this read it:
		// what was read may lack a field a rule reads.
		return reconcile.Result{RequeueAfter: relatedSyncRetry}, nil
	}
	start := time.Now()
	res := evaluate.Evaluate(matched, evaluate.Input{GVK: key.GVK, Object: obj.Object, Namespace: nsObj, Related: related})
	r.Metrics.EvaluationDuration.Observe(time.Since(start).Seconds())

	digest := evaluate.OwnedDigest(res.Annotations, res.Labels)
	// An object no model matches, whose remaining responsibility.io keys the
	// operator already found there after its last write, carries a tenant's
	// keys only: applying nothing again would change nothing.
	foreignOnly := len(res.Models) == 0 && r.Written.Is(key, digest)
	writtenOver := ""
	unchanged := evaluate.OwnedMetadataEqual(annotations, labels, res)
	if !foreignOnly && !unchanged {
		r.Written.Expect(key, digest)
		resourceVersion, err := r.apply(ctx, obj, res)
		if err != nil {
			if apierrors.IsNotFound(err) {
				r.Metrics.Applies.WithLabelValues(key.GVK.Kind, applyConflict).Inc()
				// Deleted since the cache saw it: the watch brings the deletion.
				return reconcile.Result{}, nil
			}
			if apierrors.IsConflict(err) {
				// Replaced since the cache saw it (the UID precondition), or
				// a conflict from the server: evaluate again, with backoff,
				// from what the cache holds by then.
				r.Metrics.Applies.WithLabelValues(key.GVK.Kind, applyConflict).Inc()
				return reconcile.Result{}, fmt.Errorf("apply metadata to %s: %w", key, err)
			}
			r.Metrics.Applies.WithLabelValues(key.GVK.Kind, applyError).Inc()
			r.Events.ApplyFailed(obj, err)
			return reconcile.Result{}, fmt.Errorf("apply metadata to %s: %w", key, err)
		}
		if resourceVersion != "" && resourceVersion != obj.GetResourceVersion() {
			// The write changed the object (an apply that changes nothing,
			// such as one that cannot remove a key another manager owns,
			// keeps the version): the cache has to catch up.
			writtenOver = obj.GetResourceVersion()
		}
		r.Metrics.Applies.WithLabelValues(key.GVK.Kind, applySuccess).Inc()
		log.FromContext(ctx).V(1).Info("applied", "object", key.String(), "models", res.Annotations[v1alpha1.AnnotationModels], "status", res.Labels[v1alpha1.LabelStatus])
	}
	// Events only after the new states are recorded on the object, so a
	// crash before the write repeats the transition rather than losing it.
	// An object that already carries the result has no transition to report
	// (its duties and ignored waivers are the new ones), and the annotation
	// need not be parsed: the common case of a resync or a restart.
	if !unchanged {
		for _, t := range evaluate.Transitions(evaluate.ParseDuties(annotations[v1alpha1.AnnotationDuties]), res) {
			r.Events.DutyTransition(obj, t)
		}
		for _, w := range evaluate.NewlyIgnoredWaivers(annotations[v1alpha1.AnnotationIgnoredWaivers], res) {
			r.Events.WaiverIgnored(obj, w)
		}
	}
	r.Written.Record(key, digest, res.Annotations[v1alpha1.AnnotationModels], writtenOver)
	r.Tally.Record(key, res)
	r.namespaceChanged(key.Namespace)
	return reconcile.Result{}, nil
}

func (r *WorkloadReconciler) forget(key WorkloadKey) {
	r.Written.Forget(key)
	r.Tally.Forget(key)
	r.namespaceChanged(key.Namespace)
}

func (r *WorkloadReconciler) namespaceChanged(ns string) {
	if r.NamespaceChanged != nil {
		r.NamespaceChanged(ns)
	}
}

// waitModelsSettled holds the worker, for at most settleHold, until every
// model that existed at start is registered. Every object waits for the
// same thing, so holding the worker costs nothing, where requeueing every
// object every relatedSyncRetry until then reconciled them twice over.
func (r *WorkloadReconciler) waitModelsSettled(ctx context.Context) bool {
	deadline := time.Now().Add(settleHold)
	for !r.ModelsSettled(ctx) {
		if time.Now().After(deadline) {
			return false
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(settlePoll):
		}
	}
	return true
}

const (
	settleHold = 5 * time.Second
	settlePoll = 20 * time.Millisecond
	// cacheCatchUpRetry is how soon an object whose cached copy predates the
	// operator's last write of it is looked at again.
	cacheCatchUpRetry = 50 * time.Millisecond
)

// relatedSyncRetry is how soon an object whose related kinds are still
// being listed is evaluated again.
const relatedSyncRetry = 250 * time.Millisecond

// relatedObjects lists, from the cache, the related objects the matching
// models read: in the object's namespace, or in the namespace a related
// declaration names. It reports incomplete while a watched related kind's
// initial list is still arriving.
func (r *WorkloadReconciler) relatedObjects(matched []*evaluate.Model, namespace string) (map[evaluate.RelatedSource][]map[string]any, bool, error) {
	return evaluate.RelatedInput(matched, namespace, func(gvk schema.GroupVersionKind, ns string) ([]map[string]any, bool, error) {
		if r.Watcher.Watched(gvk) && !r.Watcher.Listable(gvk) {
			return nil, false, nil
		}
		// A related kind that is not watched (not served, yet) has no
		// objects: it reads as an empty list and the model's
		// TargetsResolved condition says why.
		objs, err := r.Watcher.snapshots.list(gvk, ns, func() ([]*unstructured.Unstructured, error) {
			return r.Watcher.cachedIn(gvk, ns)
		})
		return objs, true, err
	})
}

// apply writes the desired operator-owned metadata with server-side apply.
// The apply configuration names only the operator's keys, so a tenant's
// annotations are never touched; a key the operator owned and no longer
// wants is dropped by the server because it is missing from the
// configuration. The object's UID is a precondition: a deleted object is
// never recreated.
func (r *WorkloadReconciler) apply(ctx context.Context, obj *unstructured.Unstructured, res evaluate.Result) (string, error) {
	patch, err := applyPatch(obj.GetAPIVersion(), obj.GetKind(), obj.GetNamespace(), obj.GetName(), string(obj.GetUID()), res.Annotations, res.Labels)
	if err != nil {
		return "", err
	}
	start := time.Now()
	resourceVersion, err := r.Writer.ApplyMetadata(ctx, obj.GroupVersionKind(), obj.GetNamespace(), obj.GetName(), patch)
	r.Metrics.ApplyDuration.Observe(time.Since(start).Seconds())
	if err != nil {
		return "", fmt.Errorf("apply metadata: %w", err)
	}
	return resourceVersion, nil
}

// modelsOf returns the model names recorded on an object.
func modelsOf(obj metav1.Object) []string {
	v := obj.GetAnnotations()[v1alpha1.AnnotationModels]
	if v == "" {
		return nil
	}
	return strings.Split(v, ",")
}

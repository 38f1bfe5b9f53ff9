package controller

import (
	"context"
	"fmt"
	"hash/fnv"
	"strings"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/sets"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/responsibility-operator/responsibility-operator/api/v1alpha1"
	"github.com/responsibility-operator/responsibility-operator/internal/evaluate"
	"github.com/responsibility-operator/responsibility-operator/internal/ledger"
	"github.com/responsibility-operator/responsibility-operator/internal/metrics"
	"github.com/responsibility-operator/responsibility-operator/internal/registry"
	"github.com/responsibility-operator/responsibility-operator/internal/watch"
)

// WorkloadReconciler keeps the operator's annotations and label on one target
// object equal to what the matching models say, and records duty transitions
// as events. It reads only from the cache and writes only when the desired
// metadata differs from what the object carries.
type WorkloadReconciler struct {
	// Reader is the manager's cache, for namespaces.
	Reader client.Reader
	// Writer sends server-side apply patches.
	Writer   MetadataApplier
	Registry *registry.Registry
	// Watcher holds the target and related objects, and tells whether a
	// kind's cache is complete and keeps what the models read.
	Watcher *watch.Watcher
	// Written records what each object carries after a write or a check.
	Written *ledger.Written
	Tally   *ledger.Tally
	// Waivers lists the DutyWaivers of a namespace; Waived records which
	// objects each waives duties on.
	Waivers *WaiverSource
	Waived  *ledger.Waived
	Events  *EventEmitter
	Metrics *metrics.Metrics
	// ExcludedNamespaces are never written.
	ExcludedNamespaces sets.Set[string]
	// EventGrace is how long the duty events of a new object wait for its
	// related objects (see evaluate.HoldEvents); 0 sends them at once.
	EventGrace time.Duration
	// NamespaceChanged, when set, is told the namespace of every object
	// evaluated or forgotten (for the namespace's policy reports).
	NamespaceChanged func(namespace string)

	// rechecks are the objects' next re-check times, to count the
	// evaluations that happen because time passed.
	rechecks dueTimes
}

// Reconcile brings one object's operator-owned metadata up to date.
func (r *WorkloadReconciler) Reconcile(ctx context.Context, key watch.Key) (reconcile.Result, error) {
	if r.ExcludedNamespaces.Has(key.Namespace) {
		return reconcile.Result{}, nil
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
		r.Metrics.Requeues.WithLabelValues(metrics.RequeueOwnWrite).Inc()
		return reconcile.Result{RequeueAfter: cacheCatchUpRetry}, nil
	}
	if obj.GetDeletionTimestamp() != nil {
		// Going away: its annotations go with it, and a write would only race
		// the deletion.
		r.forget(key)
		return reconcile.Result{}, nil
	}

	var nsObj map[string]any
	var nsUID types.UID
	if key.Namespace != "" {
		ns := &unstructured.Unstructured{}
		ns.SetGroupVersionKind(watch.NamespaceGVK)
		if err := r.Reader.Get(ctx, types.NamespacedName{Name: key.Namespace}, ns, client.UnsafeDisableDeepCopy); err != nil && !apierrors.IsNotFound(err) {
			return reconcile.Result{}, fmt.Errorf("get namespace of %s: %w", key, err)
		}
		nsObj, nsUID = ns.Object, ns.GetUID()
	}

	// Each getter copies the whole map out of the object: once each.
	annotations, labels := obj.GetAnnotations(), obj.GetLabels()
	waivers, err := r.Waivers.In(ctx, key.Namespace)
	if err != nil {
		return reconcile.Result{}, err
	}
	start := time.Now()
	res, complete, err := evaluate.EvaluateWorkload(r.Registry.ModelsFor(key.GVK), obj, nsObj, r.Watcher.Related, waivers, start)
	if err != nil {
		return reconcile.Result{}, fmt.Errorf("evaluate %s: %w", key, err)
	}
	if !complete {
		// A related kind's initial list is still arriving: evaluating now
		// could report a duty unmet for an object that is on its way.
		r.Metrics.Requeues.WithLabelValues(metrics.RequeueRelatedListing).Inc()
		return reconcile.Result{RequeueAfter: relatedSyncRetry}, nil
	}
	if !r.Watcher.Covers(ctx, epoch, key.GVK, res.Models) {
		// A kind was listed again, with more fields, while this read it:
		// what was read may lack a field a rule reads.
		r.Metrics.Requeues.WithLabelValues(metrics.RequeueCacheWidened).Inc()
		return reconcile.Result{RequeueAfter: relatedSyncRetry}, nil
	}
	r.Metrics.EvaluationDuration.Observe(time.Since(start).Seconds())
	if r.rechecks.reached(key, start) {
		r.Metrics.Rechecks.Inc()
	}

	// A young object's duty events wait for its related objects (see
	// evaluate.HoldEvents); its states are written now.
	hold := evaluate.HoldEvents(&res, annotations, obj.GetCreationTimestamp().Time, r.EventGrace, start)
	digest := evaluate.OwnedDigest(res.Annotations, res.Labels)
	// An object no model matches, whose remaining responsibility.io keys the
	// operator already found there after its last write, carries a tenant's
	// keys only: applying nothing again would change nothing.
	known := r.Written.Is(key, digest)
	foreignOnly := len(res.Models) == 0 && known
	writtenOver := ""
	if !foreignOnly && !evaluate.OwnedMetadataEqual(annotations, labels, res) {
		// Events first, then the write that records the new states: an
		// event is named after the transition and the object's version, so
		// a process that evaluates the same version again (the write never
		// happened: a crash, a refused write) finds its events sent and
		// sends none twice; once the write happened, there is no transition
		// left to report. An object that already carries the result has no
		// transition (the common case of a resync or a restart), and its
		// annotation need not be parsed.
		var transitions []evaluate.Transition
		if hold.Until.IsZero() {
			transitions = evaluate.Transitions(hold.Reported(annotations), res)
		}
		ignored := evaluate.NewlyIgnoredWaivers(annotations[v1alpha1.AnnotationIgnoredWaivers], res)
		if err := r.Events.Transitions(ctx, obj, nsUID, transitions, ignored); err != nil {
			return reconcile.Result{}, fmt.Errorf("record the duty events of %s: %w", key, err)
		}
		r.Written.Expect(key, digest)
		resourceVersion, err := r.apply(ctx, obj, res)
		if err != nil {
			return r.applyFailed(key, obj, res, err)
		}
		if resourceVersion != "" && resourceVersion != obj.GetResourceVersion() {
			// The write changed the object (an apply that changes nothing,
			// such as one that cannot remove a key another manager owns,
			// keeps the version): the cache has to catch up.
			writtenOver = obj.GetResourceVersion()
		}
		r.Metrics.Applies.WithLabelValues(key.GVK.Kind, metrics.ApplySuccess).Inc()
		log.FromContext(ctx).V(1).Info("applied", "object", key.String(), "models", res.Annotations[v1alpha1.AnnotationModels], "status", res.Labels[v1alpha1.LabelStatus])
	}
	r.Written.Record(key, digest, res.Annotations[v1alpha1.AnnotationModels], writtenOver)
	r.Tally.Record(key, res)
	r.Waived.Record(key, res)
	if !known || writtenOver != "" {
		// The namespace's reports read the annotations: an evaluation that
		// found what this process last recorded (a re-check, a resync)
		// changes none, and must not hold a report back (reportDelay).
		r.namespaceChanged(key.Namespace)
	}
	wait := nextCheck(key, res, start)
	r.rechecks.set(key, start, wait)
	return reconcile.Result{RequeueAfter: wait}, nil
}

// dueTimes holds when each object is due for a re-check.
type dueTimes struct {
	mu  sync.Mutex
	due map[watch.Key]time.Time
}

// reached reports whether key's re-check time has come at now; a re-check
// is counted once.
func (d *dueTimes) reached(key watch.Key, now time.Time) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	at, ok := d.due[key]
	if !ok || now.Before(at) {
		return false
	}
	delete(d.due, key)
	return true
}

// set records that key is due wait after now; 0 for never.
func (d *dueTimes) set(key watch.Key, now time.Time, wait time.Duration) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if wait <= 0 {
		delete(d.due, key)
		return
	}
	if d.due == nil {
		d.due = map[watch.Key]time.Time{}
	}
	d.due[key] = now.Add(wait)
}

// nextCheck is how long until an object is evaluated again with nothing
// changed, 0 for never: when a waiver's expiry changes its result, or, if
// a duty reads `now`, at the object's own point in the re-check interval,
// whichever comes first. The point is a hash of the object's key: the
// objects of a model are re-checked once per interval each, spread evenly
// over it, rather than all at once.
func nextCheck(key watch.Key, res evaluate.Result, now time.Time) time.Duration {
	var wait time.Duration
	if interval := res.Recheck; interval > 0 {
		h := fnv.New64a()
		_, _ = h.Write([]byte(key.String()))
		phase := int64(h.Sum64() % uint64(interval))
		wait = interval - time.Duration((now.UnixNano()-phase)%int64(interval))
	}
	if !res.NextChange.IsZero() {
		until := max(res.NextChange.Sub(now), time.Millisecond)
		if wait == 0 || until < wait {
			wait = until
		}
	}
	return wait
}

// applyFailed handles a write the API server did not take. An object
// deleted or replaced since the cache saw it needs nothing (the watch
// brings the change) or a new evaluation; one the server refuses (too large
// once annotated, an admission policy) counts as failed in its models'
// status and is retried with the controller's backoff, at most
// maxRetryInterval apart.
func (r *WorkloadReconciler) applyFailed(key watch.Key, obj *unstructured.Unstructured, res evaluate.Result, err error) (reconcile.Result, error) {
	switch {
	case apierrors.IsNotFound(err):
		r.Metrics.Applies.WithLabelValues(key.GVK.Kind, metrics.ApplyConflict).Inc()
		// Deleted since the cache saw it: the watch brings the deletion.
		return reconcile.Result{}, nil
	case apierrors.IsConflict(err):
		// Replaced since the cache saw it (the UID precondition), or a
		// conflict from the server: evaluate again, with backoff, from what
		// the cache holds by then.
		r.Metrics.Applies.WithLabelValues(key.GVK.Kind, metrics.ApplyConflict).Inc()
		return reconcile.Result{}, fmt.Errorf("apply metadata to %s: %w", key, err)
	}
	r.Metrics.Applies.WithLabelValues(key.GVK.Kind, metrics.ApplyError).Inc()
	r.Events.ApplyFailed(obj, err)
	r.Tally.Failed(key, res, err)
	r.Waived.Forget(key)
	r.namespaceChanged(key.Namespace)
	return reconcile.Result{}, fmt.Errorf("apply metadata to %s: %w", key, err)
}

func (r *WorkloadReconciler) forget(key watch.Key) {
	r.rechecks.set(key, time.Time{}, 0)
	r.Written.Forget(key)
	r.Tally.Forget(key)
	r.Waived.Forget(key)
	r.namespaceChanged(key.Namespace)
}

func (r *WorkloadReconciler) namespaceChanged(ns string) {
	if r.NamespaceChanged != nil {
		r.NamespaceChanged(ns)
	}
}

// cacheCatchUpRetry is how soon an object whose cached copy predates the
// operator's last write of it is looked at again.
const cacheCatchUpRetry = 50 * time.Millisecond

// maxRetryInterval caps the backoff of an object whose evaluation or write
// keeps failing (docs/operations.md): controller-runtime's default grows to
// 1,000 s.
const maxRetryInterval = 5 * time.Minute

// relatedSyncRetry is how soon an object whose related kinds are still
// being listed is evaluated again.
const relatedSyncRetry = 250 * time.Millisecond

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

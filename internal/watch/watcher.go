package watch

import (
	"context"
	"fmt"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"github.com/responsibility-operator/responsibility-operator/internal/evaluate"
	"github.com/responsibility-operator/responsibility-operator/internal/registry"
)

// Watcher starts and stops informers for target and related kinds at run
// time, as models come and go, and turns their events into workload
// requests: a target object's own key, or, for a related object or a
// namespace, the keys of the target objects in its namespace that read it.
type Watcher struct {
	cache       cache.Cache
	targets     Targets
	written     OwnWrites
	projections *Projections

	snapshots *relatedSnapshots

	mu    sync.Mutex
	queue workqueue.TypedRateLimitingInterface[Key]
	// pending holds the keys until the start gate opens (see Source).
	pending map[Key]struct{}
	kinds   map[schema.GroupVersionKind]*kindWatch
	// epoch counts the informers started and stopped: while it stays the
	// same, every cached object of a watched kind was kept with that kind's
	// fields (see Covers).
	epoch uint64
}

type kindWatch struct {
	informer cache.Informer
	// store is the informer's, read directly: see Get.
	store        toolscache.Indexer
	registration toolscache.ResourceEventHandlerRegistration
	// fields are what the cache keeps of the kind's objects.
	fields *evaluate.Fields
}

// Targets says which kinds the registered models target, and which target
// kinds read a related kind (registry.Registry).
type Targets interface {
	IsTarget(gvk schema.GroupVersionKind) bool
	DependentTargets(related schema.GroupVersionKind) []registry.Dependent
}

// OwnWrites recognises the operator's own metadata on an object by its
// digest (evaluate.OwnedDigest), so that the echo of its own write is not
// evaluated again (ledger.Written).
type OwnWrites interface {
	Is(key Key, digest uint64) bool
}

// NamespaceGVK is the kind of namespaces, which the operator always watches:
// selectors and rules read them.
var NamespaceGVK = schema.GroupVersionKind{Version: "v1", Kind: "Namespace"}

// syncPoll is how often Get looks again for a kind whose informer has not
// listed it yet.
const syncPoll = 20 * time.Millisecond

// NewWatcher returns a watcher over the manager's cache. Targets names the
// kinds whose events are workload keys; written tells the operator's own
// writes apart from a tenant's change to its keys. The projections, if not
// nil, are those of the cache's transform.
func NewWatcher(c cache.Cache, targets Targets, written OwnWrites, projections *Projections) *Watcher {
	return &Watcher{cache: c, targets: targets, written: written, projections: projections,
		snapshots: newRelatedSnapshots(), kinds: map[schema.GroupVersionKind]*kindWatch{}}
}

// Source is the workload controller's source. Until the start gate opens
// the watcher holds the keys itself, each once, rather than the queue: on
// start, an object evaluated before every model that existed is registered
// would be written without the other models' keys, and one whose kind is
// still being listed would only be put back. The gate opens once ready
// (every model that existed at start is registered) reports true and every
// watched kind has its initial list, or after startGateLimit; the held keys
// then go to the queue at once, and later keys straight to it. A restart of
// N objects reconciles each of them once.
func (w *Watcher) Source(ready func(context.Context) bool) source.TypedSource[Key] {
	return source.TypedFunc[Key](func(ctx context.Context, q workqueue.TypedRateLimitingInterface[Key]) error {
		go w.openWhenReady(ctx, q, ready)
		return nil
	})
}

// startGateLimit bounds how long keys are held on start: a model that keeps
// failing, or a kind that cannot be listed, must not stop the others.
const startGateLimit = time.Minute

func (w *Watcher) openWhenReady(ctx context.Context, q workqueue.TypedRateLimitingInterface[Key], ready func(context.Context) bool) {
	deadline := time.Now().Add(startGateLimit)
	tick := time.NewTicker(syncPoll)
	defer tick.Stop()
	for !ready(ctx) || !w.allListed() {
		if time.Now().After(deadline) {
			log.FromContext(ctx).Info("evaluating objects although not every model is registered or every kind listed", "after", startGateLimit)
			break
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.queue = q
	for k := range w.pending {
		q.Add(k)
	}
	log.FromContext(ctx).Info("evaluating objects", "held", len(w.pending))
	w.pending = nil
}

// allListed reports whether every watched kind has its initial list.
func (w *Watcher) allListed() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, kw := range w.kinds {
		if !kw.informer.HasSynced() {
			return false
		}
	}
	return true
}

func (w *Watcher) enqueue(k Key) {
	w.mu.Lock()
	q := w.queue
	if q == nil {
		if w.pending == nil {
			w.pending = map[Key]struct{}{}
		}
		w.pending[k] = struct{}{}
	}
	w.mu.Unlock()
	if q != nil {
		q.Add(k)
	}
}

// Ensure starts watching a kind, if not yet watched, and makes the cache
// keep at least fields of its objects (nil: the metadata). It does not wait
// for the informer to sync: its initial list arrives as add events.
//
// A kind already watched with fewer fields is listed again: its cached
// objects lack what a model now reads, and only the API server has it. The
// informer is stopped and started with the union of the fields, so the
// cache never holds objects that lack something the registered models read
// (Covers tells a reader whether that held while it read).
func (w *Watcher) Ensure(ctx context.Context, gvk schema.GroupVersionKind, fields *evaluate.Fields) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.projections == nil || gvk == NamespaceGVK {
		// Namespaces are few, and every rule reads them as namespaceObject.
		fields = evaluate.AllFields()
	}
	if kw, ok := w.kinds[gvk]; ok {
		if kw.fields.Covers(fields) {
			return nil
		}
		fields = kw.fields.Union(fields)
		if err := w.stopLocked(ctx, gvk); err != nil {
			return err
		}
		log.FromContext(ctx).Info("listing kind again: a model reads more of it", "gvk", gvk.String(), "fields", fields.String())
	}
	if !fields.IsAll() {
		w.projections.set(gvk, fields)
	}
	w.epoch++
	inf, err := w.cache.GetInformer(ctx, newObject(gvk), cache.BlockUntilSynced(false))
	if err != nil {
		w.projections.delete(gvk)
		return fmt.Errorf("start informer for %s: %w", gvk, err)
	}
	indexed, ok := inf.(interface{ GetIndexer() toolscache.Indexer })
	if !ok {
		return fmt.Errorf("watch %s: the cache's informer %T has no store to read", gvk, inf)
	}
	reg, err := inf.AddEventHandler(w.handler(gvk))
	if err != nil {
		return fmt.Errorf("watch %s: %w", gvk, err)
	}
	w.kinds[gvk] = &kindWatch{informer: inf, store: indexed.GetIndexer(), registration: reg, fields: fields}
	log.FromContext(ctx).Info("watching kind", "gvk", gvk.String(), "fields", fields.String())
	return nil
}

// Epoch is to be read before reading objects from the cache, and passed to
// Covers after.
func (w *Watcher) Epoch() uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.epoch
}

// Backlog is how many workload keys wait to be evaluated: those held until
// the start gate opens (see Source) and those in the queue, not those being
// evaluated or waiting for a retry.
func (w *Watcher) Backlog() int {
	w.mu.Lock()
	q, n := w.queue, len(w.pending)
	w.mu.Unlock()
	if q != nil {
		n += q.Len()
	}
	return n
}

// Covers reports whether the objects of the models' kinds read from the
// cache since Epoch returned epoch hold every field the models read: of
// target, and of every related kind. When a kind's cache keeps too little
// (not expected: the model controller widens it before it registers a
// model), it is widened, and Covers reports false until it is read again.
func (w *Watcher) Covers(ctx context.Context, epoch uint64, target schema.GroupVersionKind, models []*evaluate.Model) bool {
	kinds := []schema.GroupVersionKind{target}
	for _, m := range models {
		for _, src := range m.RelatedSources() {
			kinds = append(kinds, src.GVK)
		}
	}
	w.mu.Lock()
	current := w.epoch == epoch
	var short []schema.GroupVersionKind
	for _, gvk := range kinds {
		kw, ok := w.kinds[gvk]
		if !ok {
			continue // not cached: nothing of it is read
		}
		for _, m := range models {
			if !kw.fields.Covers(m.Fields(gvk)) {
				short = append(short, gvk)
				break
			}
		}
	}
	w.mu.Unlock()
	for _, gvk := range short {
		log.FromContext(ctx).Info("a model reads fields the cache does not keep: widening", "gvk", gvk.String())
		if err := w.Ensure(ctx, gvk, evaluate.FieldsOf(models, gvk)); err != nil {
			log.FromContext(ctx).Error(err, "widen the fields kept", "gvk", gvk.String())
		}
	}
	return current && len(short) == 0
}

// Synced reports whether the informer of a kind has its initial list.
func (w *Watcher) Synced(gvk schema.GroupVersionKind) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	kw, ok := w.kinds[gvk]
	return ok && kw.informer.HasSynced() && kw.registration.HasSynced()
}

// Listable reports whether the cache holds a kind's complete initial list,
// so that a List of it from the cache misses nothing that existed when the
// watch started.
func (w *Watcher) Listable(gvk schema.GroupVersionKind) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	kw, ok := w.kinds[gvk]
	return ok && kw.informer.HasSynced()
}

// Get returns the cached object of a watched kind, without a copy (it must
// not be modified), once the kind's informer holds its initial list;
// a NotFound error if it is not there, or if the kind is not watched.
//
// It reads the informer's store itself: controller-runtime's reader waits
// for the sync of the informer it finds first, and one that Ensure replaces
// meanwhile (to keep more fields) never syncs. Get waits for whichever
// informer is current.
func (w *Watcher) Get(ctx context.Context, key Key) (*unstructured.Unstructured, error) {
	notFound := apierrors.NewNotFound(schema.GroupResource{Group: key.GVK.Group, Resource: key.GVK.Kind}, key.Name)
	for {
		w.mu.Lock()
		kw, ok := w.kinds[key.GVK]
		w.mu.Unlock()
		switch {
		case !ok:
			return nil, notFound
		case kw.informer.HasSynced():
			item, exists, err := kw.store.GetByKey(key.storeKey())
			if err != nil {
				return nil, fmt.Errorf("read cached %s: %w", key, err)
			}
			if u, ok := item.(*unstructured.Unstructured); ok && exists {
				return u, nil
			}
			return nil, notFound
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("wait for the cache of %s: %w", key.GVK.Kind, ctx.Err())
		case <-time.After(syncPoll):
		}
	}
}

// Related lists the cached objects of a related kind in a namespace, sorted
// by name, for a rule to read (an evaluate.RelatedLister). It reports
// incomplete (false) while the kind's initial list is still arriving. A kind
// that is not watched (not served, yet) has no objects: it reads as an empty
// list, and the model's TargetsResolved condition says why. The lists are
// shared and must not be modified.
func (w *Watcher) Related(gvk schema.GroupVersionKind, namespace string) ([]map[string]any, bool, error) {
	if w.Watched(gvk) && !w.Listable(gvk) {
		return nil, false, nil
	}
	objs, err := w.snapshots.list(gvk, namespace, func() ([]*unstructured.Unstructured, error) {
		return w.Cached(gvk, namespace)
	})
	return objs, true, err
}

// Cached returns the objects of a watched kind in a namespace ("" for
// all) that its informer's store holds now, without waiting for its initial
// list and without copies (they must not be modified); nil if the kind is
// not watched.
func (w *Watcher) Cached(gvk schema.GroupVersionKind, namespace string) ([]*unstructured.Unstructured, error) {
	w.mu.Lock()
	kw, ok := w.kinds[gvk]
	w.mu.Unlock()
	if !ok {
		return nil, nil
	}
	var items []any
	if namespace == "" {
		items = kw.store.List()
	} else {
		var err error
		if items, err = kw.store.ByIndex(toolscache.NamespaceIndex, namespace); err != nil {
			return nil, fmt.Errorf("list cached %s in %q: %w", gvk.Kind, namespace, err)
		}
	}
	out := make([]*unstructured.Unstructured, 0, len(items))
	for _, item := range items {
		if u, ok := item.(*unstructured.Unstructured); ok {
			out = append(out, u)
		}
	}
	return out, nil
}

// Watched reports whether a kind is watched.
func (w *Watcher) Watched(gvk schema.GroupVersionKind) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	_, ok := w.kinds[gvk]
	return ok
}

// Stop stops watching a kind and drops its objects from the cache.
func (w *Watcher) Stop(ctx context.Context, gvk schema.GroupVersionKind) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, ok := w.kinds[gvk]; !ok {
		return nil
	}
	if err := w.stopLocked(ctx, gvk); err != nil {
		return err
	}
	log.FromContext(ctx).Info("stopped watching kind", "gvk", gvk.String())
	return nil
}

// stopLocked stops the informer of a watched kind; w.mu is held.
func (w *Watcher) stopLocked(ctx context.Context, gvk schema.GroupVersionKind) error {
	kw := w.kinds[gvk]
	if err := kw.informer.RemoveEventHandler(kw.registration); err != nil {
		return fmt.Errorf("stop handler for %s: %w", gvk, err)
	}
	if err := w.cache.RemoveInformer(ctx, newObject(gvk)); err != nil {
		return fmt.Errorf("stop informer for %s: %w", gvk, err)
	}
	delete(w.kinds, gvk)
	w.projections.delete(gvk)
	w.epoch++
	w.snapshots.forget(gvk)
	return nil
}

// WatchedKinds returns the kinds currently watched.
func (w *Watcher) WatchedKinds() []schema.GroupVersionKind {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make([]schema.GroupVersionKind, 0, len(w.kinds))
	for k := range w.kinds {
		out = append(out, k)
	}
	return out
}

// EnqueueKind enqueues every cached object of a target kind, in one namespace
// or in all (namespace ""). It does not wait for a kind's initial list: the
// objects still to come are enqueued as they arrive, and evaluated after
// whatever made the caller enqueue the others.
func (w *Watcher) EnqueueKind(gvk schema.GroupVersionKind, namespace string) error {
	objs, err := w.Cached(gvk, namespace)
	if err != nil {
		return err
	}
	for _, o := range objs {
		w.enqueue(Key{GVK: gvk, Namespace: o.GetNamespace(), Name: o.GetName()})
	}
	return nil
}

func newObject(gvk schema.GroupVersionKind) *unstructured.Unstructured {
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(gvk)
	return u
}

package controller

import (
	"context"
	"fmt"
	"reflect"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"github.com/responsibility-operator/responsibility-operator/api/v1alpha1"
	"github.com/responsibility-operator/responsibility-operator/internal/evaluate"
)

// Watcher starts and stops informers for target and related kinds at run
// time, as models come and go, and turns their events into workload
// requests: a target object's own key, or, for a related object or a
// namespace, the keys of the target objects in its namespace that read it.
type Watcher struct {
	cache       cache.Cache
	registry    *Registry
	written     *Written
	projections *Projections

	snapshots *relatedSnapshots

	mu      sync.Mutex
	queue   workqueue.TypedRateLimitingInterface[WorkloadKey]
	pending []WorkloadKey
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

// NewWatcher returns a watcher over the manager's cache. Written tells the
// operator's own writes apart from a tenant's change to its keys. The
// projections, if not nil, are those of the cache's transform.
func NewWatcher(c cache.Cache, registry *Registry, written *Written, projections *Projections) *Watcher {
	return &Watcher{cache: c, registry: registry, written: written, projections: projections,
		snapshots: newRelatedSnapshots(), kinds: map[schema.GroupVersionKind]*kindWatch{}}
}

// Source is the workload controller's source: it hands the controller's queue
// to the watcher, which then feeds it from every informer it starts.
func (w *Watcher) Source() source.TypedSource[WorkloadKey] {
	return source.TypedFunc[WorkloadKey](func(_ context.Context, q workqueue.TypedRateLimitingInterface[WorkloadKey]) error {
		w.mu.Lock()
		defer w.mu.Unlock()
		w.queue = q
		for _, k := range w.pending {
			q.Add(k)
		}
		w.pending = nil
		return nil
	})
}

func (w *Watcher) enqueue(k WorkloadKey) {
	w.mu.Lock()
	q := w.queue
	if q == nil {
		w.pending = append(w.pending, k)
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
	if w.projections == nil || gvk == namespaceGVK {
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
func (w *Watcher) Get(ctx context.Context, key WorkloadKey) (*unstructured.Unstructured, error) {
	notFound := apierrors.NewNotFound(schema.GroupResource{Group: key.GVK.Group, Resource: key.GVK.Kind}, key.Name)
	for {
		w.mu.Lock()
		kw, ok := w.kinds[key.GVK]
		w.mu.Unlock()
		switch {
		case !ok:
			return nil, notFound
		case kw.informer.HasSynced():
			storeKey := key.Name
			if key.Namespace != "" {
				storeKey = key.Namespace + "/" + key.Name
			}
			item, exists, err := kw.store.GetByKey(storeKey)
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
		case <-time.After(settlePoll):
		}
	}
}

// cachedIn returns the objects of a watched kind in a namespace ("" for
// all) that its informer's store holds now, without waiting for its initial
// list and without copies; nil if the kind is not watched.
func (w *Watcher) cachedIn(gvk schema.GroupVersionKind, namespace string) ([]*unstructured.Unstructured, error) {
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
	objs, err := w.cachedIn(gvk, namespace)
	if err != nil {
		return err
	}
	for _, o := range objs {
		w.enqueue(WorkloadKey{GVK: gvk, Namespace: o.GetNamespace(), Name: o.GetName()})
	}
	return nil
}

// handler turns the events of one kind into workload requests.
//
// The objects of a kind's initial list do not fan out to the targets that
// read them: a target reconciled before that list is complete waits for it
// (see Listable), and one reconciled after it sees it. Without this, a
// restart would enqueue every target of a namespace once per related object
// in it.
func (w *Watcher) handler(gvk schema.GroupVersionKind) toolscache.ResourceEventHandler {
	onObject := func(obj any, fanOut bool) {
		if tomb, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
			obj = tomb.Obj
		}
		o, ok := obj.(client.Object)
		if !ok {
			return
		}
		if o.GetNamespace() != "" {
			w.snapshots.changed(gvk, o.GetNamespace())
		}
		if w.registry.IsTarget(gvk) {
			w.enqueue(WorkloadKey{GVK: gvk, Namespace: o.GetNamespace(), Name: o.GetName()})
		}
		if o.GetNamespace() == "" || !fanOut {
			return
		}
		for _, dep := range w.registry.DependentTargets(gvk) {
			// The cache is in memory; an error means the kind just stopped
			// being watched, and then there is nothing to re-evaluate.
			switch dep.Namespace {
			case "":
				_ = w.EnqueueKind(dep.Target, o.GetNamespace())
			case o.GetNamespace():
				_ = w.EnqueueKind(dep.Target, "")
			}
		}
	}
	return toolscache.ResourceEventHandlerDetailedFuncs{
		AddFunc: func(obj any, isInInitialList bool) { onObject(obj, !isInInitialList) },
		UpdateFunc: func(oldObj, newObj any) {
			if relevantUpdate(oldObj, newObj) {
				onObject(newObj, true)
				return
			}
			// Only the operator's keys changed, or nothing: its own write
			// coming back is ignored; anyone else's is corrected.
			o, ok := newObj.(client.Object)
			if !ok {
				return
			}
			if o.GetNamespace() != "" {
				// A rule may read a related object's operator keys too.
				w.snapshots.changed(gvk, o.GetNamespace())
			}
			if !w.registry.IsTarget(gvk) {
				return
			}
			key := WorkloadKey{GVK: gvk, Namespace: o.GetNamespace(), Name: o.GetName()}
			if !w.written.Is(key, evaluate.OwnedDigest(o.GetAnnotations(), o.GetLabels())) {
				w.enqueue(key)
			}
		},
		DeleteFunc: func(obj any) { onObject(obj, true) },
	}
}

// relevantUpdate filters out updates that change nothing a rule or selector
// can see: a resync, or the operator's own write of its annotations.
func relevantUpdate(oldObj, newObj any) bool {
	o, ok1 := oldObj.(*unstructured.Unstructured)
	n, ok2 := newObj.(*unstructured.Unstructured)
	if !ok1 || !ok2 {
		return true
	}
	if o.GetResourceVersion() == n.GetResourceVersion() {
		return false
	}
	return !equalIgnoringOwned(o.Object, n.Object)
}

// equalIgnoringOwned compares two objects ignoring resourceVersion,
// managedFields and the operator's own annotations and label.
func equalIgnoringOwned(a, b map[string]any) bool {
	if len(a) != len(b) {
		return false
	}
	for k, av := range a {
		bv, ok := b[k]
		if !ok {
			return false
		}
		if k == "metadata" {
			am, aok := av.(map[string]any)
			bm, bok := bv.(map[string]any)
			if !aok || !bok || !equalMetadataIgnoringOwned(am, bm) {
				return false
			}
			continue
		}
		if !reflect.DeepEqual(av, bv) {
			return false
		}
	}
	return true
}

// Metadata fields that hold operator-owned keys beside the tenant's.
const (
	fieldAnnotations = "annotations"
	fieldLabels      = "labels"
)

func equalMetadataIgnoringOwned(a, b map[string]any) bool {
	skip := func(k string) bool { return k == "resourceVersion" || k == "managedFields" }
	for k, av := range a {
		if skip(k) {
			continue
		}
		bv := b[k]
		switch k {
		case fieldAnnotations:
			if !equalStringMapIgnoring(av, bv, v1alpha1.OwnedAnnotations...) {
				return false
			}
		case fieldLabels:
			if !equalStringMapIgnoring(av, bv, v1alpha1.LabelStatus) {
				return false
			}
		default:
			if !reflect.DeepEqual(av, bv) {
				return false
			}
		}
	}
	for k := range b {
		if _, ok := a[k]; !ok && !skip(k) && k != fieldAnnotations && k != fieldLabels {
			return false
		}
	}
	// annotations or labels present on one side only: compare against empty.
	for _, k := range []string{fieldAnnotations, fieldLabels} {
		if _, ok := a[k]; !ok {
			if !equalStringMapIgnoring(nil, b[k], append(append([]string{}, v1alpha1.OwnedAnnotations...), v1alpha1.LabelStatus)...) {
				return false
			}
		}
	}
	return true
}

func equalStringMapIgnoring(a, b any, ignore ...string) bool {
	am, _ := a.(map[string]any)
	bm, _ := b.(map[string]any)
	skip := func(k string) bool {
		for _, i := range ignore {
			if k == i {
				return true
			}
		}
		return false
	}
	n := 0
	for k, v := range am {
		if skip(k) {
			continue
		}
		n++
		if bv, ok := bm[k]; !ok || bv != v {
			return false
		}
	}
	for k := range bm {
		if !skip(k) {
			n--
		}
	}
	return n == 0
}

func newObject(gvk schema.GroupVersionKind) *unstructured.Unstructured {
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(gvk)
	return u
}

package controller

import (
	"context"
	"fmt"
	"reflect"
	"sync"

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
	cache    cache.Cache
	registry *Registry
	written  *Written

	snapshots *relatedSnapshots

	mu      sync.Mutex
	queue   workqueue.TypedRateLimitingInterface[WorkloadKey]
	pending []WorkloadKey
	kinds   map[schema.GroupVersionKind]*kindWatch
}

type kindWatch struct {
	informer     cache.Informer
	registration toolscache.ResourceEventHandlerRegistration
}

// NewWatcher returns a watcher over the manager's cache. Written tells the
// operator's own writes apart from a tenant's change to its keys.
func NewWatcher(c cache.Cache, registry *Registry, written *Written) *Watcher {
	return &Watcher{cache: c, registry: registry, written: written, snapshots: newRelatedSnapshots(), kinds: map[schema.GroupVersionKind]*kindWatch{}}
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

// Ensure starts watching a kind, if not yet watched. It does not wait for the
// informer to sync: its initial list arrives as add events.
func (w *Watcher) Ensure(ctx context.Context, gvk schema.GroupVersionKind) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, ok := w.kinds[gvk]; ok {
		return nil
	}
	inf, err := w.cache.GetInformer(ctx, newObject(gvk), cache.BlockUntilSynced(false))
	if err != nil {
		return fmt.Errorf("start informer for %s: %w", gvk, err)
	}
	reg, err := inf.AddEventHandler(w.handler(gvk))
	if err != nil {
		return fmt.Errorf("watch %s: %w", gvk, err)
	}
	w.kinds[gvk] = &kindWatch{informer: inf, registration: reg}
	log.FromContext(ctx).Info("watching kind", "gvk", gvk.String())
	return nil
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
	kw, ok := w.kinds[gvk]
	if !ok {
		return nil
	}
	if err := kw.informer.RemoveEventHandler(kw.registration); err != nil {
		return fmt.Errorf("stop handler for %s: %w", gvk, err)
	}
	if err := w.cache.RemoveInformer(ctx, newObject(gvk)); err != nil {
		return fmt.Errorf("stop informer for %s: %w", gvk, err)
	}
	delete(w.kinds, gvk)
	w.snapshots.forget(gvk)
	log.FromContext(ctx).Info("stopped watching kind", "gvk", gvk.String())
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
// or in all (namespace ""). It does nothing for a kind not yet synced: its
// initial list enqueues every object anyway.
func (w *Watcher) EnqueueKind(ctx context.Context, gvk schema.GroupVersionKind, namespace string) error {
	if !w.Watched(gvk) {
		return nil
	}
	list := &unstructured.UnstructuredList{}
	list.SetGroupVersionKind(gvk.GroupVersion().WithKind(gvk.Kind + "List"))
	var opts []client.ListOption
	if namespace != "" {
		opts = append(opts, client.InNamespace(namespace))
	}
	// Only the keys are read: no copy of every object of the namespace.
	opts = append(opts, client.UnsafeDisableDeepCopy)
	if err := w.cache.List(ctx, list, opts...); err != nil {
		return fmt.Errorf("list cached %s: %w", gvk, err)
	}
	for i := range list.Items {
		w.enqueue(WorkloadKey{GVK: gvk, Namespace: list.Items[i].GetNamespace(), Name: list.Items[i].GetName()})
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
				_ = w.EnqueueKind(context.Background(), dep.Target, o.GetNamespace())
			case o.GetNamespace():
				_ = w.EnqueueKind(context.Background(), dep.Target, "")
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

package watch

import (
	"reflect"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/responsibility-operator/responsibility-operator/api/v1alpha1"
	"github.com/responsibility-operator/responsibility-operator/internal/evaluate"
	"github.com/responsibility-operator/responsibility-operator/internal/registry"
)

// handler turns the events of one kind into workload requests.
//
// The objects of a kind's initial list do not fan out to the targets that
// read them: a target reconciled before that list is complete waits for it
// (see Listable), and one reconciled after it sees it. Without this, a
// restart would enqueue every target of a namespace once per related object
// in it.
func (w *Watcher) handler(gvk schema.GroupVersionKind) toolscache.ResourceEventHandler {
	onObject := func(obj, old any, fanOut bool) {
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
		if w.targets.IsTarget(gvk) {
			w.enqueue(Key{GVK: gvk, Namespace: o.GetNamespace(), Name: o.GetName()})
		}
		if o.GetNamespace() == "" || !fanOut {
			return
		}
		for _, dep := range w.targets.DependentTargets(gvk) {
			// The cache is in memory; an error means the kind just stopped
			// being watched, and then there is nothing to re-evaluate.
			switch {
			case dep.Namespace == "" && dep.Join != "":
				w.enqueueJoined(dep, o.GetNamespace(), obj, old)
			case dep.Namespace == "":
				_ = w.EnqueueKind(dep.Target, o.GetNamespace())
			case dep.Namespace == o.GetNamespace():
				_ = w.EnqueueKind(dep.Target, "")
			}
		}
	}
	return toolscache.ResourceEventHandlerDetailedFuncs{
		AddFunc: func(obj any, isInInitialList bool) { onObject(obj, nil, !isInInitialList) },
		UpdateFunc: func(oldObj, newObj any) {
			if relevantUpdate(oldObj, newObj) {
				onObject(newObj, oldObj, true)
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
			if !w.targets.IsTarget(gvk) {
				return
			}
			key := Key{GVK: gvk, Namespace: o.GetNamespace(), Name: o.GetName()}
			if !w.written.Is(key, evaluate.OwnedDigest(o.GetAnnotations(), o.GetLabels())) {
				w.enqueue(key)
			}
		},
		DeleteFunc: func(obj any) { onObject(obj, nil, true) },
	}
}

// enqueueJoined enqueues the targets of a namespace a related object names
// in its join field (registry.Dependent.Join), before and after the change:
// no other target's verdict can depend on it (see evaluate.relatedJoins).
// A name no cached target has is skipped; while the target kind's cache
// syncs, every name is enqueued.
func (w *Watcher) enqueueJoined(dep registry.Dependent, namespace string, objs ...any) {
	path := dep.JoinPath()
	var done string
	for i, obj := range objs {
		u, ok := obj.(*unstructured.Unstructured)
		if !ok {
			if obj != nil {
				// Not an object this cache holds: re-evaluate them all.
				_ = w.EnqueueKind(dep.Target, namespace)
				return
			}
			continue
		}
		name, _, _ := unstructured.NestedString(u.Object, path...)
		if name == "" || (i > 0 && name == done) {
			continue
		}
		done = name
		key := Key{GVK: dep.Target, Namespace: namespace, Name: name}
		if w.mayHold(key) {
			w.enqueue(key)
		}
	}
}

// mayHold reports whether the cache holds an object, or cannot tell yet.
func (w *Watcher) mayHold(key Key) bool {
	w.mu.Lock()
	kw, ok := w.kinds[key.GVK]
	w.mu.Unlock()
	if !ok || !kw.informer.HasSynced() {
		return true
	}
	_, exists, err := kw.store.GetByKey(key.storeKey())
	return err != nil || exists
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

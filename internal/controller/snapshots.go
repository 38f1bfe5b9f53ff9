package controller

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"sync"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// relatedSnapshots keeps, per kind and namespace, the sorted list of cached
// objects that the last evaluation read, and reuses it until an event of
// that kind in that namespace arrives. Every target of a namespace reads the
// same related lists: without this each evaluation listed and sorted all of
// them again (a few hundred objects per namespace at 10,000 workloads).
type relatedSnapshots struct {
	mu sync.Mutex
	// next numbers changes; a number is never used twice, so a snapshot
	// taken before a kind was stopped and watched again never looks current.
	next     uint64
	versions map[snapshotKey]uint64
	snaps    map[snapshotKey]snapshot
}

type snapshotKey struct {
	gvk       schema.GroupVersionKind
	namespace string
}

type snapshot struct {
	version uint64
	objects []map[string]any
}

func newRelatedSnapshots() *relatedSnapshots {
	return &relatedSnapshots{versions: map[snapshotKey]uint64{}, snaps: map[snapshotKey]snapshot{}}
}

// changed records that an object of gvk in namespace changed in the cache.
// The informer updates its store before it calls the handlers, so a list
// read after the version is taken sees at least what that version saw.
func (s *relatedSnapshots) changed(gvk schema.GroupVersionKind, namespace string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.next++
	s.versions[snapshotKey{gvk, namespace}] = s.next
}

// forget drops every snapshot of a kind that is no longer watched.
func (s *relatedSnapshots) forget(gvk schema.GroupVersionKind) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.next++
	for k := range s.snaps {
		if k.gvk == gvk {
			delete(s.snaps, k)
		}
	}
	for k := range s.versions {
		if k.gvk == gvk {
			s.versions[k] = s.next
		}
	}
}

// list returns the cached objects of gvk in namespace, sorted by name. The
// slice and the objects are shared and must not be modified.
func (s *relatedSnapshots) list(ctx context.Context, reader client.Reader, gvk schema.GroupVersionKind, namespace string) ([]map[string]any, error) {
	key := snapshotKey{gvk, namespace}
	s.mu.Lock()
	version := s.versions[key]
	snap, ok := s.snaps[key]
	s.mu.Unlock()
	if ok && snap.version == version {
		return snap.objects, nil
	}
	objects, err := listSorted(ctx, reader, gvk, namespace)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	if cur, ok := s.snaps[key]; !ok || cur.version <= version {
		s.snaps[key] = snapshot{version: version, objects: objects}
	}
	s.mu.Unlock()
	return objects, nil
}

// listSorted lists the cached objects of gvk in namespace, without copies,
// sorted by name: the cache lists in no particular order, and rules and
// messages that walk a related list must see the same order every time, or
// an unchanged object would be rewritten.
func listSorted(ctx context.Context, reader client.Reader, gvk schema.GroupVersionKind, namespace string) ([]map[string]any, error) {
	list := &unstructured.UnstructuredList{}
	list.SetGroupVersionKind(gvk.GroupVersion().WithKind(gvk.Kind + "List"))
	if err := reader.List(ctx, list, client.InNamespace(namespace), client.UnsafeDisableDeepCopy); err != nil {
		return nil, fmt.Errorf("list %s in %q: %w", gvk.Kind, namespace, err)
	}
	type named struct {
		name string
		obj  map[string]any
	}
	items := make([]named, len(list.Items))
	for i := range list.Items {
		items[i] = named{list.Items[i].GetName(), list.Items[i].Object}
	}
	slices.SortFunc(items, func(a, b named) int { return cmp.Compare(a.name, b.name) })
	objects := make([]map[string]any, len(items))
	for i := range items {
		objects[i] = items[i].obj
	}
	return objects, nil
}

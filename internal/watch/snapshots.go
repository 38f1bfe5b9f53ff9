package watch

import (
	"cmp"
	"slices"
	"sync"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
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
	// floors are, per kind, the number of its last forget: no snapshot of
	// the kind older than that is current, in any namespace, even one whose
	// namespace had no version yet when the kind was watched again.
	floors map[schema.GroupVersionKind]uint64
	snaps  map[snapshotKey]snapshot
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
	return &relatedSnapshots{
		versions: map[snapshotKey]uint64{},
		floors:   map[schema.GroupVersionKind]uint64{},
		snaps:    map[snapshotKey]snapshot{},
	}
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

// forget drops every snapshot of a kind that is no longer watched, and
// makes every snapshot of it taken before now out of date: a reader that
// loaded the old informer's objects (narrower, when the kind is watched
// again to keep more fields) and saves them after this must not be reused.
func (s *relatedSnapshots) forget(gvk schema.GroupVersionKind) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.next++
	s.floors[gvk] = s.next
	for k := range s.snaps {
		if k.gvk == gvk {
			delete(s.snaps, k)
		}
	}
}

// list returns the cached objects of gvk in namespace, sorted by name. The
// slice and the objects are shared and must not be modified. load reads
// them from the cache when the kept list is out of date.
func (s *relatedSnapshots) list(gvk schema.GroupVersionKind, namespace string, load func() ([]*unstructured.Unstructured, error)) ([]map[string]any, error) {
	key := snapshotKey{gvk, namespace}
	s.mu.Lock()
	version := max(s.versions[key], s.floors[gvk])
	snap, ok := s.snaps[key]
	s.mu.Unlock()
	if ok && snap.version == version {
		return snap.objects, nil
	}
	items, err := load()
	if err != nil {
		return nil, err
	}
	objects := sortedByName(items)
	s.mu.Lock()
	if cur, ok := s.snaps[key]; !ok || cur.version <= version {
		s.snaps[key] = snapshot{version: version, objects: objects}
	}
	s.mu.Unlock()
	return objects, nil
}

// sortedByName returns the objects' contents sorted by name: the cache
// lists in no particular order, and rules and messages that walk a related
// list must see the same order every time, or an unchanged object would be
// rewritten.
func sortedByName(items []*unstructured.Unstructured) []map[string]any {
	slices.SortFunc(items, func(a, b *unstructured.Unstructured) int { return cmp.Compare(a.GetName(), b.GetName()) })
	objects := make([]map[string]any, len(items))
	for i := range items {
		objects[i] = items[i].Object
	}
	return objects
}

package evaluate

import (
	"sync"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// minJoinIndexed is the shortest related list a join looks up in an index
// rather than walks: below it, walking costs less than keeping the index.
const minJoinIndexed = 32

// maxJoinIndexes bounds the lists a model keeps indexes of: a namespace that
// is gone leaves its entry until the index is cleared.
const maxJoinIndexes = 4096

// joinIndex finds, in a related list of a source a model joins on the
// workload's name (Model.RelatedJoin), the objects whose join field holds a
// workload's name, without walking the list. Every workload of a namespace
// reads the same shared list until an object of the kind changes there
// (the operator keeps a snapshot per kind and namespace), so the index of
// the last list seen, per source and namespace, serves every evaluation in
// between: at 2,500 workloads and 1,500 related objects per namespace,
// walking the list was a sixth of the operator's CPU.
//
// Related lists are shared and never modified (RelatedLister), so a list of
// the same length over the same array is the same list. An entry keeps the
// list it indexed, so that array cannot be freed and reused for another list
// while the entry stands.
type joinIndex struct {
	mu      sync.Mutex
	entries map[joinIndexKey]*joinEntry
}

type joinIndexKey struct {
	src       RelatedSource
	namespace string
}

type joinEntry struct {
	objects []map[string]any
	// byName holds, per value of the join field, the objects that have it,
	// in the list's order. An object whose field is missing, empty or not a
	// string joins no workload (names are never empty) and is left out.
	byName map[string][]any
}

func (e *joinEntry) indexes(objects []map[string]any) bool {
	return len(e.objects) == len(objects) && (len(objects) == 0 || &e.objects[0] == &objects[0])
}

// joined returns the objects of objects (the list of src in namespace)
// whose field at path is name, in the list's order. The slice is shared
// and must not be modified.
func (x *joinIndex) joined(src RelatedSource, namespace string, path []string, objects []map[string]any, name string) []any {
	key := joinIndexKey{src, namespace}
	x.mu.Lock()
	e := x.entries[key]
	x.mu.Unlock()
	if e == nil || !e.indexes(objects) {
		e = newJoinEntry(objects, path)
		x.mu.Lock()
		if x.entries == nil || len(x.entries) >= maxJoinIndexes {
			x.entries = map[joinIndexKey]*joinEntry{}
		}
		x.entries[key] = e
		x.mu.Unlock()
	}
	return e.byName[name]
}

func newJoinEntry(objects []map[string]any, path []string) *joinEntry {
	values := make([]string, len(objects))
	counts := make(map[string]int, len(objects))
	for i, o := range objects {
		if v, _, _ := unstructured.NestedString(o, path...); v != "" {
			values[i] = v
			counts[v]++
		}
	}
	// One array for every group: each group is a slice of it, capped so
	// that nothing appended to one can overwrite the next.
	all := make([]any, 0, len(objects))
	byName := make(map[string][]any, len(counts))
	for v, n := range counts {
		start := len(all)
		all = all[:start+n]
		byName[v] = all[start : start : start+n]
	}
	for i, o := range objects {
		if v := values[i]; v != "" {
			byName[v] = append(byName[v], o)
		}
	}
	return &joinEntry{objects: objects, byName: byName}
}

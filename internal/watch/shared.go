package watch

import (
	"hash/maphash"
	"math"
	"sync"
	"unsafe"
)

// sharedValues makes equal parts of cached objects one value in memory: a
// projectingDecoder hands every map and list it reads below an object's
// top level and its metadata map to share, and keeps what share returns.
//
// Workloads made from one template (a Helm chart's, a platform team's)
// differ in their names and little else; decoded apart, every one holds its
// own copy of the same resources, volumes and security contexts as nested Go
// maps, a few hundred bytes each however few entries they have. The
// operator's own annotations make equal annotation maps on every object a
// model's verdict leaves alike. Shared, each part is held once.
//
// Cached objects are never modified (Watcher.Get, Cached and Related say
// so; a reader that needs to change one copies it, as controller-runtime's
// cache reader does), which is what makes sharing their parts safe.
//
// Values are shared bottom-up (hash-consing): a map or list is looked up
// by a hash of its entries, an entry that is itself a map or list by its
// address, which is already the shared one; a value found is shared only if
// its entries are those of the value looked up (the same scalars, the same
// maps and lists), so a collision costs sharing, never a wrong value. The
// table keeps recently shared values in two generations of at most
// maxSharedValues each: a value shared again moves to the newer, and the
// older is dropped when the newer fills, so values no object holds any more
// are released, and objects that differ everywhere cost a bounded table (a
// hash and a value per entry), not one that grows with them or their size.
type sharedValues struct {
	mu        sync.Mutex
	seed      maphash.Seed
	cur, prev map[uint64]any
}

// maxSharedValues bounds each generation of sharedValues.
const maxSharedValues = 1 << 14

func newSharedValues() *sharedValues {
	return &sharedValues{seed: maphash.MakeSeed(), cur: map[uint64]any{}}
}

// shared is the table every projectingDecoder shares values through: equal
// parts of objects of different kinds, listed and watched apart, are one.
var shared = newSharedValues()

// share returns the shared value equal to v, a map[string]any or []any whose
// maps and lists are shared already; v itself if there is none yet. Other
// values, and a nil map or list (what a decoder returns with an error, which
// must not stand for an empty one), are returned as they are.
func (s *sharedValues) share(v any) any {
	if s == nil || isNil(v) {
		return v
	}
	h, ok := s.hash(v)
	if !ok {
		return v
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if c, hit := s.cur[h]; hit {
		if sameEntries(c, v) {
			return c
		}
		return v
	}
	if c, hit := s.prev[h]; hit && sameEntries(c, v) {
		v = c
	}
	s.cur[h] = v
	if len(s.cur) >= maxSharedValues {
		s.prev, s.cur = s.cur, make(map[uint64]any, len(s.cur))
	}
	return v
}

// hash is the hash of a map's or list's entries: of a map the sum of its
// entries' hashes, each of its name and value, so that it does not depend
// on the order a map is walked in; of a list the hash of its elements in
// order. It reports false when v is not a map or list, or holds a value
// that a JSON decoder does not make.
func (s *sharedValues) hash(v any) (uint64, bool) {
	switch v := v.(type) {
	case map[string]any:
		sum := uint64(len(v))
		for name, e := range v {
			eh, ok := s.entryHash(e)
			if !ok {
				return 0, false
			}
			sum += mix(maphash.String(s.seed, name), eh)
		}
		return sum, true
	case []any:
		h := mix(tagList, uint64(len(v)))
		for _, e := range v {
			eh, ok := s.entryHash(e)
			if !ok {
				return 0, false
			}
			h = mix(h, eh)
		}
		return h, true
	}
	return 0, false
}

// Tags that keep values of different types apart in entryHash.
const (
	tagNull = iota + 1
	tagTrue
	tagFalse
	tagInt
	tagFloat
	tagMap
	tagEmptyList
	tagList
)

// entryHash is the hash of a map's or list's entry: of a scalar's value,
// of a map's or list's address (shared before its parent is).
func (s *sharedValues) entryHash(v any) (uint64, bool) {
	switch v := v.(type) {
	case nil:
		return tagNull, true
	case bool:
		if v {
			return tagTrue, true
		}
		return tagFalse, true
	case string:
		return maphash.String(s.seed, v), true
	case int64:
		return mix(tagInt, uint64(v)), true
	case float64:
		return mix(tagFloat, math.Float64bits(v)), true
	case map[string]any:
		return mix(tagMap, uint64(uintptr(mapPointer(v)))), true
	case []any:
		if len(v) == 0 {
			// Every empty list is equal, wherever its array is.
			return tagEmptyList, true
		}
		return mix(mix(tagList, uint64(uintptr(unsafe.Pointer(unsafe.SliceData(v))))), uint64(len(v))), true
	}
	return 0, false
}

// mix combines h with v; for a given h, distinct v give distinct results.
func mix(h, v uint64) uint64 {
	h = (h ^ v) * 0x9e3779b97f4a7c15
	return h ^ h>>32
}

// sameEntries reports whether a and b, maps or lists, hold the same
// entries: equal scalars, and the same maps and lists.
func sameEntries(a, b any) bool {
	switch a := a.(type) {
	case map[string]any:
		b, ok := b.(map[string]any)
		if !ok || len(a) != len(b) {
			return false
		}
		for name, ea := range a {
			if eb, ok := b[name]; !ok || !sameEntry(ea, eb) {
				return false
			}
		}
		return true
	case []any:
		b, ok := b.([]any)
		if !ok || len(a) != len(b) {
			return false
		}
		for i := range a {
			if !sameEntry(a[i], b[i]) {
				return false
			}
		}
		return true
	}
	return false
}

// sameEntry reports whether two entries are equal scalars or the same map
// or list.
func sameEntry(a, b any) bool {
	switch a := a.(type) {
	case map[string]any:
		b, ok := b.(map[string]any)
		return ok && mapPointer(a) == mapPointer(b)
	case []any:
		b, ok := b.([]any)
		return ok && len(a) == len(b) && (len(a) == 0 || unsafe.SliceData(a) == unsafe.SliceData(b))
	case float64:
		b, ok := b.(float64)
		return ok && math.Float64bits(a) == math.Float64bits(b)
	case nil, bool, string, int64:
		return a == b
	}
	return false
}

// isNil reports whether v is a nil map or list.
func isNil(v any) bool {
	switch v := v.(type) {
	case map[string]any:
		return v == nil
	case []any:
		return v == nil
	}
	return false
}

// mapPointer is the address of a map: a map value is a pointer to it.
func mapPointer(m map[string]any) unsafe.Pointer {
	return *(*unsafe.Pointer)(unsafe.Pointer(&m))
}

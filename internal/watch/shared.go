package watch

import (
	"encoding/binary"
	"math"
	"slices"
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
// Values are shared bottom-up (hash-consing): a map or list is looked up by
// its entries, and an entry that is itself a map or list by its address,
// which is already the shared one. A key holds an address only while the
// table holds the value that keeps it alive, so an address in a key is
// never reused for another value. The table keeps recently shared values
// in two generations of at most maxSharedValues each: a value shared again
// moves to the newer, and the older is dropped when the newer fills, so
// values no object holds any more are released, and objects that differ
// everywhere cost a bounded table, not one that grows with them.
type sharedValues struct {
	mu        sync.Mutex
	cur, prev map[string]any
	// key and names are scratch space for building keys, under mu.
	key   []byte
	names []string
}

// maxSharedValues bounds each generation of sharedValues.
const maxSharedValues = 1 << 14

func newSharedValues() *sharedValues {
	return &sharedValues{cur: map[string]any{}}
}

// shared is the table every projectingDecoder shares values through: equal
// parts of objects of different kinds, listed and watched apart, are one.
var shared = newSharedValues()

// share returns the shared value equal to v, a map[string]any or []any whose
// maps and lists are shared already; v itself if there is none yet. Other
// values are returned as they are.
func (s *sharedValues) share(v any) any {
	if s == nil {
		return v
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var ok bool
	switch v := v.(type) {
	case map[string]any:
		s.key, ok = s.appendMapKey(s.key[:0], v)
	case []any:
		s.key, ok = s.appendListKey(s.key[:0], v)
	}
	if !ok {
		return v
	}
	// Looked up with the scratch key converted, which does not copy it.
	if c, hit := s.cur[string(s.key)]; hit {
		return c
	}
	key := string(s.key)
	if c, hit := s.prev[key]; hit {
		v = c
	}
	s.cur[key] = v
	if len(s.cur) >= maxSharedValues {
		s.prev, s.cur = s.cur, make(map[string]any, len(s.cur))
	}
	return v
}

// appendMapKey appends m's key: its entries sorted by name, each its name
// and its value's key. It reports false when m holds a value that is not
// one a JSON decoder makes.
func (s *sharedValues) appendMapKey(key []byte, m map[string]any) ([]byte, bool) {
	s.names = s.names[:0]
	for name := range m {
		s.names = append(s.names, name)
	}
	slices.Sort(s.names)
	key = append(key, '{')
	for _, name := range s.names {
		key = appendString(key, name)
		var ok bool
		if key, ok = appendValueKey(key, m[name]); !ok {
			return key, false
		}
	}
	return key, true
}

// appendListKey appends l's key: its elements' keys in order.
func (s *sharedValues) appendListKey(key []byte, l []any) ([]byte, bool) {
	key = append(key, '[')
	key = binary.AppendUvarint(key, uint64(len(l)))
	for _, e := range l {
		var ok bool
		if key, ok = appendValueKey(key, e); !ok {
			return key, false
		}
	}
	return key, true
}

// appendValueKey appends the key of a map's or list's entry: the value of
// a scalar, the address of a map or list (shared before its parent is).
func appendValueKey(key []byte, v any) ([]byte, bool) {
	switch v := v.(type) {
	case nil:
		return append(key, 'n'), true
	case bool:
		if v {
			return append(key, 't'), true
		}
		return append(key, 'f'), true
	case string:
		return appendString(append(key, 's'), v), true
	case int64:
		return binary.AppendUvarint(append(key, 'i'), uint64(v)), true
	case float64:
		return binary.AppendUvarint(append(key, 'd'), math.Float64bits(v)), true
	case map[string]any:
		// A map value is a pointer to the map.
		return binary.AppendUvarint(append(key, 'm'), uint64(uintptr(*(*unsafe.Pointer)(unsafe.Pointer(&v))))), true
	case []any:
		if len(v) == 0 {
			// Every empty list is equal, wherever its array is.
			return append(key, 'e'), true
		}
		return binary.AppendUvarint(binary.AppendUvarint(append(key, 'l'), uint64(uintptr(unsafe.Pointer(unsafe.SliceData(v))))), uint64(len(v))), true
	}
	return key, false
}

// appendString appends s with its length first, so that no two sequences
// of strings make the same key.
func appendString(key []byte, s string) []byte {
	return append(binary.AppendUvarint(key, uint64(len(s))), s...)
}

package watch

import (
	"fmt"
	"reflect"
	"testing"
)

// same is whether a and b are one map or one list (the same array) in memory.
func same(a, b any) bool {
	va, vb := reflect.ValueOf(a), reflect.ValueOf(b)
	if va.Kind() != vb.Kind() || (va.Kind() != reflect.Map && va.Kind() != reflect.Slice) {
		return false
	}
	return va.UnsafePointer() == vb.UnsafePointer() && va.Len() == vb.Len()
}

func TestSharedValues(t *testing.T) {
	// Each case builds its two values anew, so that only share can make
	// them one; nested maps and lists are shared first, as the decoder does.
	for _, c := range []struct {
		name string
		a, b func(s *sharedValues) any
		same bool
	}{
		{"equal maps", func(*sharedValues) any { return map[string]any{"a": "x", "b": int64(1)} },
			func(*sharedValues) any { return map[string]any{"b": int64(1), "a": "x"} }, true},
		{"equal lists", func(*sharedValues) any { return []any{"x", 1.5, true, nil} },
			func(*sharedValues) any { return []any{"x", 1.5, true, nil} }, true},
		{"empty maps", func(*sharedValues) any { return map[string]any{} },
			func(*sharedValues) any { return map[string]any{} }, true},
		{"empty lists", func(*sharedValues) any { return []any{} },
			func(*sharedValues) any { return []any{} }, true},
		{"nested, shared first", func(s *sharedValues) any {
			return map[string]any{"m": s.share(map[string]any{"k": "v"}), "l": s.share([]any{s.share([]any{})})}
		}, func(s *sharedValues) any {
			return map[string]any{"m": s.share(map[string]any{"k": "v"}), "l": s.share([]any{s.share([]any{})})}
		}, true},
		{"nested, not shared first", func(*sharedValues) any { return map[string]any{"m": map[string]any{"k": "v"}} },
			func(*sharedValues) any { return map[string]any{"m": map[string]any{"k": "v"}} }, false},
		{"int and float", func(*sharedValues) any { return map[string]any{"a": int64(1)} },
			func(*sharedValues) any { return map[string]any{"a": float64(1)} }, false},
		{"int and string", func(*sharedValues) any { return []any{int64(1)} },
			func(*sharedValues) any { return []any{"1"} }, false},
		{"false and null", func(*sharedValues) any { return []any{false} },
			func(*sharedValues) any { return []any{nil} }, false},
		{"names split differently", func(*sharedValues) any { return map[string]any{"ab": "c"} },
			func(*sharedValues) any { return map[string]any{"a": "bc"} }, false},
		{"strings split differently", func(*sharedValues) any { return []any{"ab", "c"} },
			func(*sharedValues) any { return []any{"a", "bc"} }, false},
		{"a list and its element", func(s *sharedValues) any { return []any{"a"} },
			func(s *sharedValues) any { return []any{s.share([]any{"a"})} }, false},
		{"a longer list", func(*sharedValues) any { return []any{"a"} },
			func(*sharedValues) any { return []any{"a", "a"} }, false},
		{"a map and a list", func(*sharedValues) any { return map[string]any{} },
			func(*sharedValues) any { return []any{} }, false},
		{"a nil map and an empty one", func(*sharedValues) any { return map[string]any(nil) },
			func(*sharedValues) any { return map[string]any{} }, false},
		{"a nil list and an empty one", func(*sharedValues) any { return []any(nil) },
			func(*sharedValues) any { return []any{} }, false},
		{"a value no decoder makes", func(*sharedValues) any { return map[string]any{"a": 1} },
			func(*sharedValues) any { return map[string]any{"a": 1} }, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := newSharedValues()
			a := s.share(c.a(s))
			b := s.share(c.b(s))
			if got := same(a, b); got != c.same {
				t.Errorf("shared: %v, want %v (%v, %v)", got, c.same, a, b)
			}
			if !reflect.DeepEqual(b, c.b(s)) {
				t.Errorf("share returned %v for %v", b, c.b(s))
			}
		})
	}
}

// TestSharedValuesGenerations checks that the table stays bounded: a value
// is shared while it is among the last 2 × maxSharedValues values shared,
// and one shared again is kept a generation longer.
func TestSharedValuesGenerations(t *testing.T) {
	s := newSharedValues()
	fill := func(prefix string) {
		for i := range maxSharedValues {
			s.share(map[string]any{"i": fmt.Sprintf("%s%d", prefix, i)})
		}
	}
	first := s.share(map[string]any{"name": "first"})
	renewed := s.share(map[string]any{"name": "renewed"})
	fill("a") // first and renewed are now in the older generation.
	if got := s.share(map[string]any{"name": "first"}); !same(got, first) {
		t.Error("a value of the older generation is not shared")
	}
	fill("b")
	if got := s.share(map[string]any{"name": "renewed"}); same(got, renewed) {
		t.Error("a value not shared for two generations is still shared")
	}
	if got := s.share(map[string]any{"name": "first"}); !same(got, first) {
		t.Error("a value shared again in the older generation is not kept")
	}
	if n := len(s.cur) + len(s.prev); n > 2*maxSharedValues {
		t.Errorf("the table holds %d values, more than 2 × %d", n, maxSharedValues)
	}
}

// TestSharedValuesCollision checks that a value found under the hash of
// another is not returned for it.
func TestSharedValuesCollision(t *testing.T) {
	s := newSharedValues()
	v := map[string]any{"a": "x"}
	h, ok := s.hash(v)
	if !ok {
		t.Fatal("no hash")
	}
	other := map[string]any{"a": "y"}
	s.cur[h] = other
	if got := s.share(v); !same(got, v) {
		t.Errorf("share returned %v for %v", got, v)
	}
}

func TestSameEntries(t *testing.T) {
	child := map[string]any{"k": "v"}
	list := []any{"x"}
	for _, c := range []struct {
		name string
		a, b any
		want bool
	}{
		{"equal scalars", map[string]any{"s": "x", "i": int64(1), "f": 1.5, "b": true, "n": nil},
			map[string]any{"s": "x", "i": int64(1), "f": 1.5, "b": true, "n": nil}, true},
		{"the same children", []any{child, list, []any{}}, []any{child, list, []any{}}, true},
		{"equal children apart", []any{child}, []any{map[string]any{"k": "v"}}, false},
		{"a list and its prefix", []any{list}, []any{list[:0:0]}, false},
		{"int and float", []any{int64(1)}, []any{float64(1)}, false},
		{"a missing name", map[string]any{"a": nil}, map[string]any{"b": nil}, false},
		{"more entries", map[string]any{"a": nil}, map[string]any{"a": nil, "b": nil}, false},
		{"a map and a list", map[string]any{}, []any{}, false},
		{"a string and a map", []any{"x"}, []any{child}, false},
	} {
		if got := sameEntries(c.a, c.b); got != c.want {
			t.Errorf("%s: sameEntries = %v, want %v", c.name, got, c.want)
		}
	}
}

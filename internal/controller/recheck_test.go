package controller

import (
	"fmt"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/responsibility-operator/responsibility-operator/internal/evaluate"
	"github.com/responsibility-operator/responsibility-operator/internal/watch"
)

func TestNextCheck(t *testing.T) {
	gvk := schema.GroupVersionKind{Group: "example.com", Version: "v1", Kind: "Database"}
	now := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	const interval = 5 * time.Minute
	// Spread: 1,000 objects re-checked once each per interval, at points
	// spread over it (no tenth of the interval holds more than a fifth).
	buckets := make([]int, 10)
	for i := range 1000 {
		key := watch.Key{GVK: gvk, Namespace: "team", Name: fmt.Sprintf("db-%d", i)}
		wait := nextCheck(key, evaluate.Result{Recheck: interval}, now)
		if wait <= 0 || wait > interval {
			t.Fatalf("%s: next check in %s, want within (0, %s]", key, wait, interval)
		}
		// The same point in every interval.
		if again := nextCheck(key, evaluate.Result{Recheck: interval}, now.Add(wait)); again != interval {
			t.Fatalf("%s: checked at its point, next check in %s, want %s", key, again, interval)
		}
		buckets[int(wait*10/(interval+1))]++
	}
	for i, n := range buckets {
		if n > 200 {
			t.Errorf("%d of 1,000 re-checks fall in tenth %d of the interval", n, i)
		}
	}
	key := watch.Key{GVK: gvk, Namespace: "team", Name: "db"}
	tests := []struct {
		name string
		res  evaluate.Result
		want time.Duration
	}{
		{"nothing reads time", evaluate.Result{}, 0},
		{"a waiver expires", evaluate.Result{NextChange: now.Add(3 * time.Second)}, 3 * time.Second},
		{"a waiver expires before the re-check", evaluate.Result{Recheck: time.Hour, NextChange: now.Add(time.Second)}, time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := nextCheck(key, tt.res, now); got != tt.want {
				t.Errorf("nextCheck = %s, want %s", got, tt.want)
			}
		})
	}
}

// TestDueTimes: an evaluation counts as a re-check once its object's time
// has come, once; an earlier one (a watch event) does not, and an object
// with nothing to re-check is never due.
func TestDueTimes(t *testing.T) {
	key := watch.Key{GVK: schema.GroupVersionKind{Group: "example.com", Version: "v1", Kind: "Database"}, Namespace: "team", Name: "db"}
	now := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	var d dueTimes
	if d.reached(key, now) {
		t.Fatal("an object never evaluated is due")
	}
	d.set(key, now, time.Minute)
	steps := []struct {
		at   time.Duration
		want bool
	}{{30 * time.Second, false}, {time.Minute, true}, {time.Minute + time.Second, false}}
	for _, s := range steps {
		if got := d.reached(key, now.Add(s.at)); got != s.want {
			t.Errorf("at +%s: reached %v, want %v", s.at, got, s.want)
		}
	}
	d.set(key, now, time.Minute)
	d.set(key, now, 0)
	if d.reached(key, now.Add(time.Hour)) {
		t.Error("an object whose re-check was cancelled is due")
	}
}

package controller

import (
	"sort"
	"sync"

	"github.com/responsibility-operator/responsibility-operator/api/v1alpha1"
	"github.com/responsibility-operator/responsibility-operator/internal/evaluate"
)

// Tally counts, per model, the objects it matches and their duty states, for
// the model's status. It is kept in memory from the workload reconciler's
// results: every object is reconciled on start, so it rebuilds itself after
// a restart without reading anything back.
type Tally struct {
	mu       sync.Mutex
	objects  map[WorkloadKey]map[string]objectState
	counts   map[string]*modelCounts
	onChange func(model string)

	// metrics, when set, mirror the counts by kind and namespace; series
	// counts the objects behind each series so that an empty one is deleted.
	metrics *Metrics
	series  map[seriesKey]int32
}

// seriesKey names one series of responsibility_matched_objects (duty empty)
// or responsibility_duty_objects.
type seriesKey struct {
	model, kind, duty, state, namespace string
}

// objectState is what one object contributes to one model's counts.
type objectState struct {
	unmet  bool
	duties map[string]v1alpha1.DutyState
}

type modelCounts struct {
	matched int32
	unmet   int32
	duties  map[string]*v1alpha1.DutyStatus
}

// NewTally returns an empty tally that calls onChange (if not nil) with the
// name of every model whose counts change.
func NewTally(onChange func(model string)) *Tally {
	return &Tally{
		objects:  map[WorkloadKey]map[string]objectState{},
		counts:   map[string]*modelCounts{},
		onChange: onChange,
	}
}

// Record replaces what an object contributes with a new evaluation result.
func (t *Tally) Record(key WorkloadKey, res evaluate.Result) {
	next := make(map[string]objectState, len(res.Models))
	for _, m := range res.Models {
		next[m.Name] = objectState{duties: map[string]v1alpha1.DutyState{}}
	}
	for _, d := range res.Duties {
		st := next[d.Model]
		st.duties[d.Duty.Name] = d.State
		if d.State == v1alpha1.DutyUnmet {
			st.unmet = true
		}
		next[d.Model] = st
	}
	t.replace(key, next)
}

// Forget removes an object (deleted, or no longer watched).
func (t *Tally) Forget(key WorkloadKey) { t.replace(key, nil) }

func (t *Tally) replace(key WorkloadKey, next map[string]objectState) {
	var changed []string
	t.mu.Lock()
	prev := t.objects[key]
	for model, st := range prev {
		if n, ok := next[model]; ok && n.equal(st) {
			continue
		}
		t.add(model, key, st, -1)
		changed = append(changed, model)
	}
	for model, st := range next {
		if p, ok := prev[model]; ok && p.equal(st) {
			continue
		}
		t.add(model, key, st, +1)
		if _, seen := prev[model]; !seen {
			changed = append(changed, model)
		}
	}
	if len(next) == 0 {
		delete(t.objects, key)
	} else {
		t.objects[key] = next
	}
	t.mu.Unlock()
	if t.onChange != nil {
		for _, m := range changed {
			t.onChange(m)
		}
	}
}

// SetMetrics makes the tally mirror its counts into metrics.
func (t *Tally) SetMetrics(m *Metrics) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.metrics, t.series = m, map[seriesKey]int32{}
}

// Reset forgets every object, as when the manager stops: a stopped operator
// no longer vouches for any count.
func (t *Tally) Reset() {
	t.mu.Lock()
	keys := make([]WorkloadKey, 0, len(t.objects))
	for k := range t.objects {
		keys = append(keys, k)
	}
	t.mu.Unlock()
	for _, k := range keys {
		t.Forget(k)
	}
}

func (t *Tally) observe(sk seriesKey, delta int32) {
	if t.metrics == nil {
		return
	}
	n := t.series[sk] + delta
	switch {
	case sk.duty == "" && n == 0:
		t.metrics.MatchedObjects.DeleteLabelValues(sk.model, sk.kind)
	case sk.duty == "":
		t.metrics.MatchedObjects.WithLabelValues(sk.model, sk.kind).Set(float64(n))
	case n == 0:
		t.metrics.DutyObjects.DeleteLabelValues(sk.model, sk.duty, sk.state, sk.namespace)
	default:
		t.metrics.DutyObjects.WithLabelValues(sk.model, sk.duty, sk.state, sk.namespace).Set(float64(n))
	}
	if n == 0 {
		delete(t.series, sk)
	} else {
		t.series[sk] = n
	}
}

func (t *Tally) add(model string, key WorkloadKey, st objectState, delta int32) {
	t.observe(seriesKey{model: model, kind: key.GVK.Kind}, delta)
	for name, state := range st.duties {
		t.observe(seriesKey{model: model, duty: name, state: string(state), namespace: key.Namespace}, delta)
	}
	c := t.counts[model]
	if c == nil {
		c = &modelCounts{duties: map[string]*v1alpha1.DutyStatus{}}
		t.counts[model] = c
	}
	c.matched += delta
	if st.unmet {
		c.unmet += delta
	}
	for name, state := range st.duties {
		ds := c.duties[name]
		if ds == nil {
			ds = &v1alpha1.DutyStatus{Name: name}
			c.duties[name] = ds
		}
		switch state {
		case v1alpha1.DutyMet:
			ds.Met += delta
		case v1alpha1.DutyUnmet:
			ds.Unmet += delta
		case v1alpha1.DutyUnknown:
			ds.Unknown += delta
		case v1alpha1.DutyWaived:
			ds.Waived += delta
		}
		if *ds == (v1alpha1.DutyStatus{Name: name}) {
			delete(c.duties, name)
		}
	}
	if c.matched == 0 {
		delete(t.counts, model)
	}
}

// Counts returns a model's matched and unmet object counts and its per-duty
// counts sorted by duty name.
func (t *Tally) Counts(model string) (matched, unmet int32, duties []v1alpha1.DutyStatus) {
	t.mu.Lock()
	defer t.mu.Unlock()
	c := t.counts[model]
	if c == nil {
		return 0, 0, nil
	}
	for _, ds := range c.duties {
		duties = append(duties, *ds)
	}
	sort.Slice(duties, func(i, j int) bool { return duties[i].Name < duties[j].Name })
	return c.matched, c.unmet, duties
}

func (s objectState) equal(o objectState) bool {
	if s.unmet != o.unmet || len(s.duties) != len(o.duties) {
		return false
	}
	for k, v := range s.duties {
		if o.duties[k] != v {
			return false
		}
	}
	return true
}

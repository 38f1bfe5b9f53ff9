package ledger

import (
	"fmt"
	"slices"
	"sort"
	"sync"

	"github.com/responsibility-operator/responsibility-operator/api/v1alpha1"
	"github.com/responsibility-operator/responsibility-operator/internal/evaluate"
	"github.com/responsibility-operator/responsibility-operator/internal/metrics"
	"github.com/responsibility-operator/responsibility-operator/internal/watch"
)

// Tally counts, per model, the objects it matches and their duty states, for
// the model's status. It is kept in memory from the workload reconciler's
// results: every object is reconciled on start, so it rebuilds itself after
// a restart without reading anything back.
type Tally struct {
	mu       sync.Mutex
	objects  map[watch.Key][]objectState
	counts   map[string]*modelCounts
	onChange func(model string)
	// failed holds the objects whose last write the API server refused,
	// with the models that match them and the error.
	failed map[watch.Key]failure

	// metrics, when set, mirror the counts by kind and namespace; series
	// counts the objects behind each series so that an empty one is deleted.
	metrics *metrics.Metrics
	series  map[seriesKey]int32
}

// seriesKey names one series of responsibility_matched_objects (duty empty)
// or responsibility_duty_objects.
type seriesKey struct {
	model, kind, duty, state, namespace string
}

// objectState is what one object contributes to one model's counts. The
// tally holds one per object and matching model, so it is kept small: the
// names are the compiled model's strings, and the duties a slice in the
// order of the evaluation result (by name).
type objectState struct {
	model  string
	unmet  bool
	duties []tallyDuty
}

type tallyDuty struct {
	name  string
	state v1alpha1.DutyState
}

type modelCounts struct {
	matched int32
	unmet   int32
	duties  map[string]*v1alpha1.DutyStatus
}

type failure struct {
	models []string
	err    string
}

// NewTally returns an empty tally that calls onChange (if not nil) with the
// name of every model whose counts change.
func NewTally(onChange func(model string)) *Tally {
	return &Tally{
		objects:  map[watch.Key][]objectState{},
		counts:   map[string]*modelCounts{},
		failed:   map[watch.Key]failure{},
		onChange: onChange,
	}
}

// Record replaces what an object contributes with a new evaluation result.
func (t *Tally) Record(key watch.Key, res evaluate.Result) {
	next := make([]objectState, len(res.Models))
	duties := make([]tallyDuty, len(res.Duties))
	d := 0
	for i, m := range res.Models {
		st := objectState{model: m.Name}
		first := d
		// res.Duties is sorted by model, as res.Models is.
		for ; d < len(res.Duties) && res.Duties[d].Model == m.Name; d++ {
			duties[d] = tallyDuty{name: res.Duties[d].Duty.Name, state: res.Duties[d].State}
			if res.Duties[d].State == v1alpha1.DutyUnmet {
				st.unmet = true
			}
		}
		st.duties = duties[first:d:d]
		next[i] = st
	}
	t.replace(key, next, true)
}

// Forget removes an object (deleted, or no longer watched).
func (t *Tally) Forget(key watch.Key) { t.replace(key, nil, true) }

// Failed records that the API server refused to write an object's
// annotations: its result is not what the object carries, so the object
// counts as failed for the models that match it (res.Models) instead of by
// its duty states.
func (t *Tally) Failed(key watch.Key, res evaluate.Result, err error) {
	models := make([]string, len(res.Models))
	for i, m := range res.Models {
		models[i] = m.Name
	}
	t.mu.Lock()
	prev, had := t.failed[key]
	t.failed[key] = failure{models: models, err: err.Error()}
	t.mu.Unlock()
	// What the object carried until now no longer counts.
	t.replace(key, nil, false)
	if t.onChange != nil && (!had || !slices.Equal(prev.models, models)) {
		for _, m := range append(prev.models, models...) {
			t.onChange(m)
		}
	}
}

// Failures returns how many objects matched by a model could not be
// written, and one of them with its error, the same one every time while
// it fails (the first in key order).
func (t *Tally) Failures(model string) (n int32, example string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	var first *watch.Key
	for key, f := range t.failed {
		if !slices.Contains(f.models, model) {
			continue
		}
		n++
		if first == nil || key.String() < first.String() {
			k := key
			first = &k
		}
	}
	if first != nil {
		example = fmt.Sprintf("%s: %s", first, t.failed[*first].err)
	}
	return n, example
}

// replace sets what an object contributes to the counts; recovered also
// drops its failure, if it had one (it was written since, or it is gone).
func (t *Tally) replace(key watch.Key, next []objectState, recovered bool) {
	var changed []string
	t.mu.Lock()
	if f, ok := t.failed[key]; ok && recovered {
		delete(t.failed, key)
		changed = append(changed, f.models...)
	}
	prev := t.objects[key]
	for _, st := range prev {
		if n, ok := find(next, st.model); ok && n.equal(st) {
			continue
		}
		t.add(key, st, -1)
		changed = append(changed, st.model)
	}
	for _, st := range next {
		p, seen := find(prev, st.model)
		if seen && p.equal(st) {
			continue
		}
		t.add(key, st, +1)
		if !seen {
			changed = append(changed, st.model)
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

func find(states []objectState, model string) (objectState, bool) {
	for _, st := range states {
		if st.model == model {
			return st, true
		}
	}
	return objectState{}, false
}

// SetMetrics makes the tally mirror its counts into metrics.
func (t *Tally) SetMetrics(m *metrics.Metrics) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.metrics, t.series = m, map[seriesKey]int32{}
}

// Reset forgets every object, as when the manager stops: a stopped operator
// no longer vouches for any count.
func (t *Tally) Reset() {
	t.mu.Lock()
	keys := make([]watch.Key, 0, len(t.objects)+len(t.failed))
	for k := range t.objects {
		keys = append(keys, k)
	}
	for k := range t.failed {
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

func (t *Tally) add(key watch.Key, st objectState, delta int32) {
	model := st.model
	t.observe(seriesKey{model: model, kind: key.GVK.Kind}, delta)
	for _, d := range st.duties {
		t.observe(seriesKey{model: model, duty: d.name, state: string(d.state), namespace: key.Namespace}, delta)
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
	for _, d := range st.duties {
		name, state := d.name, d.state
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
	return s.model == o.model && s.unmet == o.unmet && slices.Equal(s.duties, o.duties)
}

package ledger

import (
	"errors"
	"maps"
	"slices"
	"testing"

	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/responsibility-operator/responsibility-operator/api/v1alpha1"
	"github.com/responsibility-operator/responsibility-operator/internal/evaluate"
	"github.com/responsibility-operator/responsibility-operator/internal/watch"
)

// tallyResult builds an evaluation result from model → duty → state, in the
// order the evaluator returns them (models, then duties, by name).
func tallyResult(states map[string]map[string]v1alpha1.DutyState) evaluate.Result {
	var res evaluate.Result
	for _, model := range slices.Sorted(maps.Keys(states)) {
		res.Models = append(res.Models, &evaluate.Model{Name: model})
		for _, duty := range slices.Sorted(maps.Keys(states[model])) {
			res.Duties = append(res.Duties, evaluate.DutyResult{Model: model, Duty: &evaluate.Duty{Name: duty}, State: states[model][duty]})
		}
	}
	return res
}

func TestTally(t *testing.T) {
	gvk := schema.GroupVersionKind{Group: "example.com", Version: "v1", Kind: "Database"}
	a := watch.Key{GVK: gvk, Namespace: "team-a", Name: "a"}
	b := watch.Key{GVK: gvk, Namespace: "team-a", Name: "b"}
	met, unmet := v1alpha1.DutyMet, v1alpha1.DutyUnmet

	type count struct {
		matched, unmet int32
		duties         []v1alpha1.DutyStatus
	}
	type step struct {
		key    watch.Key
		states map[string]map[string]v1alpha1.DutyState // nil: Forget
		// changed are the models whose counts the step changes.
		changed []string
		want    map[string]count
	}
	tests := []struct {
		name  string
		steps []step
	}{{
		name: "two objects, one turns unmet, then is forgotten",
		steps: []step{{
			key:     a,
			states:  map[string]map[string]v1alpha1.DutyState{"db": {"tls": met, "backups": met}},
			changed: []string{"db"},
			want:    map[string]count{"db": {1, 0, []v1alpha1.DutyStatus{{Name: "backups", Met: 1}, {Name: "tls", Met: 1}}}},
		}, {
			key:     b,
			states:  map[string]map[string]v1alpha1.DutyState{"db": {"tls": met, "backups": met}},
			changed: []string{"db"},
			want:    map[string]count{"db": {2, 0, []v1alpha1.DutyStatus{{Name: "backups", Met: 2}, {Name: "tls", Met: 2}}}},
		}, {
			key:     b,
			states:  map[string]map[string]v1alpha1.DutyState{"db": {"tls": unmet, "backups": met}},
			changed: []string{"db"},
			want:    map[string]count{"db": {2, 1, []v1alpha1.DutyStatus{{Name: "backups", Met: 2}, {Name: "tls", Met: 1, Unmet: 1}}}},
		}, {
			key:    b,
			states: map[string]map[string]v1alpha1.DutyState{"db": {"tls": unmet, "backups": met}},
			// The same result again changes nothing.
			want: map[string]count{"db": {2, 1, []v1alpha1.DutyStatus{{Name: "backups", Met: 2}, {Name: "tls", Met: 1, Unmet: 1}}}},
		}, {
			key:     b,
			changed: []string{"db"},
			want:    map[string]count{"db": {1, 0, []v1alpha1.DutyStatus{{Name: "backups", Met: 1}, {Name: "tls", Met: 1}}}},
		}, {
			key:     a,
			changed: []string{"db"},
			want:    map[string]count{"db": {}},
		}},
	}, {
		name: "an object moves from one model to two, then to the other",
		steps: []step{{
			key:     a,
			states:  map[string]map[string]v1alpha1.DutyState{"db": {"tls": met}},
			changed: []string{"db"},
			want:    map[string]count{"db": {1, 0, []v1alpha1.DutyStatus{{Name: "tls", Met: 1}}}, "vm": {}},
		}, {
			key:     a,
			states:  map[string]map[string]v1alpha1.DutyState{"db": {"tls": met}, "vm": {"tls": unmet, "limits": v1alpha1.DutyWaived}},
			changed: []string{"vm"},
			want: map[string]count{
				"db": {1, 0, []v1alpha1.DutyStatus{{Name: "tls", Met: 1}}},
				"vm": {1, 1, []v1alpha1.DutyStatus{{Name: "limits", Waived: 1}, {Name: "tls", Unmet: 1}}},
			},
		}, {
			key:     a,
			states:  map[string]map[string]v1alpha1.DutyState{"vm": {"tls": met, "limits": v1alpha1.DutyUnknown}},
			changed: []string{"db", "vm"},
			want: map[string]count{
				"db": {},
				"vm": {1, 0, []v1alpha1.DutyStatus{{Name: "limits", Unknown: 1}, {Name: "tls", Met: 1}}},
			},
		}, {
			// A duty changes state without the object turning unmet.
			key:     a,
			states:  map[string]map[string]v1alpha1.DutyState{"vm": {"tls": met, "limits": v1alpha1.DutyWaived}},
			changed: []string{"vm"},
			want:    map[string]count{"vm": {1, 0, []v1alpha1.DutyStatus{{Name: "limits", Waived: 1}, {Name: "tls", Met: 1}}}},
		}, {
			// A model without duties still counts the object as matched.
			key:     b,
			states:  map[string]map[string]v1alpha1.DutyState{"empty": {}},
			changed: []string{"empty"},
			want:    map[string]count{"empty": {1, 0, nil}},
		}},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var changed []string
			tally := NewTally(func(model string) { changed = append(changed, model) })
			for i, s := range tt.steps {
				changed = nil
				if s.states == nil {
					tally.Forget(s.key)
				} else {
					tally.Record(s.key, tallyResult(s.states))
				}
				slices.Sort(changed)
				if !slices.Equal(changed, s.changed) {
					t.Errorf("step %d: changed models %v, want %v", i, changed, s.changed)
				}
				for model, want := range s.want {
					matched, unmet, duties := tally.Counts(model)
					if matched != want.matched || unmet != want.unmet || !slices.Equal(duties, want.duties) {
						t.Errorf("step %d: %s counts %d matched, %d unmet, %+v; want %d, %d, %+v",
							i, model, matched, unmet, duties, want.matched, want.unmet, want.duties)
					}
				}
			}
		})
	}
}

func TestTallyFailures(t *testing.T) {
	gvk := schema.GroupVersionKind{Group: "example.com", Version: "v1", Kind: "Database"}
	a := watch.Key{GVK: gvk, Namespace: "team-a", Name: "a"}
	b := watch.Key{GVK: gvk, Namespace: "team-b", Name: "b"}
	states := map[string]map[string]v1alpha1.DutyState{"db": {"tls": v1alpha1.DutyMet}, "ops": {"alerts": v1alpha1.DutyUnmet}}
	var changed []string
	tally := NewTally(func(model string) { changed = append(changed, model) })
	check := func(step string, model string, matched, failed int32, example string) {
		t.Helper()
		m, _, _ := tally.Counts(model)
		n, ex := tally.Failures(model)
		if m != matched || n != failed || ex != example {
			t.Errorf("%s: %s matched %d, failed %d (%q); want %d, %d (%q)", step, model, m, n, ex, matched, failed, example)
		}
	}

	tally.Record(a, tallyResult(states))
	tally.Record(b, tallyResult(states))
	changed = nil
	tally.Failed(b, tallyResult(states), errors.New("too large"))
	check("b refused", "db", 1, 1, "Database/team-b/b: too large")
	check("b refused", "ops", 1, 1, "Database/team-b/b: too large")
	if want := []string{"db", "ops"}; !slices.Equal(sortedUnique(changed), want) {
		t.Errorf("b refused: changed %v, want %v", changed, want)
	}

	tally.Failed(a, tallyResult(map[string]map[string]v1alpha1.DutyState{"db": {"tls": v1alpha1.DutyMet}}), errors.New("denied"))
	check("a refused too", "db", 0, 2, "Database/team-a/a: denied")
	check("a refused too", "ops", 0, 1, "Database/team-b/b: too large")

	tally.Record(a, tallyResult(states))
	check("a written", "db", 1, 1, "Database/team-b/b: too large")
	tally.Forget(b)
	check("b deleted", "db", 1, 0, "")
	check("b deleted", "ops", 1, 0, "")
	tally.Failed(b, tallyResult(states), errors.New("too large"))
	tally.Reset()
	check("reset", "db", 0, 0, "")
}

func sortedUnique(s []string) []string {
	out := slices.Clone(s)
	slices.Sort(out)
	return slices.Compact(out)
}

package controller

import (
	"maps"
	"slices"
	"testing"

	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/responsibility-operator/responsibility-operator/api/v1alpha1"
	"github.com/responsibility-operator/responsibility-operator/internal/evaluate"
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
	a := WorkloadKey{GVK: gvk, Namespace: "team-a", Name: "a"}
	b := WorkloadKey{GVK: gvk, Namespace: "team-a", Name: "b"}
	met, unmet := v1alpha1.DutyMet, v1alpha1.DutyUnmet

	type count struct {
		matched, unmet int32
		duties         []v1alpha1.DutyStatus
	}
	type step struct {
		key    WorkloadKey
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

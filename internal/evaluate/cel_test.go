package evaluate

import (
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/responsibility-operator/responsibility-operator/api/v1alpha1"
)

// TestUntrackedEnvMatches guards untrackedEnv, which copies the list of
// libraries of the Kubernetes environment: after a Kubernetes upgrade the two
// must still declare the same functions with the same overloads, or a rule
// planned without the cost tracker would miss a function.
func TestUntrackedEnvMatches(t *testing.T) {
	envs, err := ruleEnv([]string{"schedules"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	overloads := func(fns map[string][]string, name string) string { return strings.Join(fns[name], " ") }
	collect := func(which string) map[string][]string {
		env := envs.checked
		if which == "untracked" {
			env = envs.untracked
		}
		out := map[string][]string{}
		for name, fn := range env.Functions() {
			for _, o := range fn.OverloadDecls() {
				out[name] = append(out[name], o.ID())
			}
			slices.Sort(out[name])
		}
		return out
	}
	checked, untracked := collect("checked"), collect("untracked")
	for name := range checked {
		if overloads(checked, name) != overloads(untracked, name) {
			t.Errorf("function %s: the Kubernetes environment has overloads [%s], the untracked one [%s]",
				name, overloads(checked, name), overloads(untracked, name))
		}
	}
	for name := range untracked {
		if _, ok := checked[name]; !ok {
			t.Errorf("function %s is only in the untracked environment", name)
		}
	}
}

// TestProgramChoice checks which rules run without the cost tracker: those
// whose cost is bounded whatever the input always, those whose cost grows
// with the related lists or with what they read of the object only while
// those are short, the rest never.
func TestProgramChoice(t *testing.T) {
	pgHBA := func(n int) map[string]any {
		// The worst case the bound allows: n rules of n characters.
		rules := make([]any, n)
		for i := range rules {
			rules[i] = strings.Repeat(" ", n-1) + "h"
		}
		return map[string]any{"spec": map[string]any{"postgresql": map[string]any{"pg_hba": rules}}}
	}
	description := func(n int) map[string]any {
		return map[string]any{"spec": map[string]any{"description": strings.Repeat("d", n)}}
	}
	cases := []struct {
		rule string
		// upTo is the longest related list the untracked program may run on:
		// 0 for never, math.MaxInt for always.
		upTo int
		// objectItems is the longest string or list read of the object the
		// untracked program may run on (0 for any), and object builds an
		// object whose value read is n long.
		objectItems int
		object      func(n int) map[string]any
	}{
		{rule: `object.spec.instances >= 2`, upTo: math.MaxInt},
		{rule: `object.spec.?postgresql.?parameters.?ssl_min_protocol_version.orValue("") in ["TLSv1.2", "TLSv1.3"]`, upTo: math.MaxInt},
		{rule: `quantity(object.spec.resources.limits.memory).compareTo(quantity("256Mi")) >= 0`, upTo: math.MaxInt},
		{rule: `namespaceObject.metadata.labels.tenant == object.metadata.labels.tenant`, upTo: math.MaxInt},
		{rule: backupRule, upTo: 1000},
		// Names are short; two strings of up to 3 MiB each cost too much
		// to compare even ten times.
		{rule: `related.schedules.exists(s, related.schedules.exists(t, s.metadata.name == t.metadata.name))`, upTo: 100},
		{rule: `related.schedules.exists(s, s.spec.cluster.name == object.spec.description)`, upTo: 100, objectItems: 64 << 10, object: description},
		// The optional chain is followed to the list it walks.
		{rule: `object.spec.?postgresql.?pg_hba.orValue([]).exists(r, r.trim().startsWith("host "))`, upTo: math.MaxInt, objectItems: 1 << 10, object: pgHBA},
		{rule: `object.spec.postgresql.pg_hba.exists(r, r.trim().startsWith("host "))`, upTo: math.MaxInt, objectItems: 1 << 10, object: pgHBA},
		// A default with something inside could be walked instead.
		{rule: `object.spec.?postgresql.?pg_hba.orValue(["host all"]).exists(r, r.trim().startsWith("host "))`},
		// Joined strings are longer than any string of the object.
		{rule: `related.schedules.map(s, s.spec.cluster.name).join(",").contains(object.metadata.name)`},
		// A rule that reads the whole object would have it measured on
		// every evaluation.
		{rule: `object.all(k, k.size() < 300)`},
	}
	for _, c := range cases {
		t.Run(c.rule, func(t *testing.T) {
			m := mustCompile(t, model("m", func(rm *v1alpha1.ResponsibilityModel) {
				rm.Spec.Areas[1].Duties[0].Rule = c.rule
			}))
			p := m.Duties[1].rule
			if p.tracked == nil {
				t.Fatal("no tracked program")
			}
			if got := p.untrackedUpTo; got != c.upTo || (p.untracked == nil) != (c.upTo == 0) {
				t.Fatalf("untracked program for related lists up to %d long (present: %v), want up to %d",
					got, p.untracked != nil, c.upTo)
			}
			if p.untrackedObjectItems != c.objectItems {
				t.Fatalf("untracked program for object values up to %d long, want up to %d", p.untrackedObjectItems, c.objectItems)
			}
			if c.upTo == 0 {
				return
			}
			if c.upTo != math.MaxInt {
				if p.pick(&activation{relatedItems: c.upTo}) != p.untracked {
					t.Errorf("%d related objects: the tracked program runs, want the untracked one", c.upTo)
				}
				if p.pick(&activation{relatedItems: c.upTo + 1}) != p.tracked {
					t.Errorf("%d related objects: the untracked program runs, want the tracked one", c.upTo+1)
				}
			}
			if c.objectItems != 0 {
				if p.pick(&activation{object: c.object(c.objectItems)}) != p.untracked {
					t.Errorf("object value %d long: the tracked program runs, want the untracked one", c.objectItems)
				}
				if p.pick(&activation{object: c.object(c.objectItems + 1)}) != p.tracked {
					t.Errorf("object value %d long: the untracked program runs, want the tracked one", c.objectItems+1)
				}
				typed := map[string]any{"spec": map[string]any{"postgresql": map[string]any{"pg_hba": []string{"host"}}, "description": []string{"d"}}}
				if p.pick(&activation{object: typed}) != p.tracked {
					t.Error("a typed list, which fitsObject does not measure: the untracked program runs, want the tracked one")
				}
				_, details, err := p.tracked.Eval(&activation{object: c.object(c.objectItems), related: map[string]any{"schedules": []any{}}})
				if err != nil {
					t.Fatalf("the largest object the untracked program may run on: %v", err)
				}
				if cost := *details.ActualCost(); cost > RuleCostLimit {
					t.Errorf("the largest object the untracked program may run on costs %d, over the limit of %d", cost, RuleCostLimit)
				}
			}
		})
	}
}

// TestLongRelatedListsStillStop runs a rule whose cost grows with the square
// of a related list: short lists run untracked, a long one runs into the
// limit and makes the duty Unknown, as before.
func TestLongRelatedListsStillStop(t *testing.T) {
	m := mustCompile(t, model("m", func(rm *v1alpha1.ResponsibilityModel) {
		rm.Spec.Areas[1].Duties[0].Rule = `related.schedules.exists(s, related.schedules.exists(t, s.metadata.name + "x" == t.metadata.name))`
	}))
	for _, n := range []int{3, 5000} {
		var schedules []map[string]any
		for i := range n {
			schedules = append(schedules, schedule(strings.Repeat("c", 200)+string(rune('a'+i%26))+strings.Repeat("x", i%7)))
		}
		in := Input{GVK: clusterGVK, Object: cluster("db", nil, map[string]any{"instances": int64(2)}, nil),
			Related: map[RelatedSource][]map[string]any{{GVK: backupGVK}: schedules}}
		res := Evaluate([]*Model{m}, in)
		var got DutyResult
		for _, d := range res.Duties {
			if d.Duty.Name == "backup-scheduled" {
				got = d
			}
		}
		want := v1alpha1.DutyUnmet
		if n > 10 {
			want = v1alpha1.DutyUnknown
		}
		if got.State != want || (want == v1alpha1.DutyUnknown && !strings.Contains(got.Message, "cost limit")) {
			t.Errorf("%d schedules: %s (%s), want %s", n, got.State, got.Message, want)
		}
	}
}

// TestMeasuringStops: fitsObject visits at most maxMeasuredValues values.
// An object whose subtrees are shared (2^40 values to walk, which no
// decoded JSON has, but a caller's map may) does not fit at once, and the
// rule runs with the cost tracker. Fails, by timing out, if the walk is
// unbounded; found by FuzzCompileRule on a rule returning object.spec.
func TestMeasuringStops(t *testing.T) {
	nested := any("leaf")
	for range 40 {
		nested = map[string]any{"a": nested, "b": []any{nested}}
	}
	wide := make([]any, maxMeasuredValues)
	for i := range wide {
		wide[i] = int64(i)
	}
	tests := []struct {
		name string
		v    any
		want bool
	}{
		{name: "shared subtrees", v: map[string]any{"spec": nested}, want: false},
		{name: "more values than the budget", v: map[string]any{"spec": map[string]any{"items": wide}}, want: false},
		{name: "within the budget", v: map[string]any{"spec": map[string]any{"items": wide[:maxMeasuredValues-4]}}, want: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := fitsObject(tt.v, AllFields(), math.MaxInt); got != tt.want {
				t.Errorf("fitsObject = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestCompilePanicIsAnError: cel-go v0.29.2's homogeneous-literal validator
// panics on an optional list element that is not of an optional type. A
// model is anyone's input, so the panic is that rule's compile error, and
// the webhook and the controller go on. Found by FuzzCompileRule.
func TestCompilePanicIsAnError(t *testing.T) {
	for _, rule := range []string{`[?object.spec].size() > 0`, `[?object.?a, ?object.b].exists(c, true)`} {
		_, err := Compile(model("m", func(rm *v1alpha1.ResponsibilityModel) {
			rm.Spec.Areas[1].Duties[0].Rule = rule
		}))
		if err == nil || !strings.Contains(err.Error(), "the CEL library failed on this expression") {
			t.Errorf("%s: error %v, want the CEL library's failure", rule, err)
		}
		if fes := FieldErrors(err); len(fes) != 1 || fes[0].Path != "spec.areas[1].duties[0].rule" {
			t.Errorf("%s: field errors %+v, want one on the rule", rule, fes)
		}
	}
}

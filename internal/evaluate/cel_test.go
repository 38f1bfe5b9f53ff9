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
	envs, err := ruleEnv([]string{"schedules"})
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
// with the related lists only while the lists are short, the rest never.
func TestProgramChoice(t *testing.T) {
	cases := []struct {
		rule string
		// upTo is the longest related list the untracked program may run on:
		// 0 for never, math.MaxInt for always.
		upTo int
	}{
		{`object.spec.instances >= 2`, math.MaxInt},
		{`object.spec.?postgresql.?parameters.?ssl_min_protocol_version.orValue("") in ["TLSv1.2", "TLSv1.3"]`, math.MaxInt},
		{`quantity(object.spec.resources.limits.memory).compareTo(quantity("256Mi")) >= 0`, math.MaxInt},
		{`namespaceObject.metadata.labels.tenant == object.metadata.labels.tenant`, math.MaxInt},
		{backupRule, 1000},
		// Names are short; two strings of up to 3 MiB each cost too much
		// to compare even ten times.
		{`related.schedules.exists(s, related.schedules.exists(t, s.metadata.name == t.metadata.name))`, 100},
		{`related.schedules.exists(s, s.spec.cluster.name == object.spec.description)`, 0},
		{`object.spec.?postgresql.?pg_hba.orValue([]).exists(r, r.trim().startsWith("host "))`, 0},
		{`related.schedules.map(s, s.spec.cluster.name).join(",").contains(object.metadata.name)`, 0},
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
			if c.upTo == 0 || c.upTo == math.MaxInt {
				return
			}
			if p.pick(&activation{relatedItems: c.upTo}) != p.untracked {
				t.Errorf("%d related objects: the tracked program runs, want the untracked one", c.upTo)
			}
			if p.pick(&activation{relatedItems: c.upTo + 1}) != p.tracked {
				t.Errorf("%d related objects: the untracked program runs, want the tracked one", c.upTo+1)
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

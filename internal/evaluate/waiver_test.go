package evaluate

import (
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/responsibility-operator/responsibility-operator/api/v1alpha1"
)

// dutyWaiver is a DutyWaiver of model m's duty d in team-a.
func dutyWaiver(name string, mutate ...func(*v1alpha1.DutyWaiver)) *v1alpha1.DutyWaiver {
	dw := &v1alpha1.DutyWaiver{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "team-a"},
		Spec: v1alpha1.DutyWaiverSpec{
			Model: "m", Duties: []string{"d"}, Objects: v1alpha1.WaiverObjects{Names: []string{"db"}},
			Reason: "TLS terminated by the mesh", Ticket: "SEC-1",
			GrantedBy: &v1alpha1.WaiverGrant{User: "alice"},
		},
	}
	for _, m := range mutate {
		m(dw)
	}
	return dw
}

func mustCompileWaiver(t *testing.T, dw *v1alpha1.DutyWaiver) *Waiver {
	t.Helper()
	w, err := CompileWaiver(dw)
	if err != nil {
		t.Fatalf("compile waiver: %v", err)
	}
	return w
}

func TestDutyWaivers(t *testing.T) {
	now := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	expires := func(d time.Duration) func(*v1alpha1.DutyWaiver) {
		return func(dw *v1alpha1.DutyWaiver) { dw.Spec.Expires = &metav1.Time{Time: now.Add(d)} }
	}
	tests := []struct {
		name        string
		policy      v1alpha1.WaiverPolicy
		expiry      *v1alpha1.WaiverExpiry
		waivers     []*v1alpha1.DutyWaiver
		labels      map[string]any
		annotations map[string]any
		spec        map[string]any
		wantState   v1alpha1.DutyState
		wantWaiver  string
		wantMessage string // substring
		wantNext    time.Duration
	}{
		{name: "by name", waivers: []*v1alpha1.DutyWaiver{dutyWaiver("w")}, wantState: v1alpha1.DutyWaived, wantWaiver: "w",
			wantMessage: "waived by DutyWaiver w (ticket SEC-1, granted by alice): TLS terminated by the mesh"},
		{name: "another object's name", waivers: []*v1alpha1.DutyWaiver{dutyWaiver("w", func(dw *v1alpha1.DutyWaiver) { dw.Spec.Objects.Names = []string{"other"} })}, wantState: v1alpha1.DutyUnmet},
		{name: "by label selector", labels: map[string]any{"tier": "dev"}, waivers: []*v1alpha1.DutyWaiver{dutyWaiver("w", func(dw *v1alpha1.DutyWaiver) {
			dw.Spec.Objects = v1alpha1.WaiverObjects{Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"tier": "dev"}}}
		})}, wantState: v1alpha1.DutyWaived, wantWaiver: "w"},
		{name: "label selector not matching", labels: map[string]any{"tier": "prod"}, waivers: []*v1alpha1.DutyWaiver{dutyWaiver("w", func(dw *v1alpha1.DutyWaiver) {
			dw.Spec.Objects = v1alpha1.WaiverObjects{Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"tier": "dev"}}}
		})}, wantState: v1alpha1.DutyUnmet},
		{name: "empty selector selects every object", waivers: []*v1alpha1.DutyWaiver{dutyWaiver("w", func(dw *v1alpha1.DutyWaiver) {
			dw.Spec.Objects = v1alpha1.WaiverObjects{Selector: &metav1.LabelSelector{}}
		})}, wantState: v1alpha1.DutyWaived, wantWaiver: "w"},
		{name: "another duty", waivers: []*v1alpha1.DutyWaiver{dutyWaiver("w", func(dw *v1alpha1.DutyWaiver) { dw.Spec.Duties = []string{"other"} })}, wantState: v1alpha1.DutyUnmet},
		{name: "another model", waivers: []*v1alpha1.DutyWaiver{dutyWaiver("w", func(dw *v1alpha1.DutyWaiver) { dw.Spec.Model = "other" })}, wantState: v1alpha1.DutyUnmet},
		{name: "met duty stays met", spec: map[string]any{"instances": int64(3)}, waivers: []*v1alpha1.DutyWaiver{dutyWaiver("w")}, wantState: v1alpha1.DutyMet},
		{name: "expires later: waived until then", waivers: []*v1alpha1.DutyWaiver{dutyWaiver("w", expires(time.Hour))}, wantState: v1alpha1.DutyWaived, wantWaiver: "w",
			wantMessage: "until 2026-12-03T13:00:00Z", wantNext: time.Hour},
		{name: "expired at this instant", waivers: []*v1alpha1.DutyWaiver{dutyWaiver("w", expires(0))}, wantState: v1alpha1.DutyUnmet},
		{name: "model accepts annotations only", policy: v1alpha1.WaiversAnnotations, waivers: []*v1alpha1.DutyWaiver{dutyWaiver("w")}, wantState: v1alpha1.DutyUnmet},
		{name: "model forbids waivers", policy: v1alpha1.WaiversForbidden, waivers: []*v1alpha1.DutyWaiver{dutyWaiver("w")}, wantState: v1alpha1.DutyUnmet},
		{name: "model accepts DutyWaivers only", policy: v1alpha1.WaiversDutyWaivers, waivers: []*v1alpha1.DutyWaiver{dutyWaiver("w")}, wantState: v1alpha1.DutyWaived, wantWaiver: "w"},
		{name: "annotation ignored when the model accepts DutyWaivers only", policy: v1alpha1.WaiversDutyWaivers,
			annotations: map[string]any{"responsibility.io/waive.d": "mine"}, wantState: v1alpha1.DutyUnmet},
		{name: "expiry required and missing", expiry: &v1alpha1.WaiverExpiry{Required: true}, waivers: []*v1alpha1.DutyWaiver{dutyWaiver("w")}, wantState: v1alpha1.DutyUnmet},
		{name: "too far ahead: applies once within the maximum", expiry: &v1alpha1.WaiverExpiry{MaxDuration: &metav1.Duration{Duration: time.Hour}},
			waivers: []*v1alpha1.DutyWaiver{dutyWaiver("w", expires(3*time.Hour))}, wantState: v1alpha1.DutyUnmet, wantNext: 2 * time.Hour},
		{name: "first applicable by name wins", waivers: []*v1alpha1.DutyWaiver{dutyWaiver("a", expires(0)), dutyWaiver("b")}, wantState: v1alpha1.DutyWaived, wantWaiver: "b"},
		{name: "DutyWaiver before annotation", annotations: map[string]any{"responsibility.io/waive.d": "mine"},
			waivers: []*v1alpha1.DutyWaiver{dutyWaiver("w")}, wantState: v1alpha1.DutyWaived, wantWaiver: "w"},
		{name: "annotation when no DutyWaiver applies", annotations: map[string]any{"responsibility.io/waive.d": "mine"},
			waivers: []*v1alpha1.DutyWaiver{dutyWaiver("w", expires(-time.Hour))}, wantState: v1alpha1.DutyWaived, wantMessage: "waived: mine"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := mustCompile(t, model("m", func(rm *v1alpha1.ResponsibilityModel) {
				rm.Spec.Waivers, rm.Spec.WaiverExpiry = tt.policy, tt.expiry
				rm.Spec.Areas = []v1alpha1.Area{{Name: "A", Provider: "p", Customer: "c", Duties: []v1alpha1.Duty{{
					Name: "d", Rule: replicaRule, Message: "Run two instances",
				}}}}
			}))
			var ws []*Waiver
			for _, dw := range tt.waivers {
				ws = append(ws, mustCompileWaiver(t, dw))
			}
			SortWaivers(ws)
			spec := tt.spec
			if spec == nil {
				spec = map[string]any{"instances": int64(1)}
			}
			res := Evaluate([]*Model{m}, Input{GVK: clusterGVK, Object: cluster("db", tt.labels, spec, tt.annotations), Namespace: namespace(nil), Now: now, Waivers: ws})
			got := res.Duties[0]
			if got.State != tt.wantState || got.Waiver != tt.wantWaiver {
				t.Errorf("state = %s by %q (%s), want %s by %q", got.State, got.Waiver, got.Message, tt.wantState, tt.wantWaiver)
			}
			if !strings.Contains(got.Message, tt.wantMessage) {
				t.Errorf("message = %q, want it to contain %q", got.Message, tt.wantMessage)
			}
			var next time.Duration
			if !res.NextChange.IsZero() {
				next = res.NextChange.Sub(now)
			}
			if next != tt.wantNext {
				t.Errorf("next change in %s, want %s", next, tt.wantNext)
			}
			duties := ParseDuties(res.Annotations[v1alpha1.AnnotationDuties])
			if a := duties["m"]["d"]; a.State != got.State || a.Waiver != got.Waiver || a.Message != got.Message {
				t.Errorf("duties annotation says %+v, the result %s by %q", a, got.State, got.Waiver)
			}
		})
	}
}

func TestJudgeWaiver(t *testing.T) {
	now := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	m := mustCompile(t, model("m", func(rm *v1alpha1.ResponsibilityModel) {
		rm.Spec.WaiverExpiry = &v1alpha1.WaiverExpiry{MaxDuration: &metav1.Duration{Duration: time.Hour}}
		rm.Spec.Areas = []v1alpha1.Area{{Name: "A", Provider: "p", Customer: "c", Duties: []v1alpha1.Duty{{Name: "d", Rule: replicaRule, Message: "x"}}}}
	}))
	forbidding := mustCompile(t, model("m", func(rm *v1alpha1.ResponsibilityModel) {
		rm.Spec.Waivers = v1alpha1.WaiversAnnotations
		rm.Spec.Areas = []v1alpha1.Area{{Name: "A", Provider: "p", Customer: "c", Duties: []v1alpha1.Duty{{Name: "d", Rule: replicaRule, Message: "x"}}}}
	}))
	at := func(d time.Duration) func(*v1alpha1.DutyWaiver) {
		return func(dw *v1alpha1.DutyWaiver) { dw.Spec.Expires = &metav1.Time{Time: now.Add(d)} }
	}
	tests := []struct {
		name        string
		model       *Model
		waiver      *v1alpha1.DutyWaiver
		wantReason  string
		wantMissing string
		wantExpired bool
		wantNext    time.Duration
	}{
		{name: "accepted", model: m, waiver: dutyWaiver("w", at(30*time.Minute)), wantNext: 30 * time.Minute},
		{name: "no model", waiver: dutyWaiver("w"), wantReason: v1alpha1.ReasonModelNotFound},
		{name: "missing duty", model: m, waiver: dutyWaiver("w", func(dw *v1alpha1.DutyWaiver) { dw.Spec.Duties = []string{"d", "nope"} }), wantMissing: "nope"},
		{name: "model does not accept DutyWaivers", model: forbidding, waiver: dutyWaiver("w"), wantReason: v1alpha1.ReasonWaiversNotAccepted},
		{name: "too far ahead", model: m, waiver: dutyWaiver("w", at(3*time.Hour)), wantReason: v1alpha1.ReasonExpiryNotAllowed, wantNext: 2 * time.Hour},
		{name: "expired", model: m, waiver: dutyWaiver("w", at(-time.Second)), wantExpired: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := Judge(tt.model, mustCompileWaiver(t, tt.waiver), now)
			if v.Reason != tt.wantReason || strings.Join(v.MissingDuties, ",") != tt.wantMissing || v.Expired != tt.wantExpired {
				t.Errorf("verdict = %+v, want reason %q, missing %q, expired %v", v, tt.wantReason, tt.wantMissing, tt.wantExpired)
			}
			var next time.Duration
			if !v.NextChange.IsZero() {
				next = v.NextChange.Sub(now)
			}
			if next != tt.wantNext {
				t.Errorf("next change in %s, want %s", next, tt.wantNext)
			}
		})
	}
}

func TestCompileWaiverRefusesABadSelector(t *testing.T) {
	dw := dutyWaiver("w", func(dw *v1alpha1.DutyWaiver) {
		dw.Spec.Objects = v1alpha1.WaiverObjects{Selector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "a", Operator: "Bogus"}}}}
	})
	if _, err := CompileWaiver(dw); err == nil || !strings.Contains(err.Error(), "spec.objects.selector") {
		t.Fatalf("err = %v, want a spec.objects.selector error", err)
	}
}

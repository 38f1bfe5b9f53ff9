package evaluate

import (
	"testing"
	"time"

	"github.com/responsibility-operator/responsibility-operator/api/v1alpha1"
)

func TestHoldEvents(t *testing.T) {
	created := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	end := created.Add(20 * time.Second)
	m := mustCompile(t, model("db"))
	unmet := Input{Object: cluster("orders", nil, map[string]any{}, nil), Now: created}
	met := Input{Object: cluster("orders", nil, map[string]any{"postgresql": map[string]any{"parameters": map[string]any{"ssl_min_protocol_version": "TLSv1.3"}}}, nil),
		Related: map[RelatedSource][]map[string]any{{GVK: backupGVK}: {schedule("orders")}}, Now: created}
	reported := `{"db":{"backup-scheduled":{"state":"Unmet","message":"x"},"tls-enforced":{"state":"Met"}}}`
	tests := []struct {
		name        string
		in          Input
		annotations map[string]string
		grace       time.Duration
		now         time.Time
		wantHeld    bool   // the result carries the annotation, until end
		wantPrev    string // the previous state of backup-scheduled
		transitions int    // reported when not held
	}{
		{name: "young and unmet: held", in: unmet, grace: 20 * time.Second, now: created.Add(time.Second), wantHeld: true},
		{name: "young and met: nothing to hold", in: met, grace: 20 * time.Second, now: created.Add(time.Second)},
		{name: "old: reported at once", in: unmet, grace: 20 * time.Second, now: end, transitions: 2},
		{name: "no grace", in: unmet, now: created.Add(time.Second), transitions: 2},
		{name: "reported before: compared with what it says", in: unmet, annotations: map[string]string{v1alpha1.AnnotationDuties: reported},
			grace: 20 * time.Second, now: end, wantPrev: "Unmet", transitions: 1},
		{name: "held: nothing reported yet", in: unmet, grace: 20 * time.Second, now: created.Add(5 * time.Second), wantHeld: true,
			annotations: map[string]string{v1alpha1.AnnotationDuties: reported, v1alpha1.AnnotationEventsHeldUntil: end.Format(time.RFC3339)}},
		{name: "the hold ends: every unmet duty is new", in: unmet, grace: 20 * time.Second, now: end, transitions: 2,
			annotations: map[string]string{v1alpha1.AnnotationDuties: reported, v1alpha1.AnnotationEventsHeldUntil: end.Format(time.RFC3339)}},
		{name: "a recorded hold runs to its end with the grace turned off", in: unmet, now: created.Add(5 * time.Second), wantHeld: true,
			annotations: map[string]string{v1alpha1.AnnotationDuties: reported, v1alpha1.AnnotationEventsHeldUntil: end.Format(time.RFC3339)}},
		{name: "met within the hold: released, no met again", in: met, grace: 20 * time.Second, now: created.Add(5 * time.Second),
			annotations: map[string]string{v1alpha1.AnnotationDuties: reported, v1alpha1.AnnotationEventsHeldUntil: end.Format(time.RFC3339)}},
		{name: "a forged hold is no hold", in: unmet, grace: 20 * time.Second, now: created.Add(5 * time.Second), wantHeld: true, wantPrev: "Unmet",
			annotations: map[string]string{v1alpha1.AnnotationDuties: reported, v1alpha1.AnnotationEventsHeldUntil: "soon"}},
		{name: "a forged hold on an old object", in: unmet, grace: 20 * time.Second, now: end, wantPrev: "Unmet", transitions: 1,
			annotations: map[string]string{v1alpha1.AnnotationDuties: reported, v1alpha1.AnnotationEventsHeldUntil: "soon"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := tt.in
			in.Now = tt.now
			res := Evaluate([]*Model{m}, in)
			hold := HoldEvents(&res, tt.annotations, created, tt.grace, tt.now)
			previous, until := hold.Reported(tt.annotations), hold.Until
			got, held := res.Annotations[v1alpha1.AnnotationEventsHeldUntil]
			if held != tt.wantHeld || held && (got != end.Format(time.RFC3339) || !until.Equal(end) || !res.NextChange.Equal(end)) || !held && !until.IsZero() {
				t.Errorf("held = %v (%q, until %v), want %v until %v", held, got, until, tt.wantHeld, end)
			}
			if p := previous["db"]["backup-scheduled"].State; string(p) != tt.wantPrev {
				t.Errorf("previous state %q, want %q", p, tt.wantPrev)
			}
			// What the caller reports: nothing while held, else the
			// transitions from the previous states.
			if held {
				return
			}
			if n := len(Transitions(previous, res)); n != tt.transitions {
				t.Errorf("%d transitions, want %d", n, tt.transitions)
			}
		})
	}
}

package evaluate

import (
	"time"

	"github.com/responsibility-operator/responsibility-operator/api/v1alpha1"
)

// EventHold is what the event grace period decides for one evaluation of
// an object (see HoldEvents).
type EventHold struct {
	// Held is whether the object's duty events were held until this
	// evaluation: nothing of its states has been reported yet.
	Held bool
	// Until is when the events held now are due; zero when none are.
	Until time.Time
}

// Reported is the duty states already reported, which Transitions
// compares a result with: none while or just after the object's events
// were held, else what its duties annotation says. It parses the annotation,
// so the caller asks only when the result differs from what the object
// carries (a resync or a restart needs no transition).
func (h EventHold) Reported(annotations map[string]string) map[string]map[string]DutyAnnotation {
	if h.Held {
		return nil
	}
	return ParseDuties(annotations[v1alpha1.AnnotationDuties])
}

// HoldEvents applies the event grace period to one evaluation of an object
// that carries annotations and was created at created.
//
// An object younger than grace whose result has an unmet duty gets its
// states written at once, but its duty events wait: res gains
// v1alpha1.AnnotationEventsHeldUntil (created + grace), Until is set, and
// the caller sends no duty event. Until that instant nothing of the object
// counts as reported, so a duty that turns met in the meantime (the
// ScheduledBackup applied a moment after its Cluster) raises neither a
// Warning nor a "met again". From that instant the reported states are none
// (Held): Transitions then finds each duty still unmet, its event is sent,
// and the write drops the annotation. Recorded on the object, the hold
// survives a restart or a change of leader; it costs one more write, at its
// end, for an object that is still unmet then.
//
// grace <= 0 holds nothing new; a hold already recorded runs to its end.
func HoldEvents(res *Result, annotations map[string]string, created time.Time, grace time.Duration, now time.Time) EventHold {
	var h EventHold
	var end time.Time
	if held, ok := annotations[v1alpha1.AnnotationEventsHeldUntil]; ok {
		// A value that does not parse is not the operator's: no hold.
		if t, err := time.Parse(time.RFC3339, held); err == nil {
			end, h.Held = t, true
		}
	}
	if !h.Held {
		if grace <= 0 || created.IsZero() {
			return h
		}
		end = created.Add(grace)
	}
	if len(res.Models) == 0 || !now.Before(end) {
		return h
	}
	for _, d := range res.Duties {
		if d.State == v1alpha1.DutyUnmet {
			res.Annotations[v1alpha1.AnnotationEventsHeldUntil] = end.UTC().Format(time.RFC3339)
			res.noteChange(end) // the result changes when the hold ends
			h.Until = end
			return h
		}
	}
	return h
}

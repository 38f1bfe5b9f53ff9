package evaluate

import (
	"time"

	"github.com/responsibility-operator/responsibility-operator/api/v1alpha1"
)

// HoldEvents applies the event grace period to one evaluation of an object
// that carries annotations and was created at created. It returns the duty
// states already reported, which Transitions compares the result with, and,
// while the object's events are held, until when (zero when they are not).
//
// An object younger than grace whose result has an unmet duty gets its
// states written at once, but its duty events wait: res gains
// v1alpha1.AnnotationEventsHeldUntil (created + grace), and the caller sends
// no duty event. Until that instant nothing of the object counts as
// reported, so a duty that turns met in the meantime (the ScheduledBackup
// applied a moment after its Cluster) raises neither a Warning nor a "met
// again". From that instant the reported states are none: Transitions then
// finds each duty still unmet, its event is sent, and the write drops the
// annotation. Recorded on the object, the hold survives a restart or a
// change of leader; it costs one more write, at its end, for an object that
// is still unmet then.
//
// grace <= 0 holds nothing new; a hold already recorded runs to its end.
func HoldEvents(res *Result, annotations map[string]string, created time.Time, grace time.Duration, now time.Time) (previous map[string]map[string]DutyAnnotation, until time.Time) {
	var end time.Time
	if held, ok := annotations[v1alpha1.AnnotationEventsHeldUntil]; ok {
		// A value that does not parse is not the operator's: no hold.
		if t, err := time.Parse(time.RFC3339, held); err == nil {
			end = t
		}
	}
	if !end.IsZero() {
		previous = map[string]map[string]DutyAnnotation{}
	} else {
		previous = ParseDuties(annotations[v1alpha1.AnnotationDuties])
		if grace <= 0 || created.IsZero() {
			return previous, time.Time{}
		}
		end = created.Add(grace)
	}
	if len(res.Models) == 0 {
		return previous, time.Time{}
	}
	if !now.Before(end) {
		return previous, time.Time{}
	}
	for _, d := range res.Duties {
		if d.State == v1alpha1.DutyUnmet {
			res.Annotations[v1alpha1.AnnotationEventsHeldUntil] = end.UTC().Format(time.RFC3339)
			res.noteChange(end) // the result changes when the hold ends
			return previous, end
		}
	}
	return previous, time.Time{}
}

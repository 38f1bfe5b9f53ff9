package controller

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/events"

	"github.com/responsibility-operator/responsibility-operator/api/v1alpha1"
	"github.com/responsibility-operator/responsibility-operator/internal/evaluate"
)

// Event actions (events.k8s.io/v1 requires one per event).
const (
	actionEvaluate = "Evaluate"
	actionApply    = "Apply"
	actionResolve  = "Resolve"
	actionCompile  = "Compile"
)

// EventEmitter writes the operator's events. Every message is a sentence
// that says what happened and what to do.
type EventEmitter struct {
	Recorder events.EventRecorder
	// Metrics, when set, count the events by reason and type.
	Metrics *Metrics
}

func (e *EventEmitter) emit(obj runtime.Object, related runtime.Object, eventType, reason, action, note string, args ...any) {
	e.Recorder.Eventf(obj, related, eventType, reason, action, note, args...)
	if e.Metrics != nil {
		e.Metrics.Events.WithLabelValues(reason, eventType).Inc()
	}
}

// dutyRef is the related object of a duty event: the model, with a field
// path naming the duty in the style of Pod events' spec.containers{name}.
// The field path also keeps the events of different duties apart: the
// events library merges events with the same regarding, related, reason
// and action into one series.
func dutyRef(model string, d *evaluate.Duty) *corev1.ObjectReference {
	return &corev1.ObjectReference{
		APIVersion: v1alpha1.GroupVersion.String(),
		Kind:       "ResponsibilityModel",
		Name:       model,
		FieldPath:  fmt.Sprintf("spec.areas{%s}.duties{%s}", d.Area, d.Name),
	}
}

// DutyTransition reports a duty that turned unmet or met again.
func (e *EventEmitter) DutyTransition(obj runtime.Object, t evaluate.Transition) {
	d := t.Duty
	if t.State == v1alpha1.DutyMet {
		e.emit(obj, dutyRef(t.Model, d), corev1.EventTypeNormal, v1alpha1.EventCustomerDutyMet, actionEvaluate,
			"Customer duty %s (%s, area %q) is met again.", d.Name, t.Model, d.Area)
		return
	}
	eventType := corev1.EventTypeWarning
	if d.Severity == v1alpha1.SeverityInfo {
		eventType = corev1.EventTypeNormal
	}
	e.emit(obj, dutyRef(t.Model, d), eventType, v1alpha1.EventCustomerDutyUnmet, actionEvaluate,
		"Customer duty %s (%s, area %q) is unmet: %s. Fix it, or waive it with the annotation %s%s: \"<reason>\".",
		d.Name, t.Model, d.Area, trimPeriod(t.Message), v1alpha1.AnnotationWaivePrefix, d.Name)
}

// WaiverIgnored reports a waiver annotation that has no effect.
func (e *EventEmitter) WaiverIgnored(obj runtime.Object, w evaluate.IgnoredWaiver) {
	e.emit(obj, nil, corev1.EventTypeWarning, v1alpha1.EventWaiverIgnored, actionEvaluate,
		"The annotation %s%s has no effect: %s. Remove it or fix the duty name.", v1alpha1.AnnotationWaivePrefix, w.Duty, w.Reason)
}

// ApplyFailed reports that the operator could not write its annotations.
func (e *EventEmitter) ApplyFailed(obj runtime.Object, err error) {
	e.emit(obj, nil, corev1.EventTypeWarning, v1alpha1.EventApplyFailed, actionApply,
		"Could not write the responsibility annotations: %v. The operator retries with backoff.", err)
}

// ModelProblem reports a model's own problem (reason is one of the model
// event reasons) on the model.
func (e *EventEmitter) ModelProblem(rm *v1alpha1.ResponsibilityModel, reason, action, message string) {
	e.emit(rm, nil, corev1.EventTypeWarning, reason, action, "%s", message)
}

func trimPeriod(s string) string {
	for len(s) > 0 && (s[len(s)-1] == '.' || s[len(s)-1] == ' ') {
		s = s[:len(s)-1]
	}
	return s
}

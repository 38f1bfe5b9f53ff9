package controller

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"os"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/responsibility-operator/responsibility-operator/api/v1alpha1"
	"github.com/responsibility-operator/responsibility-operator/internal/evaluate"
	"github.com/responsibility-operator/responsibility-operator/internal/metrics"
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
	// Recorder sends the events of problems (a refused write, a model that
	// does not compile), asynchronously.
	Recorder events.EventRecorder
	// Writer creates the events of duty transitions, synchronously (see
	// Transitions).
	Writer client.Writer
	// Metrics, when set, count the events by reason and type.
	Metrics *metrics.Metrics
	// instance is the reporting instance of the transition events: what
	// Recorder gives its own events.
	instance string
}

// NewEventEmitter returns an emitter whose problem events go through
// recorder and whose duty events are created through writer.
func NewEventEmitter(recorder events.EventRecorder, writer client.Writer, m *metrics.Metrics) *EventEmitter {
	hostname, _ := os.Hostname()
	return &EventEmitter{Recorder: recorder, Writer: writer, Metrics: m, instance: v1alpha1.FieldManager + "-" + hostname}
}

func (e *EventEmitter) emit(obj runtime.Object, related runtime.Object, eventType, reason, action, note string, args ...any) {
	e.Recorder.Eventf(obj, related, eventType, reason, action, note, args...)
	e.count(reason, eventType)
}

func (e *EventEmitter) count(reason, eventType string) {
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

// Transitions creates the events of one evaluation of obj: its duties that
// turned unmet or met again, and its waiver annotations that newly have no
// effect. It is called before the write that records the new states, and
// returns once every event is stored (or an error).
//
// Each event's name is derived from the object's UID and resourceVersion
// and from the transition, so the events of one evaluation of one version
// of an object are created at most once: a process that evaluates the same
// version again (its previous write never happened: a crash, a refused
// write) finds them stored (AlreadyExists) and sends none twice. Sent
// before the write, no event is lost on a crash either: once the write has
// happened, the object carries the new states and the transition is over.
func (e *EventEmitter) Transitions(ctx context.Context, obj *unstructured.Unstructured, transitions []evaluate.Transition, ignored []evaluate.IgnoredWaiver) error {
	if len(transitions)+len(ignored) == 0 {
		return nil
	}
	now := metav1.NewMicroTime(time.Now())
	regarding := corev1.ObjectReference{
		APIVersion: obj.GetAPIVersion(), Kind: obj.GetKind(), Namespace: obj.GetNamespace(), Name: obj.GetName(),
		UID: obj.GetUID(), ResourceVersion: obj.GetResourceVersion(),
	}
	evs := make([]*eventsv1.Event, 0, len(transitions)+len(ignored))
	for _, t := range transitions {
		evs = append(evs, e.event(regarding, now, dutyEvent(t), t.Model, t.Duty.Name, string(t.State)))
	}
	for _, w := range ignored {
		evs = append(evs, e.event(regarding, now, waiverEvent(w), "", w.Duty, "ignored"))
	}
	errs := make([]error, len(evs))
	var wg sync.WaitGroup
	for i, ev := range evs {
		wg.Go(func() {
			err := e.Writer.Create(ctx, ev)
			switch {
			case err == nil:
				e.count(ev.Reason, ev.Type)
			case apierrors.IsAlreadyExists(err):
				// Sent for this version before: by a process that stopped
				// before its write, or by this one before a refused write.
			default:
				errs[i] = fmt.Errorf("create event %s %s: %w", ev.Reason, ev.Name, err)
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// eventSpec is the content of one transition event.
type eventSpec struct {
	eventType, reason, note string
	related                 *corev1.ObjectReference
}

func dutyEvent(t evaluate.Transition) eventSpec {
	d := t.Duty
	if t.State == v1alpha1.DutyMet {
		return eventSpec{corev1.EventTypeNormal, v1alpha1.EventCustomerDutyMet,
			fmt.Sprintf("Customer duty %s (%s, area %q) is met again.", d.Name, t.Model, d.Area), dutyRef(t.Model, d)}
	}
	eventType := corev1.EventTypeWarning
	if d.Severity == v1alpha1.SeverityInfo {
		eventType = corev1.EventTypeNormal
	}
	return eventSpec{eventType, v1alpha1.EventCustomerDutyUnmet,
		fmt.Sprintf("Customer duty %s (%s, area %q) is unmet: %s. %s",
			d.Name, t.Model, d.Area, trimPeriod(t.Message), waiveAdvice(t)), dutyRef(t.Model, d)}
}

// waiveAdvice says how an unmet duty may be fixed or waived, as its model's
// spec.waivers allows.
func waiveAdvice(t evaluate.Transition) string {
	switch t.Waivers {
	case v1alpha1.WaiversDutyWaivers:
		return fmt.Sprintf("Fix it, or ask whoever grants exceptions for a DutyWaiver (model %s takes DutyWaivers only).", t.Model)
	case v1alpha1.WaiversForbidden:
		return fmt.Sprintf("Fix it: model %s accepts no waiver.", t.Model)
	}
	return fmt.Sprintf("Fix it, or waive it with the annotation %s%s: \"<reason>\".", v1alpha1.AnnotationWaivePrefix, t.Duty.Name)
}

func waiverEvent(w evaluate.IgnoredWaiver) eventSpec {
	return eventSpec{corev1.EventTypeWarning, v1alpha1.EventWaiverIgnored,
		fmt.Sprintf("The annotation %s%s has no effect: %s. Remove it or fix the duty name.", v1alpha1.AnnotationWaivePrefix, w.Duty, w.Reason), nil}
}

// maxEventObjectName leaves room in an event's name (at most 253
// characters) for the dot and the 16 hex digits after the object's name.
const maxEventObjectName = 253 - 17

// event builds one transition event the way the events library builds
// its own, but with a name that identifies the transition.
func (e *EventEmitter) event(regarding corev1.ObjectReference, now metav1.MicroTime, spec eventSpec, model, duty, state string) *eventsv1.Event {
	h := fnv.New64a()
	for _, part := range []string{string(regarding.UID), regarding.ResourceVersion, spec.reason, model, duty, state} {
		_, _ = h.Write([]byte(part))
		_, _ = h.Write([]byte{0})
	}
	name := regarding.Name
	if len(name) > maxEventObjectName {
		name = name[:maxEventObjectName]
	}
	namespace := regarding.Namespace
	if namespace == "" {
		namespace = metav1.NamespaceDefault
	}
	return &eventsv1.Event{
		ObjectMeta:          metav1.ObjectMeta{Name: fmt.Sprintf("%s.%016x", name, h.Sum64()), Namespace: namespace},
		EventTime:           now,
		ReportingController: v1alpha1.FieldManager,
		ReportingInstance:   e.instance,
		Action:              actionEvaluate,
		Reason:              spec.reason,
		Regarding:           regarding,
		Related:             spec.related,
		Note:                spec.note,
		Type:                spec.eventType,
	}
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

// WaiverEvent records a change of a DutyWaiver's verdict on the waiver.
func (e *EventEmitter) WaiverEvent(dw *v1alpha1.DutyWaiver, eventType, reason, message string) {
	e.emit(dw, nil, eventType, reason, actionEvaluate, "%s", message)
}

func trimPeriod(s string) string {
	for len(s) > 0 && (s[len(s)-1] == '.' || s[len(s)-1] == ' ') {
		s = s[:len(s)-1]
	}
	return s
}

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
	"k8s.io/apimachinery/pkg/types"
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
	// Reader reads the events of namespace findings back from the API
	// server (see namespaceFinding): they are not cached.
	Reader client.Reader
	// Metrics, when set, count the events by reason and type.
	Metrics *metrics.Metrics
	// instance is the reporting instance of the transition events: what
	// Recorder gives its own events.
	instance string
	// reported is, per namespace finding (findingEventName of its
	// unmet state), the state this process last reported or found
	// reported: the other objects of the namespace making the same
	// transition then need no API call.
	reported sync.Map
}

// NewEventEmitter returns an emitter whose problem events go through
// recorder and whose duty events are created through writer and, for the
// namespace's findings, read back through reader (the API server, not a
// cache).
func NewEventEmitter(recorder events.EventRecorder, reader client.Reader, writer client.Writer, m *metrics.Metrics) *EventEmitter {
	hostname, _ := os.Hostname()
	return &EventEmitter{Recorder: recorder, Reader: reader, Writer: writer, Metrics: m, instance: v1alpha1.FieldManager + "-" + hostname}
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
//
// A namespace-wide duty's transition is the namespace's, not the object's:
// it is reported once for the namespace (see namespaceFinding), whose UID
// nsUID is.
func (e *EventEmitter) Transitions(ctx context.Context, obj *unstructured.Unstructured, nsUID types.UID, transitions []evaluate.Transition, ignored []evaluate.IgnoredWaiver) error {
	if len(transitions)+len(ignored) == 0 {
		return nil
	}
	now := metav1.NewMicroTime(time.Now())
	regarding := corev1.ObjectReference{
		APIVersion: obj.GetAPIVersion(), Kind: obj.GetKind(), Namespace: obj.GetNamespace(), Name: obj.GetName(),
		UID: obj.GetUID(), ResourceVersion: obj.GetResourceVersion(),
	}
	evs := make([]*eventsv1.Event, 0, len(transitions)+len(ignored))
	var findings []evaluate.Transition
	for _, t := range transitions {
		if t.NamespaceWide {
			findings = append(findings, t)
			continue
		}
		evs = append(evs, e.event(regarding, now, dutyEvent(t), t.Model, t.Duty.Name, string(t.State)))
	}
	for _, w := range ignored {
		evs = append(evs, e.event(regarding, now, waiverEvent(w), "", w.Duty, "ignored"))
	}
	errs := make([]error, len(evs)+len(findings))
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
	for i, t := range findings {
		wg.Go(func() { errs[len(evs)+i] = e.namespaceFinding(ctx, obj.GetNamespace(), nsUID, now, t) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// findingAttempts bounds namespaceFinding's retries on a conflict with
// another worker recording the same finding.
const findingAttempts = 5

// namespaceFinding records a namespace-wide duty's transition, seen on one
// of the namespace's objects, as the namespace's finding: one event that
// regards the Namespace, stored in it (kubectl events -n NS lists it), for
// every object of the model there. Every object of the model in the
// namespace makes the same transition at about the same time (the duty's
// verdict depends on the namespace alone), and each of them calls this.
//
// The events are their own record of what was reported. Each (namespace,
// model, duty, state) has one event of a fixed name: the finding is
// reported in the current episode when the event of its state was observed
// last no earlier than the event of the other state (an Unmet finding
// reported after the last Met one). Otherwise this is a new episode: the
// event is created, or, when an earlier episode left it, its series counts
// one more occurrence (kubectl shows "x3 over 2h"; its note stays the first
// one's, as the API keeps an event's note). A conflict with another worker
// is read again. Being stored, the record holds across restarts and
// replicas; an event that expired (the API server's --event-ttl, 1h by
// default) reads as never reported.
func (e *EventEmitter) namespaceFinding(ctx context.Context, namespace string, nsUID types.UID, now metav1.MicroTime, t evaluate.Transition) error {
	spec := findingEvent(namespace, t)
	regarding := corev1.ObjectReference{APIVersion: "v1", Kind: "Namespace", Name: namespace, Namespace: namespace, UID: nsUID}
	other := v1alpha1.DutyUnmet
	if t.State == v1alpha1.DutyUnmet {
		other = v1alpha1.DutyMet
	}
	name := findingEventName(namespace, t.Model, t.Duty.Name, t.State)
	otherName := findingEventName(namespace, t.Model, t.Duty.Name, other)
	key := findingEventName(namespace, t.Model, t.Duty.Name, v1alpha1.DutyUnmet)
	if st, ok := e.reported.Load(key); ok && st == t.State {
		return nil // this process reported it, or found it reported
	}
	err := e.recordFinding(ctx, namespace, regarding, now, spec, t, name, otherName)
	if err == nil {
		e.reported.Store(key, t.State)
	}
	return err
}

// recordFinding is namespaceFinding's exchange with the API server.
func (e *EventEmitter) recordFinding(ctx context.Context, namespace string, regarding corev1.ObjectReference, now metav1.MicroTime,
	spec eventSpec, t evaluate.Transition, name, otherName string) error {
	for range findingAttempts {
		cur, err := e.getEvent(ctx, namespace, name)
		if err != nil {
			return err
		}
		if cur == nil {
			ev := e.event(regarding, now, spec, t.Model, t.Duty.Name, string(t.State))
			ev.Name = name
			switch err := e.Writer.Create(ctx, ev); {
			case err == nil:
				e.count(ev.Reason, ev.Type)
				return nil
			case apierrors.IsAlreadyExists(err):
				continue // another worker reported it: read it
			default:
				return fmt.Errorf("create event %s %s: %w", ev.Reason, name, err)
			}
		}
		prev, err := e.getEvent(ctx, namespace, otherName)
		if err != nil {
			return err
		}
		if prev == nil || !lastObserved(cur).Before(lastObserved(prev)) {
			return nil // reported in this episode
		}
		next := cur.DeepCopy()
		if next.Series == nil {
			next.Series = &eventsv1.EventSeries{Count: 1}
		}
		next.Series.Count++
		next.Series.LastObservedTime = now
		switch err := e.Writer.Patch(ctx, next, client.MergeFromWithOptions(cur, client.MergeFromWithOptimisticLock{})); {
		case err == nil:
			e.count(cur.Reason, cur.Type)
			return nil
		case apierrors.IsConflict(err):
			continue
		default:
			return fmt.Errorf("count event %s %s again: %w", cur.Reason, name, err)
		}
	}
	return fmt.Errorf("record the finding %s/%s of namespace %s: the event %s kept changing while it was updated", t.Model, t.Duty.Name, namespace, name)
}

// getEvent reads an event from the API server; nil when there is none.
func (e *EventEmitter) getEvent(ctx context.Context, namespace, name string) (*eventsv1.Event, error) {
	ev := &eventsv1.Event{}
	if err := e.Reader.Get(ctx, types.NamespacedName{Namespace: namespace, Name: name}, ev); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("get event %s/%s: %w", namespace, name, err)
	}
	return ev, nil
}

// lastObserved is when an event last occurred.
func lastObserved(ev *eventsv1.Event) time.Time {
	if ev.Series != nil {
		return ev.Series.LastObservedTime.Time
	}
	return ev.EventTime.Time
}

// findingEventName is the fixed name of the event of one state of one
// namespace-wide duty in one namespace.
func findingEventName(namespace, model, duty string, state v1alpha1.DutyState) string {
	h := fnv.New64a()
	for _, part := range []string{"namespace-finding", model, duty, string(state)} {
		_, _ = h.Write([]byte(part))
		_, _ = h.Write([]byte{0})
	}
	return fmt.Sprintf("%s.%016x", namespace, h.Sum64())
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

// findingEvent is dutyEvent for the namespace: the same reason, type and
// related duty, said of the namespace's objects.
func findingEvent(namespace string, t evaluate.Transition) eventSpec {
	spec := dutyEvent(t)
	d := t.Duty
	if t.State == v1alpha1.DutyMet {
		spec.note = fmt.Sprintf("Customer duty %s (%s, area %q) is met again in namespace %s, for every object of the model here.", d.Name, t.Model, d.Area, namespace)
		return spec
	}
	spec.note = fmt.Sprintf("Customer duty %s (%s, area %q) is unmet in namespace %s, for every object of the model here: %s. %s",
		d.Name, t.Model, d.Area, namespace, trimPeriod(t.Message), waiveAdvice(t))
	return spec
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

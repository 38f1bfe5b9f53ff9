package controller

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/responsibility-operator/responsibility-operator/api/v1alpha1"
	"github.com/responsibility-operator/responsibility-operator/internal/evaluate"
)

// eventCount counts the occurrences of events (an Event with a series stands
// for series.count occurrences).
func eventCount(events []eventsv1.Event) int {
	n := 0
	for _, e := range events {
		if e.Series != nil {
			n += int(e.Series.Count)
		} else {
			n++
		}
	}
	return n
}

// dutyState reads one duty's state from an object's duties annotation.
func dutyState(t *testing.T, obj *unstructured.Unstructured, model, duty string) v1alpha1.DutyState {
	t.Helper()
	duties := evaluate.ParseDuties(getObject(t, obj).GetAnnotations()[v1alpha1.AnnotationDuties])
	return duties[model][duty].State
}

func waitDutyState(t *testing.T, obj *unstructured.Unstructured, model, duty string, want v1alpha1.DutyState) {
	t.Helper()
	eventually(t, 20*time.Second, func() error {
		if got := dutyState(t, obj, model, duty); got != want {
			return fmt.Errorf("%s: duty %s/%s is %q, want %q", obj.GetName(), model, duty, got, want)
		}
		return nil
	})
}

// waitEvents waits until an object has exactly n occurrences of events with
// a reason, then checks for a while that no more arrive.
func waitEvents(t *testing.T, obj *unstructured.Unstructured, reason string, n int) []eventsv1.Event {
	t.Helper()
	count := func() error {
		if got := eventCount(eventsFor(t, obj, reason)); got != n {
			return fmt.Errorf("%s has %d %s events, want %d", obj.GetName(), got, reason, n)
		}
		return nil
	}
	eventually(t, 20*time.Second, count)
	consistently(t, time.Second, count)
	return eventsFor(t, obj, reason)
}

func scheduledBackup(t *testing.T, ns, name, cluster string) *unstructured.Unstructured {
	t.Helper()
	return createObject(t, cnpg, "ScheduledBackup", ns, name, nil, map[string]any{
		"schedule": "0 0 3 * * *",
		"cluster":  map[string]any{"name": cluster},
	})
}

// The scenario: a Cluster with no ScheduledBackup gets a Warning and
// the unmet annotation; creating the ScheduledBackup (a related object, not
// the Cluster) flips the duty to Met with one Normal event; a restart of the
// operator emits nothing new.
func TestDutyEventsFollowTransitionsOnly(t *testing.T) {
	stop := startManager(t)
	ns := newNamespace(t, map[string]string{"test": "events"})
	applyModel(t, dbModel("events-db", "events"))
	db := createObject(t, cnpg, "Cluster", ns, "orders", nil, tlsSpec())

	waitAnnotation(t, db, v1alpha1.AnnotationUnmet, "events-db/backup-scheduled", true)
	if got := getObject(t, db).GetLabels()[v1alpha1.LabelStatus]; got != v1alpha1.StatusUnmet {
		t.Errorf("status label = %q, want %q", got, v1alpha1.StatusUnmet)
	}
	warnings := waitEvents(t, db, v1alpha1.EventCustomerDutyUnmet, 1)
	w := warnings[0]
	if w.Type != corev1.EventTypeWarning {
		t.Errorf("event type = %q, want Warning", w.Type)
	}
	for _, want := range []string{"backup-scheduled", `area "Backups"`, "Create a ScheduledBackup", v1alpha1.AnnotationWaivePrefix + "backup-scheduled"} {
		if !strings.Contains(w.Note, want) {
			t.Errorf("event note %q does not contain %q", w.Note, want)
		}
	}
	if w.Related == nil || w.Related.Kind != "ResponsibilityModel" || w.Related.Name != "events-db" {
		t.Errorf("event related = %+v, want the model", w.Related)
	}
	if w.ReportingController != v1alpha1.FieldManager {
		t.Errorf("reporting controller = %q", w.ReportingController)
	}
	// The met duty (tls-enforced) was never unmet: no event for it.
	if n := eventCount(eventsFor(t, db, v1alpha1.EventCustomerDutyMet)); n != 0 {
		t.Errorf("%d CustomerDutyMet events for duties that were never unmet", n)
	}

	scheduledBackup(t, ns, "orders-nightly", "orders")
	waitDutyState(t, db, "events-db", "backup-scheduled", v1alpha1.DutyMet)
	waitAnnotation(t, db, v1alpha1.AnnotationUnmet, "", true)
	if got := getObject(t, db).GetLabels()[v1alpha1.LabelStatus]; got != v1alpha1.StatusMet {
		t.Errorf("status label = %q, want %q", got, v1alpha1.StatusMet)
	}
	met := waitEvents(t, db, v1alpha1.EventCustomerDutyMet, 1)
	if met[0].Type != corev1.EventTypeNormal {
		t.Errorf("met event type = %q, want Normal", met[0].Type)
	}

	// The previous state is the object's own annotation: a new manager
	// finds nothing changed and says nothing.
	stop()
	startManager(t)
	consistently(t, 3*time.Second, func() error {
		if n := eventCount(eventsFor(t, db, "")); n != 2 {
			return fmt.Errorf("after a restart the object has %d events, want the 2 from before", n)
		}
		return nil
	})

	// Deleting the related object turns the duty unmet again: one more Warning.
	sb := &unstructured.Unstructured{}
	sb.SetGroupVersionKind(schema.FromAPIVersionAndKind(cnpg, "ScheduledBackup"))
	sb.SetNamespace(ns)
	sb.SetName("orders-nightly")
	if err := k8s.Delete(context.Background(), sb); err != nil {
		t.Fatal(err)
	}
	waitDutyState(t, db, "events-db", "backup-scheduled", v1alpha1.DutyUnmet)
	waitEvents(t, db, v1alpha1.EventCustomerDutyUnmet, 2)
}

func TestWaivers(t *testing.T) {
	startManager(t)
	ns := newNamespace(t, map[string]string{"test": "waive"})
	rm := dbModel("waive-db", "waive")
	applyModel(t, rm)
	db := &unstructured.Unstructured{Object: map[string]any{"apiVersion": cnpg, "kind": "Cluster", "spec": tlsSpec()}}
	db.SetNamespace(ns)
	db.SetName("orders")
	db.SetAnnotations(map[string]string{
		v1alpha1.AnnotationWaivePrefix + "backup-scheduled": "restored nightly from Velero",
		v1alpha1.AnnotationWaivePrefix + "no-such-duty":     "typo",
	})
	if err := k8s.Create(context.Background(), db); err != nil {
		t.Fatal(err)
	}

	waitDutyState(t, db, "waive-db", "backup-scheduled", v1alpha1.DutyWaived)
	got := getObject(t, db)
	if s := got.GetLabels()[v1alpha1.LabelStatus]; s != v1alpha1.StatusMet {
		t.Errorf("status label of a waived object = %q, want %q", s, v1alpha1.StatusMet)
	}
	if ig := got.GetAnnotations()[v1alpha1.AnnotationIgnoredWaivers]; ig != "no-such-duty" {
		t.Errorf("ignored-waivers = %q, want no-such-duty", ig)
	}
	ignored := waitEvents(t, db, v1alpha1.EventWaiverIgnored, 1)
	if !strings.Contains(ignored[0].Note, "no-such-duty") {
		t.Errorf("WaiverIgnored note %q does not name the waiver", ignored[0].Note)
	}
	waitEvents(t, db, v1alpha1.EventCustomerDutyUnmet, 0)

	// A model that forbids waivers ignores them, says so, and warns.
	rm.Spec.Waivers = v1alpha1.WaiversForbidden
	applyModel(t, rm)
	waitDutyState(t, db, "waive-db", "backup-scheduled", v1alpha1.DutyUnmet)
	waitAnnotation(t, db, v1alpha1.AnnotationIgnoredWaivers, "backup-scheduled,no-such-duty", true)
	waitEvents(t, db, v1alpha1.EventCustomerDutyUnmet, 1)
	waitEvents(t, db, v1alpha1.EventWaiverIgnored, 2)

	// The tenant's waiver annotations are theirs: never removed.
	ann := getObject(t, db).GetAnnotations()
	if ann[v1alpha1.AnnotationWaivePrefix+"backup-scheduled"] == "" || ann[v1alpha1.AnnotationWaivePrefix+"no-such-duty"] == "" {
		t.Errorf("waiver annotations were touched: %v", ann)
	}
}

func TestNamespaceLabelChangeReevaluates(t *testing.T) {
	startManager(t)
	ns := newNamespace(t, map[string]string{"test": "ns-before"})
	applyModel(t, dbModel("nsfan-db", "ns-after"))
	db := createObject(t, cnpg, "Cluster", ns, "orders", nil, tlsSpec())
	consistently(t, time.Second, func() error {
		if keys := ownedKeys(getObject(t, db)); len(keys) > 0 {
			return fmt.Errorf("object in an unselected namespace got %v", keys)
		}
		return nil
	})

	nsObj := &corev1.Namespace{}
	if err := k8s.Get(context.Background(), client.ObjectKey{Name: ns}, nsObj); err != nil {
		t.Fatal(err)
	}
	nsObj.Labels["test"] = "ns-after"
	if err := k8s.Update(context.Background(), nsObj); err != nil {
		t.Fatal(err)
	}
	waitAnnotation(t, db, v1alpha1.AnnotationModels, "nsfan-db", true)

	nsObj.Labels["test"] = "ns-gone"
	if err := k8s.Update(context.Background(), nsObj); err != nil {
		t.Fatal(err)
	}
	waitAnnotation(t, db, v1alpha1.AnnotationModels, "", false)
}

func brokenRuleModel(name string) *v1alpha1.ResponsibilityModel {
	rm := dbModel(name, "broken")
	rm.Spec.Areas[0].Duties[0].Rule = `object.spec.instances >`
	return rm
}

func TestWebhookRefusesBrokenRules(t *testing.T) {
	startManager(t)
	ctx := context.Background()

	err := k8s.Create(ctx, brokenRuleModel("broken-create"))
	if !apierrors.IsInvalid(err) {
		t.Fatalf("create with a broken rule: err = %v, want Invalid", err)
	}
	for _, want := range []string{"spec.areas[0].duties[0].rule", "duty tls-enforced", "Syntax error", "<input>:1:"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}

	// A rule that does not return bool is refused too.
	nonBool := dbModel("broken-type", "broken")
	nonBool.Spec.Areas[0].Duties[0].Rule = `string(object.spec.instances)`
	if err := k8s.Create(ctx, nonBool); !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "bool") {
		t.Errorf("create with a non-bool rule: err = %v, want Invalid naming bool", err)
	}

	// A parameter a rule reads as a duration that is not one (Go durations
	// have no days) is refused at the parameter, naming the duty.
	badParam := recentBackupModel("broken-param", "broken", "7d")
	if err := k8s.Create(ctx, badParam); !apierrors.IsInvalid(err) ||
		!strings.Contains(err.Error(), "spec.parameters[0].value") || !strings.Contains(err.Error(), "duration(params.maxAge)") {
		t.Errorf("create with a parameter that is not a duration: err = %v, want Invalid at spec.parameters[0].value", err)
	}

	// An update that breaks a valid model is refused and the model stays as it was.
	applyModel(t, dbModel("broken-update", "broken"))
	for {
		cur := &v1alpha1.ResponsibilityModel{}
		if err := k8s.Get(ctx, client.ObjectKey{Name: "broken-update"}, cur); err != nil {
			t.Fatal(err)
		}
		cur.Spec.Areas[1].Duties[0].Rule = `related.nope.exists(s, true)`
		if err = k8s.Update(ctx, cur); !apierrors.IsConflict(err) {
			break // the controller adds its finalizer concurrently
		}
	}
	if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "spec.areas[1].duties[0].rule") {
		t.Fatalf("update with an undeclared related name: err = %v, want Invalid at spec.areas[1].duties[0].rule", err)
	}
}

// Without the webhook (not deployed, or a model stored before an upgrade),
// RulesValid is the second line of defence: the model reports the error and
// the last valid generation stays applied.
func TestRulesValidWithoutWebhook(t *testing.T) {
	ctx := context.Background()
	whc := &admissionregistrationv1.ValidatingWebhookConfigurationList{}
	if err := k8s.List(ctx, whc); err != nil {
		t.Fatal(err)
	}
	for i := range whc.Items {
		saved := whc.Items[i].DeepCopy()
		if err := k8s.Delete(ctx, &whc.Items[i]); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			saved.ResourceVersion, saved.UID = "", ""
			if err := k8s.Create(ctx, saved); err != nil {
				t.Errorf("restore webhook configuration: %v", err)
			}
		})
	}
	startManager(t)
	ns := newNamespace(t, map[string]string{"test": "rulesvalid"})
	rm := dbModel("rulesvalid-db", "rulesvalid")
	applyModel(t, rm)
	db := createObject(t, cnpg, "Cluster", ns, "orders", nil, tlsSpec())
	waitAnnotation(t, db, v1alpha1.AnnotationUnmet, "rulesvalid-db/backup-scheduled", true)
	before := getObject(t, db).GetAnnotations()

	rm.Spec.Service = "Renamed, but with a broken rule"
	rm.Spec.Areas[0].Duties[0].Rule = `object.spec.instances >`
	applyModel(t, rm)
	eventually(t, 10*time.Second, func() error {
		cur := &v1alpha1.ResponsibilityModel{}
		if err := k8s.Get(ctx, client.ObjectKey{Name: rm.Name}, cur); err != nil {
			return err
		}
		c := meta.FindStatusCondition(cur.Status.Conditions, v1alpha1.ConditionRulesValid)
		if c == nil || c.Status != metav1.ConditionFalse || c.Reason != v1alpha1.ReasonRuleInvalid {
			return fmt.Errorf("RulesValid = %+v, want False/%s", c, v1alpha1.ReasonRuleInvalid)
		}
		if !strings.Contains(c.Message, "spec.areas[0].duties[0].rule") {
			return fmt.Errorf("RulesValid message %q does not name the field", c.Message)
		}
		if ready := meta.FindStatusCondition(cur.Status.Conditions, v1alpha1.ConditionReady); ready == nil || ready.Status != metav1.ConditionFalse {
			return fmt.Errorf("Ready = %+v, want False", ready)
		}
		return nil
	})
	consistently(t, 2*time.Second, func() error {
		after := getObject(t, db).GetAnnotations()
		for _, k := range v1alpha1.OwnedAnnotations {
			if after[k] != before[k] {
				return fmt.Errorf("%s changed from %q to %q after an invalid edit", k, before[k], after[k])
			}
		}
		return nil
	})
}

// A duty may read related objects from one fixed namespace (Velero keeps its
// Schedules in "velero"); a change there re-evaluates the targets in every
// namespace.
func TestRelatedObjectsFromAFixedNamespace(t *testing.T) {
	startManager(t)
	ctx := context.Background()
	velero := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "velero"}}
	if err := k8s.Create(ctx, velero); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	ns := newNamespace(t, map[string]string{"test": "fixedns"})
	rm := dbModel("fixedns-db", "fixedns")
	rm.Spec.Areas[1].Duties[0] = v1alpha1.Duty{
		Name:    "backup-scheduled",
		Message: "Include the namespace in a Velero Schedule",
		Related: []v1alpha1.RelatedResource{{Name: "schedules", APIVersion: "velero.io/v1", Kind: "Schedule", Namespace: "velero"}},
		Rule: `related.schedules.exists(s, !s.spec.?paused.orValue(false) &&
			s.spec.template.?includedNamespaces.orValue([]).exists(n, n == object.metadata.namespace || n == "*"))`,
	}
	applyModel(t, rm)
	db := createObject(t, cnpg, "Cluster", ns, "orders", nil, tlsSpec())
	waitDutyState(t, db, "fixedns-db", "backup-scheduled", v1alpha1.DutyUnmet)

	// A Schedule in the workload's own namespace is not read.
	createObject(t, "velero.io/v1", "Schedule", ns, "local", nil, map[string]any{
		"schedule": "0 3 * * *", "template": map[string]any{"includedNamespaces": []any{ns}},
	})
	consistently(t, time.Second, func() error {
		if s := dutyState(t, db, "fixedns-db", "backup-scheduled"); s != v1alpha1.DutyUnmet {
			return fmt.Errorf("a Schedule outside the velero namespace made the duty %s", s)
		}
		return nil
	})

	sched := createObject(t, "velero.io/v1", "Schedule", "velero", "nightly-"+ns, nil, map[string]any{
		"schedule": "0 3 * * *", "template": map[string]any{"includedNamespaces": []any{ns}},
	})
	t.Cleanup(func() { _ = k8s.Delete(context.Background(), sched) })
	waitDutyState(t, db, "fixedns-db", "backup-scheduled", v1alpha1.DutyMet)
}

package controller

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/responsibility-operator/responsibility-operator/api/v1alpha1"
	"github.com/responsibility-operator/responsibility-operator/internal/evaluate"
)

// namespaceEvents lists the events that regard a Namespace, by reason.
func namespaceEvents(t *testing.T, ns, reason string) []eventsv1.Event {
	t.Helper()
	list := &eventsv1.EventList{}
	if err := k8s.List(context.Background(), list, client.InNamespace(ns)); err != nil {
		t.Fatalf("list events: %v", err)
	}
	var out []eventsv1.Event
	for _, e := range list.Items {
		if e.Regarding.Kind == "Namespace" && e.Regarding.Name == ns && e.Reason == reason {
			out = append(out, e)
		}
	}
	return out
}

// waitNamespaceEvents waits until a namespace has exactly n occurrences of
// events with a reason in one Event, then checks for a while that no more
// arrive.
func waitNamespaceEvents(t *testing.T, ns, reason string, n int) eventsv1.Event {
	t.Helper()
	count := func() error {
		evs := namespaceEvents(t, ns, reason)
		if got := eventCount(evs); got != n || len(evs) != 1 {
			return fmt.Errorf("namespace %s has %d %s events in %d Events, want %d in one", ns, got, reason, len(evs), n)
		}
		return nil
	}
	eventually(t, 20*time.Second, count)
	consistently(t, 2*time.Second, count)
	return namespaceEvents(t, ns, reason)[0]
}

// A namespace-wide duty (its rule reads the namespace's related objects and
// nothing of the workload but its namespace) is one finding of the
// namespace, however many workloads the model matches there: every
// workload's annotation carries the state, but the events regard the
// Namespace, one per state, and a finding that comes back counts in its
// event's series. Neither a new workload in an unmet namespace nor a restart
// reports it again. Fails if a workload gets an event of its own for the
// duty, if the namespace gets two Events for one finding, or if a finding
// that returns is not counted.
func TestNamespaceFindings(t *testing.T) {
	stop := startManager(t)
	ns := newNamespace(t, map[string]string{"test": "findings"})
	rm := dbModel("findings-db", "findings")
	rm.Spec.Areas[1].Duties[0] = v1alpha1.Duty{
		Name: "backups-in-namespace", Message: "Create a ScheduledBackup",
		Rule:              `related.schedules.size() > 0`,
		MessageExpression: `"No ScheduledBackup in namespace " + object.metadata.namespace`,
		Related:           []v1alpha1.RelatedResource{{Name: "schedules", APIVersion: cnpg, Kind: "ScheduledBackup"}},
	}
	applyModel(t, rm)
	const duty = "backups-in-namespace"
	var dbs []*unstructured.Unstructured
	for _, name := range []string{"orders", "billing", "search"} {
		dbs = append(dbs, createObject(t, cnpg, "Cluster", ns, name, nil, tlsSpec()))
	}
	for _, db := range dbs {
		waitDutyState(t, db, rm.Name, duty, v1alpha1.DutyUnmet)
		got := evaluate.ParseDuties(getObject(t, db).GetAnnotations()[v1alpha1.AnnotationDuties])[rm.Name][duty]
		if got.Scope != evaluate.ScopeNamespace || got.Message != "No ScheduledBackup in namespace "+ns {
			t.Errorf("%s: duty annotation %+v, want scope %s and the namespace's message", db.GetName(), got, evaluate.ScopeNamespace)
		}
	}
	unmet := waitNamespaceEvents(t, ns, v1alpha1.EventCustomerDutyUnmet, 1)
	if unmet.Type != corev1.EventTypeWarning || unmet.Regarding.Namespace != ns || unmet.Related == nil || unmet.Related.Name != rm.Name {
		t.Errorf("namespace finding event: type %s, regarding %+v, related %+v", unmet.Type, unmet.Regarding, unmet.Related)
	}
	for _, want := range []string{duty, "namespace " + ns, "every object of the model", "No ScheduledBackup in namespace " + ns} {
		if !strings.Contains(unmet.Note, want) {
			t.Errorf("event note %q does not contain %q", unmet.Note, want)
		}
	}
	noObjectEvents := func() error {
		for _, db := range dbs {
			for _, e := range eventsFor(t, db, "") {
				if e.Related != nil && strings.Contains(e.Related.FieldPath, "duties{"+duty+"}") {
					return fmt.Errorf("%s has its own %s event for the namespace's duty: %s", db.GetName(), e.Reason, e.Note)
				}
			}
		}
		return nil
	}
	if err := noObjectEvents(); err != nil {
		t.Error(err)
	}

	// Another workload in the unmet namespace: the same finding, no event.
	dbs = append(dbs, createObject(t, cnpg, "Cluster", ns, "audit", nil, tlsSpec()))
	waitDutyState(t, dbs[3], rm.Name, duty, v1alpha1.DutyUnmet)
	waitNamespaceEvents(t, ns, v1alpha1.EventCustomerDutyUnmet, 1)

	// Met for the whole namespace: one Normal event.
	backup := scheduledBackup(t, ns, "nightly", "orders")
	for _, db := range dbs {
		waitDutyState(t, db, rm.Name, duty, v1alpha1.DutyMet)
	}
	if met := waitNamespaceEvents(t, ns, v1alpha1.EventCustomerDutyMet, 1); met.Type != corev1.EventTypeNormal {
		t.Errorf("met event type %s", met.Type)
	}

	// A restart finds every state recorded: nothing new.
	stop()
	stop = startManager(t)
	_ = stop
	consistently(t, 3*time.Second, func() error {
		if u, m := eventCount(namespaceEvents(t, ns, v1alpha1.EventCustomerDutyUnmet)), eventCount(namespaceEvents(t, ns, v1alpha1.EventCustomerDutyMet)); u != 1 || m != 1 {
			return fmt.Errorf("after a restart: %d unmet and %d met events, want 1 and 1", u, m)
		}
		return nil
	})

	// The finding comes back: its event counts a second occurrence.
	if err := k8s.Delete(context.Background(), backup); err != nil {
		t.Fatal(err)
	}
	for _, db := range dbs {
		waitDutyState(t, db, rm.Name, duty, v1alpha1.DutyUnmet)
	}
	again := waitNamespaceEvents(t, ns, v1alpha1.EventCustomerDutyUnmet, 2)
	if again.Series == nil || !again.Series.LastObservedTime.After(unmet.EventTime.Time) {
		t.Errorf("the returning finding's series: %+v", again.Series)
	}
	waitNamespaceEvents(t, ns, v1alpha1.EventCustomerDutyMet, 1)
	if err := noObjectEvents(); err != nil {
		t.Error(err)
	}
}

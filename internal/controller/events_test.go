package controller

import (
	"context"
	"testing"

	"github.com/responsibility-operator/responsibility-operator/api/v1alpha1"
	"github.com/responsibility-operator/responsibility-operator/internal/evaluate"
)

// The events of one evaluation of one version of an object are stored
// once, however often they are sent: what lets a process that evaluates
// the same version again after a crash (or a refused write) send the
// missing ones and repeat none. A new version is a new transition. Fails if
// the events' names do not identify the transition (a second send stores a
// second event) or if AlreadyExists is reported as an error.
func TestTransitionEventsAreIdempotent(t *testing.T) {
	ns := newNamespace(t, nil)
	obj := createObject(t, dragonfly, "Dragonfly", ns, "cache", nil, map[string]any{"replicas": int64(1)})
	t.Cleanup(func() { deleteObjects(obj) })
	e := NewEventEmitter(nil, k8s, k8s, nil)
	duty := &evaluate.Duty{Name: "snapshots-scheduled", Area: "Backups"}
	unmet := []evaluate.Transition{{DutyResult: evaluate.DutyResult{Model: "cache", Duty: duty, State: v1alpha1.DutyUnmet, Message: "Set spec.snapshot.cron"}}}
	ignored := []evaluate.IgnoredWaiver{{Duty: "typo", Reason: "no matching model has a duty of that name"}}
	ctx := context.Background()
	for range 3 {
		if err := e.Transitions(ctx, obj, "", unmet, ignored); err != nil {
			t.Fatalf("send the events of the same version: %v", err)
		}
	}
	for reason, want := range map[string]int{v1alpha1.EventCustomerDutyUnmet: 1, v1alpha1.EventWaiverIgnored: 1} {
		if got := eventCount(eventsFor(t, obj, reason)); got != want {
			t.Errorf("%s events after three sends of one version: %d, want %d", reason, got, want)
		}
	}

	next := getObject(t, obj)
	next.SetLabels(map[string]string{"touched": "yes"})
	if err := k8s.Update(ctx, next); err != nil {
		t.Fatal(err)
	}
	if err := e.Transitions(ctx, next, "", unmet, nil); err != nil {
		t.Fatal(err)
	}
	if got := eventCount(eventsFor(t, obj, v1alpha1.EventCustomerDutyUnmet)); got != 2 {
		t.Errorf("%s events after a send for a new version: %d, want 2", v1alpha1.EventCustomerDutyUnmet, got)
	}
}

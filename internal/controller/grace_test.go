package controller

import (
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/responsibility-operator/responsibility-operator/api/v1alpha1"
)

// The event grace period on a real API server: a Cluster applied a moment
// before its ScheduledBackup reads Unmet at once (state is never hidden),
// but gets no event at all, neither the Warning nor a "met again"; a
// Cluster still unmet when its grace ends gets exactly one Warning then,
// and the hold's annotation goes; a hold survives a restart of the
// operator across its end. Fails if a Warning is sent within the grace
// period, if the held annotation is not written with the states, or if the
// event of a hold is lost or repeated over a restart.
func TestEventGracePeriod(t *testing.T) {
	const grace = 6 * time.Second
	opts := &Options{ExcludedNamespaces: []string{"kube-system"}, EventGracePeriod: grace}
	stop := startManagerWith(t, managerSetup{options: opts})
	ns := newNamespace(t, map[string]string{"test": "grace"})
	applyModel(t, dbModel("grace-db", "grace"))

	applied := createObject(t, cnpg, "Cluster", ns, "applied", nil, tlsSpec())
	unmet := createObject(t, cnpg, "Cluster", ns, "unmet", nil, tlsSpec())
	// Written at once, with the hold.
	for _, obj := range []*unstructured.Unstructured{applied, unmet} {
		waitDutyState(t, obj, "grace-db", "backup-scheduled", v1alpha1.DutyUnmet)
		if _, ok := getObject(t, obj).GetAnnotations()[v1alpha1.AnnotationEventsHeldUntil]; !ok {
			t.Errorf("%s is unmet within its grace period without %s", obj.GetName(), v1alpha1.AnnotationEventsHeldUntil)
		}
	}
	scheduledBackup(t, ns, "applied-nightly", "applied")
	waitDutyState(t, applied, "grace-db", "backup-scheduled", v1alpha1.DutyMet)
	waitAnnotation(t, applied, v1alpha1.AnnotationEventsHeldUntil, "", false)

	// A third Cluster, whose grace ends while no operator runs.
	restarted := createObject(t, cnpg, "Cluster", ns, "restarted", nil, tlsSpec())
	waitDutyState(t, restarted, "grace-db", "backup-scheduled", v1alpha1.DutyUnmet)
	if n := eventCount(eventsFor(t, unmet, v1alpha1.EventCustomerDutyUnmet)); n != 0 {
		t.Errorf("%d Warnings within the grace period", n)
	}
	stop()
	time.Sleep(grace)
	startManagerWith(t, managerSetup{options: opts})

	// After the grace period: one Warning for each unmet Cluster, none for
	// the one met in time, and no hold left.
	for obj, want := range map[*unstructured.Unstructured]int{unmet: 1, restarted: 1, applied: 0} {
		waitEvents(t, obj, v1alpha1.EventCustomerDutyUnmet, want)
		if n := eventCount(eventsFor(t, obj, v1alpha1.EventCustomerDutyMet)); n != 0 {
			t.Errorf("%s: %d %s events for a duty never reported unmet", obj.GetName(), n, v1alpha1.EventCustomerDutyMet)
		}
		waitAnnotation(t, obj, v1alpha1.AnnotationEventsHeldUntil, "", false)
		if got := dutyState(t, obj, "grace-db", "backup-scheduled"); got != map[int]v1alpha1.DutyState{0: v1alpha1.DutyMet, 1: v1alpha1.DutyUnmet}[want] {
			t.Errorf("%s reads %s after its grace period", obj.GetName(), got)
		}
	}
}

package controller

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/responsibility-operator/responsibility-operator/api/v1alpha1"
	"github.com/responsibility-operator/responsibility-operator/internal/metrics"
)

// recentBackupModel reads the evidence CloudNativePG records in a
// Cluster's status: the last successful backup is younger than
// params.maxAge. It is re-checked every 10 s, the shortest interval.
func recentBackupModel(name, testLabel, maxAge string) *v1alpha1.ResponsibilityModel {
	rm := dbModel(name, testLabel)
	rm.Spec.RecheckInterval = &metav1.Duration{Duration: 10 * time.Second}
	rm.Spec.Parameters = []v1alpha1.Parameter{{Name: "maxAge", Value: maxAge}}
	rm.Spec.Areas = []v1alpha1.Area{{Name: "Backups", Provider: "Backup storage", Customer: "Backup verification",
		Duties: []v1alpha1.Duty{{Name: "backup-recent",
			Rule: `object.?status.?lastSuccessfulBackup.hasValue() &&
				now - timestamp(object.status.lastSuccessfulBackup) < duration(params.maxAge)`,
			MessageExpression: `"The last successful backup finished at " + object.?status.?lastSuccessfulBackup.orValue("no time yet")`,
		}}}}
	return rm
}

func setLastBackup(t *testing.T, obj *unstructured.Unstructured, at time.Time) {
	t.Helper()
	cur := getObject(t, obj)
	if err := unstructured.SetNestedField(cur.Object, at.UTC().Format(time.RFC3339), "status", "lastSuccessfulBackup"); err != nil {
		t.Fatal(err)
	}
	if err := k8s.Status().Update(context.Background(), cur); err != nil {
		t.Fatalf("write the status: %v", err)
	}
}

// A duty that reads `now` follows the evidence in the object's status and
// the passing of time. A recent backup is Met; with nothing changing it
// turns Unmet once the backup is older than the window, within one re-check
// interval, with one event; a new backup in the status turns it Met at once,
// with one event. A waiver that expires stops applying at its expiry, not
// at the next change. Fails if objects are not re-checked on time, if a
// re-check repeats an event or writes without a change, or if a waiver's
// expiry waits for an unrelated event.
func TestEvidenceFollowsTime(t *testing.T) {
	startManager(t)
	ns := newNamespace(t, map[string]string{"test": "evidence"})
	const model, duty = "evidence-db", "backup-recent"
	// Both objects have their evidence and waiver before the model sees
	// them: their first verdicts are Met and Waived, with no event.
	db := createObject(t, cnpg, "Cluster", ns, "orders", nil, tlsSpec())
	waived := createObject(t, cnpg, "Cluster", ns, "legacy", nil, tlsSpec())
	t.Cleanup(func() { deleteObjects(db, waived) })
	backup := time.Now()
	setLastBackup(t, db, backup)
	expires := backup.Add(6 * time.Second).Truncate(time.Second).Add(time.Second)
	cur := getObject(t, waived)
	cur.SetAnnotations(map[string]string{v1alpha1.AnnotationWaivePrefix + duty: "expires " + expires.UTC().Format(time.RFC3339) + ": restoring from the old system"})
	if err := k8s.Update(context.Background(), cur); err != nil {
		t.Fatal(err)
	}
	applyModel(t, recentBackupModel(model, "evidence", "6s"))
	waitDutyState(t, db, model, duty, v1alpha1.DutyMet)
	waitDutyState(t, waived, model, duty, v1alpha1.DutyWaived)

	flipped := func(obj *unstructured.Unstructured) time.Time {
		t.Helper()
		var at time.Time
		eventually(t, 30*time.Second, func() error {
			if got := dutyState(t, obj, model, duty); got != v1alpha1.DutyUnmet {
				return fmt.Errorf("%s: %s is %q, want Unmet", obj.GetName(), duty, got)
			}
			at = time.Now()
			return nil
		})
		return at
	}
	waiverEnd := flipped(waived)
	if late := waiverEnd.Sub(expires); late < 0 || late > 1500*time.Millisecond {
		t.Errorf("the expired waiver stopped applying %s after its expiry, want within a second (the test polls every 100 ms)", late)
	}
	stale := flipped(db)
	if age := stale.Sub(backup); age < 6*time.Second || age > 6*time.Second+10*time.Second+2*time.Second {
		t.Errorf("the duty turned Unmet %s after the backup, want between the 6 s window and one 10 s re-check interval later", age)
	}
	waitEvents(t, waived, v1alpha1.EventWaiverIgnored, 1)
	waitEvents(t, waived, v1alpha1.EventCustomerDutyUnmet, 1)
	waitEvents(t, db, v1alpha1.EventCustomerDutyUnmet, 1)

	// A new backup: Met at once (the status change is a watch event), one
	// event; re-checks that change nothing write nothing.
	setLastBackup(t, db, time.Now())
	waitDutyState(t, db, model, duty, v1alpha1.DutyMet)
	waitEvents(t, db, v1alpha1.EventCustomerDutyMet, 1)
	rv := getObject(t, waived).GetResourceVersion()
	m, err := metrics.DefaultMetrics()
	if err != nil {
		t.Fatal(err)
	}
	rechecks := testutil.ToFloat64(m.Rechecks)
	time.Sleep(11 * time.Second) // one re-check interval
	if got := getObject(t, waived).GetResourceVersion(); got != rv {
		t.Errorf("a re-check that changed nothing wrote the object (resourceVersion %s, then %s)", rv, got)
	}
	// Both objects were re-checked, and counted (responsibility_rechecks_total).
	if n := testutil.ToFloat64(m.Rechecks) - rechecks; n < 2 {
		t.Errorf("%v re-checks counted in one interval, want at least one of each object", n)
	}
	waitEvents(t, waived, v1alpha1.EventCustomerDutyUnmet, 1)
}

package controller

import (
	"context"
	"testing"

	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/responsibility-operator/responsibility-operator/api/v1alpha1"
)

// TestJoinedRelatedChanges: a duty that joins its related ScheduledBackups
// on the cluster's name (evaluate.relatedJoins) re-evaluates, on a
// ScheduledBackup's change, the clusters it named before and after the
// change — and they follow it: resumed, deleted, created for another.
func TestJoinedRelatedChanges(t *testing.T) {
	startManager(t)
	ns := newNamespace(t, map[string]string{"test": "join"})
	const model, duty = "join-db", "backup-completed"
	rm := dbModel(model, "join")
	rm.Spec.Areas = append(rm.Spec.Areas, v1alpha1.Area{Name: "Backup verification", Provider: "Backup storage", Customer: "Backups that succeed",
		Duties: []v1alpha1.Duty{{
			Name:    duty,
			Related: []v1alpha1.RelatedResource{{Name: "schedules", APIVersion: cnpg, Kind: "ScheduledBackup"}},
			Rule: `related.schedules.exists(s, s.?spec.?cluster.?name.orValue("") == object.metadata.name &&
				!s.spec.?suspend.orValue(false))`,
			Message: "Take a backup",
		}}})
	applyModel(t, rm)
	a := createObject(t, cnpg, "Cluster", ns, "a", nil, tlsSpec())
	b := createObject(t, cnpg, "Cluster", ns, "b", nil, tlsSpec())
	backup := createObject(t, cnpg, "ScheduledBackup", ns, "nightly", nil, map[string]any{
		"schedule": "0 0 0 * * *", "suspend": true, "cluster": map[string]any{"name": "a"}})
	t.Cleanup(func() { deleteObjects(a, b, backup) })
	waitDutyState(t, a, model, duty, v1alpha1.DutyUnmet)
	waitDutyState(t, b, model, duty, v1alpha1.DutyUnmet)

	patch := func(p string) {
		t.Helper()
		if err := k8s.Patch(context.Background(), getObject(t, backup), client.RawPatch(types.MergePatchType, []byte(p))); err != nil {
			t.Fatal(err)
		}
	}
	patch(`{"spec":{"suspend":false}}`)
	waitDutyState(t, a, model, duty, v1alpha1.DutyMet)
	waitDutyState(t, b, model, duty, v1alpha1.DutyUnmet)

	deleteObjects(backup)
	waitDutyState(t, a, model, duty, v1alpha1.DutyUnmet)
	other := createObject(t, cnpg, "ScheduledBackup", ns, "nightly-b", nil, map[string]any{
		"schedule": "0 0 0 * * *", "cluster": map[string]any{"name": "b"}})
	t.Cleanup(func() { deleteObjects(other) })
	waitDutyState(t, b, model, duty, v1alpha1.DutyMet)
	waitDutyState(t, a, model, duty, v1alpha1.DutyUnmet)
}

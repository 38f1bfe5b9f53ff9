package controller

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/responsibility-operator/responsibility-operator/api/v1alpha1"
	"github.com/responsibility-operator/responsibility-operator/internal/evaluate"
	"github.com/responsibility-operator/responsibility-operator/internal/watch"
)

// TestCacheKeepsWhatModelsRead checks that the cache keeps of a target and
// a related object only what the models read, and that a model added later
// that reads more of both kinds sees what it reads: not the absent field a
// cache kept for the first model would show it.
func TestCacheKeepsWhatModelsRead(t *testing.T) {
	var c cache.Cache
	startManagerWith(t, managerSetup{cache: &c})
	ns := newNamespace(t, map[string]string{"test": "projection"})
	applyModel(t, dbModel("projection-a", "projection"))

	spec := tlsSpec()
	spec["instances"] = int64(3)
	spec["description"] = "read by no rule"
	db := createObject(t, cnpg, "Cluster", ns, "orders", nil, spec)
	schedule := createObject(t, cnpg, "ScheduledBackup", ns, "orders-daily", nil,
		map[string]any{"cluster": map[string]any{"name": "orders"}, "schedule": "0 0 0 * * *", "suspend": true})
	waitAnnotation(t, db, v1alpha1.AnnotationModels, "projection-a", true)
	inf, err := c.GetInformer(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	if !watch.Projecting(inf) {
		t.Errorf("the cache watches Clusters with a %T, not with the projecting decoder", inf)
	}

	cached := func(proto *unstructured.Unstructured) map[string]any {
		t.Helper()
		u := &unstructured.Unstructured{}
		u.SetGroupVersionKind(proto.GroupVersionKind())
		if err := c.Get(context.Background(), client.ObjectKeyFromObject(proto), u); err != nil {
			t.Fatalf("get %s from the cache: %v", proto.GetName(), err)
		}
		spec, _ := u.Object["spec"].(map[string]any)
		return spec
	}
	// projection-a reads ssl_min_protocol_version of the cluster and
	// cluster.name of the schedule.
	if got := cached(db); got["instances"] != nil || got["description"] != nil || got["postgresql"] == nil {
		t.Errorf("cached cluster spec = %v, want only what projection-a reads", got)
	}
	if got := cached(schedule); got["suspend"] != nil || got["schedule"] != nil || got["cluster"] == nil {
		t.Errorf("cached schedule spec = %v, want only what projection-a reads", got)
	}

	b := dbModel("projection-b", "projection")
	b.Spec.Areas[0].Duties[0] = v1alpha1.Duty{Name: "ha", Message: "Run two instances", Rule: `object.spec.?instances.orValue(0) >= 2`}
	b.Spec.Areas[1].Duties[0].Name = "suspended-schedule-known"
	b.Spec.Areas[1].Duties[0].Rule = `related.schedules.exists(s, s.spec.?suspend.orValue(false))`
	applyModel(t, b)
	eventually(t, 20*time.Second, func() error {
		duties := evaluate.ParseDuties(getObject(t, db).GetAnnotations()[v1alpha1.AnnotationDuties])["projection-b"]
		for _, d := range []string{"ha", "suspended-schedule-known"} {
			if duties[d].State != v1alpha1.DutyMet {
				return fmt.Errorf("projection-b duties = %+v, want %s met", duties, d)
			}
		}
		return nil
	})
	if got := cached(db); got["instances"] != int64(3) || got["description"] != nil {
		t.Errorf("cached cluster spec = %v, want instances added", got)
	}
	if got := cached(schedule); got["suspend"] != true || got["schedule"] != nil {
		t.Errorf("cached schedule spec = %v, want suspend added", got)
	}
}

// TestModelsWideningOneKindAtOnce applies, in quick succession, models that
// each read another field of one kind: every one of them lists the kind
// again while the others' reconciles read it. Each must still see what it
// reads on every object. (A reader waiting for the initial list of an
// informer that was replaced meanwhile used to wait forever.)
func TestModelsWideningOneKindAtOnce(t *testing.T) {
	startManager(t)
	ns := newNamespace(t, map[string]string{"test": "widening"})
	var objects []*unstructured.Unstructured
	for i := range 5 {
		objects = append(objects, createObject(t, cnpg, "Cluster", ns, fmt.Sprintf("db-%d", i), nil,
			map[string]any{"startDelay": int64(1), "stopDelay": int64(2), "switchoverDelay": int64(3), "livenessProbeTimeout": int64(4)}))
	}
	fields := []string{"startDelay", "stopDelay", "switchoverDelay", "livenessProbeTimeout"}
	for i, f := range fields {
		rm := dbModel("widening-"+strings.ToLower(f), "widening")
		rm.Spec.Areas = rm.Spec.Areas[:1]
		rm.Spec.Areas[0].Duties[0] = v1alpha1.Duty{Name: "reads-" + strings.ToLower(f), Message: "Set spec." + f,
			Rule: fmt.Sprintf("object.spec.?%s.orValue(0) == %d", f, i+1)}
		applyModel(t, rm)
	}
	eventually(t, 30*time.Second, func() error {
		for _, obj := range objects {
			duties := evaluate.ParseDuties(getObject(t, obj).GetAnnotations()[v1alpha1.AnnotationDuties])
			for _, f := range fields {
				if got := duties["widening-"+strings.ToLower(f)]["reads-"+strings.ToLower(f)].State; got != v1alpha1.DutyMet {
					return fmt.Errorf("%s: reads-%s is %q, want Met", obj.GetName(), f, got)
				}
			}
		}
		return nil
	})
}

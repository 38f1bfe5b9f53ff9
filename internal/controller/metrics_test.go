package controller

import (
	"fmt"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	crmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/responsibility-operator/responsibility-operator/api/v1alpha1"
	"github.com/responsibility-operator/responsibility-operator/internal/metrics"
)

// metricValue reads from controller-runtime's registry, as a scrape would,
// the sum of the series that have labels (one series when labels name them
// all; CustomerDutyUnmet events, for one, are counted by type too, Warning
// and Normal); ok is false when no series matches.
func metricValue(t *testing.T, name string, labels map[string]string) (value float64, ok bool) {
	t.Helper()
	families, err := crmetrics.Registry.Gather()
	if err != nil {
		t.Fatalf("gather metrics: %v", err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			if !hasLabels(m, labels) {
				continue
			}
			switch {
			case m.Gauge != nil:
				value, ok = value+m.GetGauge().GetValue(), true
			case m.Counter != nil:
				value, ok = value+m.GetCounter().GetValue(), true
			}
		}
	}
	return value, ok
}

func hasLabels(m *dto.Metric, want map[string]string) bool {
	got := map[string]string{}
	for _, l := range m.GetLabel() {
		got[l.GetName()] = l.GetValue()
	}
	for k, v := range want {
		if got[k] != v {
			return false
		}
	}
	return true
}

func waitMetric(t *testing.T, name string, labels map[string]string, want float64) {
	t.Helper()
	eventually(t, 20*time.Second, func() error {
		if got, ok := metricValue(t, name, labels); !ok || got != want {
			return fmt.Errorf("%s%v = %v (present %v), want %v", name, labels, got, ok, want)
		}
		return nil
	})
}

// A known scenario and the exact metric values it must produce: two
// Clusters, one with TLS, then a ScheduledBackup for it.
func TestMetricsScenario(t *testing.T) {
	startManager(t)
	ns := newNamespace(t, map[string]string{"test": "metrics"})
	const model = "metrics-db"
	count := func(reason string) float64 {
		v, _ := metricValue(t, "responsibility_events_total", map[string]string{"reason": reason})
		return v
	}
	applies := func() float64 {
		v, _ := metricValue(t, "responsibility_applies_total", map[string]string{"kind": "Cluster", "result": metrics.ApplySuccess})
		return v
	}
	unmetBefore, metBefore, appliesBefore := count(v1alpha1.EventCustomerDutyUnmet), count(v1alpha1.EventCustomerDutyMet), applies()

	applyModel(t, dbModel(model, "metrics"))
	tls := createObject(t, cnpg, "Cluster", ns, "with-tls", nil, tlsSpec())
	createObject(t, cnpg, "Cluster", ns, "without-tls", nil, map[string]any{"instances": int64(1)})

	duty := func(d, state string) map[string]string {
		return map[string]string{"model": model, "duty": d, "state": state, "namespace": ns}
	}
	waitMetric(t, "responsibility_matched_objects", map[string]string{"model": model, "kind": "Cluster"}, 2)
	waitMetric(t, "responsibility_duty_objects", duty("tls-enforced", "Met"), 1)
	waitMetric(t, "responsibility_duty_objects", duty("tls-enforced", "Unmet"), 1)
	waitMetric(t, "responsibility_duty_objects", duty("backup-scheduled", "Unmet"), 2)
	waitMetric(t, "responsibility_model_ready", map[string]string{"model": model}, 1)
	waitMetric(t, "responsibility_watch_synced", map[string]string{"group": "postgresql.cnpg.io", "version": "v1", "kind": "Cluster"}, 1)

	scheduledBackup(t, ns, "with-tls-nightly", tls.GetName())
	waitMetric(t, "responsibility_duty_objects", duty("backup-scheduled", "Met"), 1)
	waitMetric(t, "responsibility_duty_objects", duty("backup-scheduled", "Unmet"), 1)

	// One Warning per duty that was found unmet (3), one Normal for the
	// duty that turned met (1); one write per object, one more for the
	// object whose duty changed.
	eventually(t, 10*time.Second, func() error {
		if d := count(v1alpha1.EventCustomerDutyUnmet) - unmetBefore; d != 3 {
			return fmt.Errorf("CustomerDutyUnmet events counted %v, want 3", d)
		}
		if d := count(v1alpha1.EventCustomerDutyMet) - metBefore; d != 1 {
			return fmt.Errorf("CustomerDutyMet events counted %v, want 1", d)
		}
		return nil
	})
	consistently(t, time.Second, func() error {
		if d := applies() - appliesBefore; d != 3 {
			return fmt.Errorf("applies counted %v, want 3", d)
		}
		return nil
	})
	if v, ok := metricValue(t, "responsibility_duty_objects", duty("backup-scheduled", "Waived")); ok {
		t.Errorf("a series for a state no object has: %v", v)
	}

	// Deleting the model removes its series.
	deleteModel(t, model)
	eventually(t, 10*time.Second, func() error {
		for _, name := range []string{"responsibility_matched_objects", "responsibility_model_ready", "responsibility_duty_objects"} {
			if v, ok := metricValue(t, name, map[string]string{"model": model}); ok {
				return fmt.Errorf("%s{model=%s} = %v after the model was deleted", name, model, v)
			}
		}
		return nil
	})
}

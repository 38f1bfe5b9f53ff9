package faults

import (
	"fmt"
	"testing"
	"time"

	"github.com/responsibility-operator/responsibility-operator/api/v1alpha1"
)

// apiServerDown is how long kube-apiserver stays stopped: long enough for
// every watch and the leader election to see connection errors.
const apiServerDown = 5 * time.Second

// TestAPIServerRestart stops kube-apiserver (etcd keeps running) under a
// running operator, starts it again on the same address and certificates,
// and changes workloads: the same operator process, which did not exit,
// must pick every change up through its re-established watches. It runs
// with leader election on (renew deadline far above the outage), as
// deployed.
//
// It fails if the operator exits when the API server goes away, or if a
// watch (the dynamic per-kind informers of the workload controller, the
// namespace or model watches) does not resume after the API server is back.
func TestAPIServerRestart(t *testing.T) {
	// Without a bound, kube-apiserver's graceful shutdown waits for the
	// operator's watches to end, which they never do by themselves (envtest
	// then kills it after 20s).
	e := startClusterArgs(t, false, map[string]string{"shutdown-watch-termination-grace-period": "2s"})
	ctx := t.Context()
	const ns = "restart"
	e.namespace(ns, map[string]string{"faults": "restart"})
	e.tierModel("restart-tier", configMapGVK, "restart")
	e.configMap(ns, "gold-0", "gold")
	e.configMap(ns, "gold-1", "gold")
	e.configMap(ns, "plain-0", "")
	e.configMap(ns, "plain-1", "")

	op := e.startOperator("operator", "--leader-elect=true", "--leader-elect-namespace=default",
		"--leader-elect-lease-duration=60s", "--leader-elect-renew-deadline=50s", "--leader-elect-retry-period=2s")
	e.waitReady(op)
	e.waitTiers(t, "the operator annotates the ConfigMaps", configMapGVK, ns, "gold-0", "gold-1", "plain-0", "plain-1")
	pid := op.Cmd.Process.Pid

	start := time.Now()
	if err := e.cluster.StopAPIServer(t.TempDir()); err != nil {
		t.Fatal(err)
	}
	stopped := time.Since(start)
	time.Sleep(apiServerDown)
	if exited, err := op.Exited(); exited {
		t.Fatalf("the operator exited while the API server was down: %v", err)
	}
	start = time.Now()
	if err := e.cluster.StartAPIServer(); err != nil {
		t.Fatal(err)
	}
	t.Logf("kube-apiserver stopped in %s, down for %s, started again in %s",
		stopped.Round(100*time.Millisecond), apiServerDown, time.Since(start).Round(100*time.Millisecond))
	back := time.Now()

	// Changes after the restart: a duty turns met, one turns unmet, a new
	// object appears.
	e.setTier(configMapGVK, ns, "plain-0", "gold")
	e.setTier(configMapGVK, ns, "gold-1", "silver")
	e.configMap(ns, "new-0", "")
	e.waitTiers(t, "the same operator picks up the changes after the restart", configMapGVK, ns, "plain-0", "gold-1", "new-0")
	t.Logf("changes made after the restart were written %s after the API server was back", time.Since(back).Round(100*time.Millisecond))

	// Every duty event of the changes arrives once.
	eventually(t, 30*time.Second, "the transitions' events", func() (bool, string) {
		events, err := e.operatorEvents(ctx)
		if err != nil {
			return false, err.Error()
		}
		var missing []string
		for name, reason := range map[string]string{
			"plain-0": v1alpha1.EventCustomerDutyMet, "gold-1": v1alpha1.EventCustomerDutyUnmet, "new-0": v1alpha1.EventCustomerDutyUnmet,
		} {
			uid := e.uid(configMapGVK, ns, name)
			if n := events[dutyEvent{UID: uid, Reason: reason, Model: "restart-tier", Duty: tierDuty}]; n != 1 {
				missing = append(missing, fmt.Sprintf("%s on %s: %d", reason, name, n))
			}
		}
		return len(missing) == 0, fmt.Sprint(missing)
	})
	if exited, err := op.Exited(); exited || op.Cmd.Process.Pid != pid {
		t.Fatalf("the operator process did not survive the restart (exited: %v, %v)", exited, err)
	}
	if v := mustMetric(t, op, "responsibility_applies_total", map[string]string{"result": "error"}); v != 0 {
		t.Logf("%v writes failed while the API server was down (retried)", v)
	}
}

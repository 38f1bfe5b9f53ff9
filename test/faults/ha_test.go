package faults

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"

	"github.com/responsibility-operator/responsibility-operator/api/v1alpha1"
	"github.com/responsibility-operator/responsibility-operator/internal/devcluster"
)

// Short leader election timings, so that a takeover takes seconds. The
// holder writes its lease duration into the Lease; candidates wait that
// long after the last renewal they observed.
const (
	haLease    = 6 * time.Second
	haRenew    = 4 * time.Second
	haRetry    = 500 * time.Millisecond
	leaseName  = "responsibility-operator.responsibility.io"
	haReplicas = 30
	haChanges  = 5
)

var leaderArgs = []string{
	"--leader-elect=true", "--leader-elect-namespace=default",
	"--leader-elect-lease-duration=" + haLease.String(),
	"--leader-elect-renew-deadline=" + haRenew.String(),
	"--leader-elect-retry-period=" + haRetry.String(),
}

// TestLeaderElection runs two replicas with leader election, as
// config/default deploys them. Only the leader writes: the follower makes no
// apply and emits no event, and the API server counts exactly one apply per
// object that needed one. SIGKILL of the leader: the follower takes over
// within the lease duration (plus a retry period) and converges a change
// made after the kill. SIGTERM of the new leader with a third replica
// standing by: the lease is released on the way out, so the standby takes
// over well before the lease would expire, and converges another change.
// Every duty event is emitted exactly once.
//
// It fails if both replicas write (leader election off, or controllers
// that run without needing the lease), if a replica emits events without
// being the leader, if the takeover after a kill exceeds the lease
// duration, if a stopped leader does not release its lease
// (LeaderElectionReleaseOnCancel), or if a change is written twice or lost
// across a failover.
func TestLeaderElection(t *testing.T) {
	e := startCluster(t, false)
	ctx := t.Context()
	const ns, model = "ha", "ha-tier"
	e.namespace(ns, map[string]string{"faults": "ha"})
	e.tierModel(model, configMapGVK, "ha")
	var all []string
	for i := range haReplicas {
		tier := ""
		if i%2 == 0 {
			tier = "gold"
		}
		name := fmt.Sprintf("cm-%02d", i)
		e.configMap(ns, name, tier)
		all = append(all, name)
	}
	base := e.apiServerWrites("configmaps")

	a := e.startOperator("replica-a", leaderArgs...)
	b := e.startOperator("replica-b", leaderArgs...)
	e.waitReady(a)
	e.waitReady(b)
	leader, follower := e.waitLeader(a, b)
	e.waitTiers(t, "the leader annotates the ConfigMaps", configMapGVK, ns, all...)
	// The expected duty events: one per object without the gold tier.
	want := map[dutyEvent]bool{}
	for i, name := range all {
		if i%2 == 1 {
			want[dutyEvent{UID: e.uid(configMapGVK, ns, name), Reason: v1alpha1.EventCustomerDutyUnmet, Model: model, Duty: tierDuty}] = true
		}
	}
	e.waitEvents(want)
	if v := mustMetric(t, follower, "responsibility_applies_total", nil); v != 0 {
		t.Errorf("the follower made %v applies", v)
	}
	if v := mustMetric(t, follower, "responsibility_events_total", nil); v != 0 {
		t.Errorf("the follower emitted %v events", v)
	}
	if v := mustMetric(t, leader, "responsibility_applies_total", applied); v != haReplicas {
		t.Errorf("the leader made %v applies, want %d (one per object)", v, haReplicas)
	}
	if got := e.apiServerWrites("configmaps") - base; got != haReplicas {
		t.Errorf("the API server counted %v PATCH/apply requests on ConfigMaps, want %d", got, haReplicas)
	}
	leaderApplies := mustMetric(t, leader, "responsibility_applies_total", nil)

	// SIGKILL the leader, change objects, and time the takeover.
	if err := leader.Kill(); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	var changed []string
	for i := 1; i < 2*haChanges; i += 2 {
		e.setTier(configMapGVK, ns, all[i], "gold")
		changed = append(changed, all[i])
		want[dutyEvent{UID: e.uid(configMapGVK, ns, all[i]), Reason: v1alpha1.EventCustomerDutyMet, Model: model, Duty: tierDuty}] = true
	}
	killTakeover := e.waitLeading(follower, haLease+haRetry+5*time.Second)
	t.Logf("after SIGKILL of the leader, the follower led after %s (lease %s, retry period %s)", killTakeover.Round(10*time.Millisecond), haLease, haRetry)
	if limit := haLease + 2*haRetry + time.Second; killTakeover > limit {
		t.Errorf("takeover after a SIGKILL took %s, more than the lease duration and a retry period (%s)", killTakeover, limit)
	}
	e.waitTiers(t, "the new leader converges the change made after the kill", configMapGVK, ns, changed...)
	t.Logf("the change made at the kill was written %s after the kill", time.Since(killed).Round(10*time.Millisecond))
	e.waitEvents(want)
	newLeader := follower
	if v := mustMetric(t, newLeader, "responsibility_applies_total", applied); v != haChanges {
		t.Errorf("the new leader made %v applies, want %d (the changed objects only)", v, haChanges)
	}
	if got := e.apiServerWrites("configmaps") - base; got != haReplicas+haChanges {
		t.Errorf("the API server counted %v PATCH/apply requests on ConfigMaps, want %d: an object was written twice or not at all", got, haReplicas+haChanges)
	}

	// SIGTERM the leader with a standby: the lease is released.
	standby := e.startOperator("replica-c", leaderArgs...)
	e.waitReady(standby)
	time.Sleep(2 * haRetry) // the standby has tried and failed to acquire
	if v := mustMetric(t, standby, "leader_election_master_status", map[string]string{"name": leaseName}); v != 0 {
		t.Fatalf("the standby leads while the leader runs")
	}
	newLeaderApplies := mustMetric(t, newLeader, "responsibility_applies_total", nil)
	stopped := make(chan time.Duration, 1)
	termAt := time.Now()
	go func() {
		_ = newLeader.Stop()
		stopped <- time.Since(termAt)
	}()
	termTakeover := e.waitLeading(standby, haLease+haRetry+5*time.Second)
	exit := <-stopped
	t.Logf("after SIGTERM of the leader (exited in %s), the standby led after %s", exit.Round(10*time.Millisecond), termTakeover.Round(10*time.Millisecond))
	if termTakeover >= haLease/2 {
		t.Errorf("takeover after a SIGTERM took %s: the stopped leader did not release its lease (the standby waited for it to expire)", termTakeover)
	}
	changed = nil
	for i := 0; i < 2*haChanges; i += 2 {
		e.setTier(configMapGVK, ns, all[i], "silver")
		changed = append(changed, all[i])
		want[dutyEvent{UID: e.uid(configMapGVK, ns, all[i]), Reason: v1alpha1.EventCustomerDutyUnmet, Model: model, Duty: tierDuty}] = true
	}
	e.waitTiers(t, "the standby converges a change made after the SIGTERM", configMapGVK, ns, changed...)
	e.waitEvents(want)
	time.Sleep(time.Second) // a late duplicate would show up here
	if v := mustMetric(t, standby, "responsibility_applies_total", applied); v != haChanges {
		t.Errorf("the standby made %v applies, want %d", v, haChanges)
	}
	standbyApplies := mustMetric(t, standby, "responsibility_applies_total", nil)
	total := e.apiServerWrites("configmaps") - base
	if total != haReplicas+2*haChanges {
		t.Errorf("the API server counted %v PATCH/apply requests on ConfigMaps, want %d", total, haReplicas+2*haChanges)
	}
	if sum := leaderApplies + newLeaderApplies + standbyApplies; sum != total {
		t.Errorf("the replicas counted %v applies, the API server %v", sum, total)
	}
	got, err := e.operatorEvents(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for k, n := range got {
		if n != 1 || !want[k] {
			t.Errorf("event %s %s/%s on %s: %d times, expected: %v", k.Reason, k.Model, k.Duty, k.UID, n, want[k])
		}
	}
}

// waitLeader waits until exactly one of two replicas leads.
func (e *env) waitLeader(a, b *devcluster.Operator) (leader, follower *devcluster.Operator) {
	e.t.Helper()
	eventually(e.t, 30*time.Second, "one replica leads", func() (bool, string) {
		la := mustMetric(e.t, a, "leader_election_master_status", map[string]string{"name": leaseName})
		lb := mustMetric(e.t, b, "leader_election_master_status", map[string]string{"name": leaseName})
		switch {
		case la == 1 && lb == 0:
			leader, follower = a, b
		case lb == 1 && la == 0:
			leader, follower = b, a
		default:
			return false, fmt.Sprintf("leader_election_master_status %v and %v", la, lb)
		}
		return true, ""
	})
	return leader, follower
}

// waitLeading waits until a replica leads and returns how long that took,
// polling every 50ms.
func (e *env) waitLeading(op *devcluster.Operator, timeout time.Duration) time.Duration {
	e.t.Helper()
	start := time.Now()
	for time.Since(start) < timeout {
		if v, err := metric(e.t.Context(), op, "leader_election_master_status", map[string]string{"name": leaseName}); err == nil && v == 1 {
			return time.Since(start)
		}
		time.Sleep(50 * time.Millisecond)
	}
	e.t.Fatalf("the replica did not lead within %s", timeout)
	return 0
}

// waitEvents waits until the operator's duty events are exactly want, each
// once.
func (e *env) waitEvents(want map[dutyEvent]bool) {
	e.t.Helper()
	eventually(e.t, 30*time.Second, "the duty events", func() (bool, string) {
		got, err := e.operatorEvents(e.t.Context())
		if err != nil {
			return false, err.Error()
		}
		for k := range want {
			if got[k] != 1 {
				return false, fmt.Sprintf("%s on %s: %d events", k.Reason, k.UID, got[k])
			}
		}
		for k, n := range got {
			if !want[k] {
				return false, fmt.Sprintf("unexpected %s on %s: %d events", k.Reason, k.UID, n)
			}
		}
		return true, ""
	})
}

// apiServerWrites counts the PATCH and server-side apply requests the API
// server has served on a resource.
func (e *env) apiServerWrites(resource string) float64 {
	e.t.Helper()
	fams, err := devcluster.APIServerMetrics(e.t.Context(), e.cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	return fams.Sum("apiserver_request_total", map[string]string{"resource": resource, "verb": "APPLY"}) +
		fams.Sum("apiserver_request_total", map[string]string{"resource": resource, "verb": "PATCH"})
}

// TestLeaderElectionOutsideACluster runs the manager binary as a user runs
// it from a workstation: with a kubeconfig and no pod around it. Without
// flags it runs without leader election (the deployment manifests turn it
// on) and creates no Lease; with --leader-elect alone it puts the Lease in
// the kubeconfig context's namespace, as kubectl would use.
//
// It fails if the manager needs --leader-elect-namespace outside a cluster
// ("unable to find leader election namespace") or puts the Lease elsewhere.
func TestLeaderElectionOutsideACluster(t *testing.T) {
	e := startCluster(t, false)
	ctx := t.Context()
	const ns = "ops"
	e.namespace(ns, nil)
	kubeconfig := filepath.Join(e.dir, "kubeconfig-ops")
	raw, err := os.ReadFile(e.cluster.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(kubeconfig, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	e.kubectl("", "config", "set-context", "--current", "--namespace="+ns, "--kubeconfig="+kubeconfig)

	leases := func() []string {
		list := &coordinationv1.LeaseList{}
		if err := e.c.List(ctx, list); err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, l := range list.Items {
			if l.Name == leaseName {
				out = append(out, l.Namespace+"/"+l.Name)
			}
		}
		return out
	}
	plain := e.startOperator("no-election", "--kubeconfig="+kubeconfig)
	e.waitReady(plain)
	if got := leases(); len(got) != 0 {
		t.Errorf("without --leader-elect the manager created the Lease %v", got)
	}
	if err := plain.Stop(); err != nil {
		t.Errorf("stop the operator: %v", err)
	}

	elected := e.startOperator("election", "--kubeconfig="+kubeconfig, "--leader-elect")
	e.waitReady(elected)
	eventually(t, 30*time.Second, "the manager takes the Lease in the kubeconfig context's namespace", func() (bool, string) {
		got := leases()
		return len(got) == 1 && got[0] == ns+"/"+leaseName, fmt.Sprintf("leases %v", got)
	})
	if exited, err := elected.Exited(); exited {
		t.Fatalf("the operator exited: %v", err)
	}
}

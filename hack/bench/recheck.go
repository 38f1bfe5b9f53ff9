package main

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/responsibility-operator/responsibility-operator/api/v1alpha1"
	"github.com/responsibility-operator/responsibility-operator/hack/bench/benchkit"
	"github.com/responsibility-operator/responsibility-operator/internal/devcluster"
)

// recheckCycles is how many recheck intervals the idle measurement spans.
const recheckCycles = 2

// recheck measures a duty that reads `now` (issue 23). Every compliant
// database gets a CloudNativePG Backup — completed an hour ago, or, for as
// many as the latency stream sends, still running — and the database model
// gains the catalog's evidence duty (a recent successful backup) with the
// -recheck-interval. Then it measures
//   - recheck cycles with nothing changed: every database is evaluated again
//     once per interval, spread over it, with no API write and no event;
//     and the operator's CPU time per cycle;
//   - backups completing at the latency rate: the time from a Backup's
//     status change to its database's annotation.
func (b *bench) recheck(ctx context.Context, r *Results) error {
	var spec *benchkit.Kind
	var model *v1alpha1.ResponsibilityModel
	for i := range benchkit.Kinds {
		if benchkit.Kinds[i].Evidence != "" {
			spec, model = &benchkit.Kinds[i], b.models[i]
		}
	}
	evidence, area, err := catalogDuty(b.o.root, spec.Model, spec.Evidence)
	if err != nil {
		return err
	}
	count := int(b.o.rate * b.o.streamFor.Seconds())
	var backups []*unstructured.Unstructured
	var running []*benchkit.Workload
	var runningBackups []*unstructured.Unstructured
	objects := 0
	for _, w := range b.workloads {
		if w.Kind != spec {
			continue
		}
		objects++
		if !w.Compliant {
			continue
		}
		done := len(running) >= count
		backup := cnpgBackup(w.Obj, done)
		backups = append(backups, backup)
		if !done {
			running = append(running, w)
			runningBackups = append(runningBackups, backup)
		}
	}
	step("recheck: %d Backups (%d running), then duty %s with recheckInterval %s on %d databases", len(backups), len(running), evidence.Name, b.o.recheck, objects)
	if err := benchkit.Parallel(ctx, b.o.concurrency, len(backups), func(i int) error {
		if err := devcluster.Create(ctx, b.c, backups[i]); err != nil {
			return fmt.Errorf("create Backup %s/%s: %w", backups[i].GetNamespace(), backups[i].GetName(), err)
		}
		return nil
	}); err != nil {
		return err
	}
	b.oracle.AddRelated(backups)
	phaseStart, err := b.apiWrites(ctx)
	if err != nil {
		return err
	}
	transitions := b.tracker.TransitionCount()

	b.rechecking = true
	changed, seconds, writes, err := b.editModels(ctx, func(m *v1alpha1.ResponsibilityModel) {
		if m != model {
			return
		}
		m.Spec.RecheckInterval = &metav1.Duration{Duration: b.o.recheck}
		for a := range m.Spec.Areas {
			if m.Spec.Areas[a].Name == area {
				m.Spec.Areas[a].Duties = append(m.Spec.Areas[a].Duties, evidence)
			}
		}
	})
	if err != nil {
		return err
	}
	res := &r.Recheck
	res.Interval, res.Objects, res.Backups = b.o.recheck.String(), objects, len(backups)
	res.Edit = EditResult{ChangedObjects: changed, Writes: int(writes.targets), Seconds: seconds, EventsCreated: writes.events}
	step("the duty is on %d databases (%d writes, %.2fs); measuring %d recheck cycles of %s", changed, res.Edit.Writes, seconds, recheckCycles, b.o.recheck)

	if err := b.idleCycles(ctx, res); err != nil {
		return err
	}
	step("per cycle: %.0f reconciles (peak %.0f/s, mean %.0f/s), %.0f writes, %.0f events, operator CPU %.2fs (%.0f µs per object)",
		res.ReconcilesPerCycle, res.PeakReconcilesPerSecond, res.ReconcilesPerCycle/b.o.recheck.Seconds(), res.WritesPerCycle, res.EventsPerCycle,
		res.OperatorCPUSecondsPerCycle, 1e6*res.OperatorCPUSecondsPerCycle/max(res.ReconcilesPerCycle, 1))

	if res.Stream, err = b.backupsComplete(ctx, running, runningBackups); err != nil {
		return err
	}
	end, err := b.apiWrites(ctx)
	if err != nil {
		return err
	}
	res.EventsCreated = end.sub(phaseStart).events
	res.Transitions = b.tracker.TransitionCount() - transitions
	step("backup completed → annotation: p50 %.0fms, p99 %.0fms, max %.0fms", res.Stream.P50Ms, res.Stream.P99Ms, res.Stream.MaxMs)
	return nil
}

// reportsSettle is longer than the operator's reportDelay (10 s): the
// policy reports of the edit's changes are written before the idle cycles.
const reportsSettle = 15 * time.Second

// idleCycles watches recheckCycles intervals in which nothing changes.
func (b *bench) idleCycles(ctx context.Context, res *RecheckResult) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(reportsSettle):
	}
	profiled := b.profileOperator(ctx, "idle", recheckCycles*b.o.recheck)
	before, err := b.apiWrites(ctx)
	if err != nil {
		return err
	}
	start, err := b.reconciles(ctx)
	if err != nil {
		return err
	}
	last, peak := start, 0.0
	end := time.Now().Add(recheckCycles * b.o.recheck)
	for time.Now().Before(end) {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
		n, err := b.reconciles(ctx)
		if err != nil {
			return err
		}
		peak = max(peak, n-last)
		last = n
	}
	after, err := b.apiWrites(ctx)
	if err != nil {
		return err
	}
	if err := <-profiled; err != nil {
		return err
	}
	d := after.sub(before)
	res.Cycles = recheckCycles
	res.ReconcilesPerCycle = (last - start) / recheckCycles
	res.PeakReconcilesPerSecond = peak
	res.WritesPerCycle = d.all / recheckCycles
	res.TargetWritesPerCycle = d.targets / recheckCycles
	res.EventsPerCycle = d.events / recheckCycles
	res.ReadsPerCycle = d.reads / recheckCycles
	res.OperatorCPUSecondsPerCycle = d.operatorCPUSeconds / recheckCycles
	res.OtherWrites = d.others(b.gvrs)
	return nil
}

// backupsComplete completes the running Backups at the latency rate and
// measures until each database carries its new annotations.
func (b *bench) backupsComplete(ctx context.Context, running []*benchkit.Workload, backups []*unstructured.Unstructured) (LatencyResult, error) {
	before, err := b.apiWrites(ctx)
	if err != nil {
		return LatencyResult{}, err
	}
	transitions := b.tracker.TransitionCount()
	profiled := b.profileOperator(ctx, "stream", time.Duration(float64(len(running))/b.o.rate*float64(time.Second)))
	tick := time.NewTicker(time.Duration(float64(time.Second) / b.o.rate))
	defer tick.Stop()
	var failed atomic.Int32
	var wg sync.WaitGroup
	for i, w := range running {
		<-tick.C
		status := completed(time.Now())
		// The oracle's lister holds this object: it sees the new status.
		if err := unstructured.SetNestedField(backups[i].Object, status, "status"); err != nil {
			return LatencyResult{}, err
		}
		want := b.oracle.Want(w.Obj)
		patch := fmt.Appendf(nil, `{"status":{"phase":%q,"startedAt":%q,"stoppedAt":%q}}`, status["phase"], status["startedAt"], status["stoppedAt"])
		target := backups[i].DeepCopy()
		wg.Add(1)
		go func() {
			defer wg.Done()
			b.tracker.Expect(w.Key(), want, time.Now())
			if err := b.c.Status().Patch(ctx, target, client.RawPatch(types.MergePatchType, patch)); err != nil {
				failed.Add(1)
			}
		}()
	}
	wg.Wait()
	if n := failed.Load(); n > 0 {
		return LatencyResult{}, fmt.Errorf("recheck: %d Backup status patches failed", n)
	}
	if err := <-profiled; err != nil {
		return LatencyResult{}, err
	}
	if _, err := b.tracker.Wait(ctx, b.timeout()); err != nil {
		return LatencyResult{}, err
	}
	if err := b.settle(ctx, 0); err != nil {
		return LatencyResult{}, err
	}
	after, err := b.apiWrites(ctx)
	if err != nil {
		return LatencyResult{}, err
	}
	lat := b.tracker.TakeLatencies()
	n := len(running)
	return LatencyResult{
		Updates: n, RatePerSecond: b.o.rate,
		P50Ms: ms(percentile(lat, 0.50)), P99Ms: ms(percentile(lat, 0.99)), MaxMs: ms(percentile(lat, 1)),
		EventsCreated: after.sub(before).events, Transitions: b.tracker.TransitionCount() - transitions,
		WritesPerUpdate: after.sub(before).targets / float64(max(n, 1)),
	}, nil
}

// cnpgBackup is a CloudNativePG Backup of a database (docs/src/backup.md of
// CloudNativePG 1.30: "Once the backup has successfully completed, the phase
// will be set to completed"), completed an hour ago or still running.
func cnpgBackup(cluster *unstructured.Unstructured, done bool) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "postgresql.cnpg.io/v1",
		"kind":       "Backup",
		"metadata":   map[string]any{"name": cluster.GetName() + "-base", "namespace": cluster.GetNamespace()},
		"spec":       map[string]any{"method": "barmanObjectStore", "cluster": map[string]any{"name": cluster.GetName()}},
	}}
	status := map[string]any{"phase": "running", "startedAt": time.Now().UTC().Format(time.RFC3339)}
	if done {
		status = completed(time.Now().Add(-time.Hour))
	}
	u.Object["status"] = status
	return u
}

func completed(at time.Time) map[string]any {
	return map[string]any{
		"phase":     "completed",
		"startedAt": at.Add(-4 * time.Second).UTC().Format(time.RFC3339),
		"stoppedAt": at.UTC().Format(time.RFC3339),
	}
}

// profileOperator saves, with -recheck-cpu-profile, a CPU profile of the
// operator over the next d (whole seconds, at least one) as
// PREFIX-phase.pprof. The channel gets its error once it is done (at once
// without the flag).
func (b *bench) profileOperator(ctx context.Context, phase string, d time.Duration) <-chan error {
	done := make(chan error, 1)
	if b.o.recheckProfile == "" {
		done <- nil
		return done
	}
	go func() {
		seconds := max(int(d.Seconds()), 1)
		done <- saveProfile(ctx, b.pprofPort, fmt.Sprintf("profile?seconds=%d", seconds), b.o.recheckProfile+"-"+phase+".pprof")
	}()
	return done
}

// catalogDuty returns a duty of a catalog model and the name of its area.
func catalogDuty(root, file, name string) (v1alpha1.Duty, string, error) {
	rm, err := benchkit.CatalogModel(root, file)
	if err != nil {
		return v1alpha1.Duty{}, "", err
	}
	for _, a := range rm.Spec.Areas {
		for _, d := range a.Duties {
			if d.Name == name {
				return d, a.Name, nil
			}
		}
	}
	return v1alpha1.Duty{}, "", fmt.Errorf("config/catalog/%s has no duty %s", file, name)
}

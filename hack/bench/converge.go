package main

import (
	"context"
	"fmt"
	"time"
)

// convergeTimeout is how long the operator's convergence may take: the
// general timeout, or three times the slower plain pass when that is longer
// (at 50,000 objects a plain pass took 376–481 s, longer than the general
// 620 s allows the operator once it is more than 1.3 times as slow).
func (b *bench) convergeTimeout(r *Results) time.Duration {
	plain := time.Duration(3 * max(r.Baseline.Seconds, r.Baseline.AgainSeconds) * float64(time.Second))
	return max(b.timeout(), plain)
}

// converge starts the operator, applies the models and waits until every
// workload carries its final annotations.
func (b *bench) converge(ctx context.Context, r *Results) error {
	step("starting the operator")
	if err := b.startOperator(ctx); err != nil {
		return err
	}
	for _, w := range b.workloads {
		b.tracker.Expect(w.Key(), b.oracle.Want(w.Obj), time.Time{})
	}
	before, err := b.apiWrites(ctx)
	if err != nil {
		return err
	}
	transitions := b.tracker.TransitionCount()
	step("applying %d models with 5 duties each", len(b.models))
	b.tracker.First()
	start := time.Now()
	for _, m := range b.models {
		if err := b.c.Create(ctx, m.DeepCopy()); err != nil {
			return fmt.Errorf("create model %s: %w", m.Name, err)
		}
	}
	serverProfiled := b.profileServer(ctx, "converge")
	profiled := make(chan error, 1)
	if b.o.cpuProfile != "" {
		go func() {
			profiled <- saveProfile(ctx, b.pprofPort, fmt.Sprintf("profile?seconds=%d", profileSeconds(r.Baseline.Seconds)), b.o.cpuProfile)
		}()
	} else {
		profiled <- nil
	}
	breakdownCtx, stopBreakdown := context.WithCancel(ctx)
	go b.logBreakdown(breakdownCtx)
	last, err := b.tracker.Wait(ctx, b.convergeTimeout(r))
	stopBreakdown()
	if err != nil {
		return err
	}
	if err := <-profiled; err != nil {
		return err
	}
	if err := <-serverProfiled; err != nil {
		return err
	}
	r.Converge.Seconds = last.Sub(start).Seconds()
	r.Converge.Ratio = r.Converge.Seconds / r.Baseline.Seconds
	r.Converge.RatioToAgain = r.Converge.Seconds / r.Baseline.AgainSeconds
	r.Converge.FirstWriteSeconds = b.tracker.First().Sub(start).Seconds()
	step("converged in %.2fs (%.2f × baseline, %.2f × baseline again); the first object was done after %.2fs", r.Converge.Seconds, r.Converge.Ratio, r.Converge.RatioToAgain, r.Converge.FirstWriteSeconds)
	if err := b.settle(ctx, 0); err != nil {
		return err
	}
	after, err := b.apiWrites(ctx)
	if err != nil {
		return err
	}
	if b.o.heapProfile != "" {
		if err := saveProfile(ctx, b.pprofPort, "heap?gc=1", b.o.heapProfile); err != nil {
			return err
		}
	}
	if f, err := b.operator.Metrics(ctx); err == nil {
		r.Converge.OperatorCPUSeconds = f.Sum("process_cpu_seconds_total", nil)
		r.Converge.Reconciles = int(f.Sum("controller_runtime_reconcile_total", map[string]string{"controller": "workload"}))
		r.Converge.MeanReconcileMs = 1000 * f.Mean("controller_runtime_reconcile_time_seconds", map[string]string{"controller": "workload"})
		r.Converge.MeanApplyMs = 1000 * f.Mean("responsibility_apply_duration_seconds", nil)
		r.Converge.MeanEvaluationMs = 1000 * f.Mean("responsibility_evaluation_duration_seconds", nil)
		step("mean reconcile %.1fms, of which apply %.1fms and evaluation %.2fms",
			r.Converge.MeanReconcileMs, r.Converge.MeanApplyMs, r.Converge.MeanEvaluationMs)
	}
	r.Converge.WritesPerObject = after.sub(before).targets / float64(len(b.workloads))
	r.Converge.ServerApplyMs = after.sub(before).meanApplyMs()
	r.Converge.ServerCPUSeconds = after.sub(before).cpuSeconds
	r.Converge.EtcdCPUSeconds = after.sub(before).etcdCPUSeconds
	step("the server's mean apply %.1fms; CPU: API server %.1fs, etcd %.1fs, operator %.1fs (from its start)",
		r.Converge.ServerApplyMs, r.Converge.ServerCPUSeconds, r.Converge.EtcdCPUSeconds, r.Converge.OperatorCPUSeconds)
	r.Converge.EventsCreated = after.sub(before).events
	r.Converge.OtherWrites = after.sub(before).all - after.sub(before).targets - after.sub(before).events
	r.Converge.Transitions = b.tracker.TransitionCount() - transitions
	step("first convergence: %.3f writes per object, %d reconciles, %d events for %d transitions, %d other writes (models, reports, leases), %d reads",
		r.Converge.WritesPerObject, r.Converge.Reconciles, int(r.Converge.EventsCreated), r.Converge.Transitions, int(r.Converge.OtherWrites), int(after.sub(before).reads))
	step("other writes: %s", after.sub(before).others(b.gvrs))
	return nil
}

// profileSeconds is how long the operator's CPU profile of its convergence
// runs: about as long as a plain pass, so that it covers the convergence
// rather than its start (the initial list), within 10 s to 5 min.
func profileSeconds(plainSeconds float64) int {
	return int(min(max(plainSeconds, 10), 300))
}

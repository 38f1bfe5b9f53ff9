package main

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"github.com/responsibility-operator/responsibility-operator/api/v1alpha1"
	"github.com/responsibility-operator/responsibility-operator/internal/devcluster"
)

func (b *bench) startOperator(ctx context.Context) error {
	// The workloads exist before the operator starts, but at -n 1000 they
	// can be younger than the event grace period when it first evaluates
	// them: held duty events would then cost a second write on the
	// neglected ones and hold their annotations' last key back, measuring
	// the length of the baseline passes rather than the operator. A
	// -operator-arg=--event-grace-period=... of its own, later, wins.
	args := append([]string{"--event-grace-period=0s"}, b.o.operatorArgs...)
	if b.o.heapProfile != "" || b.o.cpuProfile != "" || b.o.recheckProfile != "" {
		port, err := devcluster.FreePort()
		if err != nil {
			return err
		}
		b.pprofPort = port
		args = append([]string{fmt.Sprintf("--pprof-bind-address=127.0.0.1:%d", port)}, args...)
	}
	op, err := devcluster.StartOperator(devcluster.OperatorOptions{
		Binary: b.o.manager, Kubeconfig: b.cluster.Kubeconfig, LogPath: filepath.Join(b.o.dir, "manager.log"),
		Args: args, Env: b.o.operatorEnv, Nice: b.o.operatorNice,
	})
	if err != nil {
		return err
	}
	b.operator = op
	go b.sampleHeap(ctx, op)
	if err := op.WaitReady(ctx, 30*time.Second); err != nil {
		return err
	}
	// Ready is not yet working: the controllers start once the operator
	// leads. The plain client is timed from its first request, so the
	// operator is timed from when its workers run.
	return op.WaitWorking(ctx, "workload", 30*time.Second)
}

// sampleHeap records the operator's largest in-use heap while it runs.
func (b *bench) sampleHeap(ctx context.Context, op *devcluster.Operator) {
	for {
		if exited, _ := op.Exited(); exited {
			return
		}
		if f, err := op.Metrics(ctx); err == nil {
			h := f.Sum("go_memstats_heap_inuse_bytes", nil)
			b.heapMu.Lock()
			b.peakHeap = max(b.peakHeap, h)
			b.heapMu.Unlock()
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// stopOperator stops the operator and keeps its peak RSS and event count.
func (b *bench) stopOperator(ctx context.Context) error {
	if err := b.recordOperator(ctx); err != nil {
		return err
	}
	err := b.operator.Stop()
	b.operator = nil
	return err
}

func (b *bench) recordOperator(ctx context.Context) error {
	rss, err := b.operator.PeakRSS()
	if err != nil {
		return err
	}
	b.peakRSS = max(b.peakRSS, rss)
	f, err := b.operator.Metrics(ctx)
	if err != nil {
		return err
	}
	b.operatorEvents += dutyEvents(f)
	return nil
}

func dutyEvents(f devcluster.Families) float64 {
	return f.Sum("responsibility_events_total", map[string]string{"reason": v1alpha1.EventCustomerDutyUnmet}) +
		f.Sum("responsibility_events_total", map[string]string{"reason": v1alpha1.EventCustomerDutyMet})
}

func (b *bench) timeout() time.Duration {
	return 2*time.Minute + time.Duration(b.o.n)*10*time.Millisecond
}

// settle waits until the operator's workload queue is empty and idle and it
// has reconciled at least minReconciles times since it started. Once
// rechecks run (b.rechecking), reconciles never stop: an empty, idle queue
// is enough.
func (b *bench) settle(ctx context.Context, minReconciles float64) error {
	deadline := time.Now().Add(b.timeout())
	stable, last := 0, -1.0
	for {
		f, err := b.operator.Metrics(ctx)
		if err != nil {
			return err
		}
		depth := f.Sum("workqueue_depth", map[string]string{"name": "workload"})
		active := f.Sum("controller_runtime_active_workers", map[string]string{"controller": "workload"})
		total := f.Sum("controller_runtime_reconcile_total", map[string]string{"controller": "workload"})
		if depth == 0 && active == 0 && total >= minReconciles && (total == last || b.rechecking) {
			stable++
			if stable >= 3 {
				return nil
			}
		} else {
			stable = 0
		}
		last = total
		if time.Now().After(deadline) {
			return fmt.Errorf("the operator did not settle: queue depth %v, active %v, %v of %v reconciles", depth, active, total, minReconciles)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func (b *bench) reconciles(ctx context.Context) (float64, error) {
	f, err := b.operator.Metrics(ctx)
	if err != nil {
		return 0, err
	}
	return f.Sum("controller_runtime_reconcile_total", map[string]string{"controller": "workload"}), nil
}

// finish records memory and the event totals.
func (b *bench) finish(ctx context.Context, r *Results) error {
	if err := b.stopOperator(ctx); err != nil {
		return err
	}
	b.heapMu.Lock()
	r.Memory.PeakRSSMiB = float64(b.peakRSS) / (1 << 20)
	r.Memory.PeakHeapInuseMiB = b.peakHeap / (1 << 20)
	b.heapMu.Unlock()
	r.Events.Transitions = r.Converge.Transitions + r.Latency.Transitions + r.Recheck.Transitions
	r.Events.Created = int(r.Converge.EventsCreated + r.Restart.EventsCreated + r.SmallEdit.EventsCreated + r.FanOut.EventsCreated + r.Latency.EventsCreated + r.Recheck.EventsCreated)
	r.Events.CountedByOperator = int(b.operatorEvents)
	return nil
}

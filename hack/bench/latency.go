package main

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/responsibility-operator/responsibility-operator/hack/bench/benchkit"
)

// latency updates compliant workloads at a steady rate so that one duty
// becomes unmet, and measures until each carries its new annotations.
func (b *bench) latency(ctx context.Context, r *Results) error {
	var candidates []*benchkit.Workload
	for _, w := range b.workloads {
		if w.Compliant && w.Kind.Drift != nil {
			candidates = append(candidates, w)
		}
	}
	count := min(int(b.o.rate*b.o.streamFor.Seconds()), len(candidates))
	step("latency: %d updates at %.0f/s", count, b.o.rate)
	before, err := b.apiWrites(ctx)
	if err != nil {
		return err
	}
	transitions := b.tracker.TransitionCount()
	tick := time.NewTicker(time.Duration(float64(time.Second) / b.o.rate))
	defer tick.Stop()
	var failed atomic.Int32
	var wg sync.WaitGroup
	for i := range count {
		<-tick.C
		w := candidates[i]
		cur := &unstructured.Unstructured{}
		cur.SetGroupVersionKind(w.Obj.GroupVersionKind())
		if err := b.c.Get(ctx, client.ObjectKeyFromObject(w.Obj), cur); err != nil {
			return err
		}
		w.Kind.Drift(cur)
		w.Kind.Drift(w.Obj)
		wg.Add(1)
		go func() {
			defer wg.Done()
			b.tracker.Expect(w.Key(), b.oracle.Want(w.Obj), time.Now())
			if err := b.c.Update(ctx, cur); err != nil {
				failed.Add(1)
			}
		}()
	}
	wg.Wait()
	if n := failed.Load(); n > 0 {
		return fmt.Errorf("latency: %d updates failed", n)
	}
	if _, err := b.tracker.Wait(ctx, b.timeout()); err != nil {
		return err
	}
	if err := b.settle(ctx, 0); err != nil {
		return err
	}
	after, err := b.apiWrites(ctx)
	if err != nil {
		return err
	}
	lat := b.tracker.TakeLatencies()
	r.Latency = LatencyResult{
		Updates: count, RatePerSecond: b.o.rate,
		P50Ms: ms(percentile(lat, 0.50)), P99Ms: ms(percentile(lat, 0.99)), MaxMs: ms(percentile(lat, 1)),
		EventsCreated: after.sub(before).events, Transitions: b.tracker.TransitionCount() - transitions,
		WritesPerUpdate: (after.sub(before).targets - float64(count)) / float64(max(count, 1)),
	}
	step("latency p50 %.0fms, p99 %.0fms, max %.0fms", r.Latency.P50Ms, r.Latency.P99Ms, r.Latency.MaxMs)
	return nil
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(p*float64(len(sorted))+0.5) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

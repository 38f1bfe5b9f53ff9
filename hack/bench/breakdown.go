package main

import (
	"context"
	"time"
)

// breakdownEvery is how often logBreakdown reports.
const breakdownEvery = 30 * time.Second

// logBreakdown logs, every breakdownEvery until ctx ends, what the API
// server did in the last interval and who used the CPU: the rate of applies
// to the workloads and the server's mean time for one, the cores the API
// server, etcd, the operator and this benchmark (its watches) used, and the
// other writes. A convergence that slows part way (at 50,000 objects it
// did) shows which of them grew.
func (b *bench) logBreakdown(ctx context.Context) {
	prev, err := b.apiWrites(ctx)
	if err != nil {
		return
	}
	prevSelf := processCPUSeconds()
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(breakdownEvery):
		}
		cur, err := b.apiWrites(ctx)
		if err != nil {
			return
		}
		self := processCPUSeconds()
		d, s := cur.sub(prev), breakdownEvery.Seconds()
		step("last %s: %.0f applies/s to workloads (the server's mean %.1fms), %.0f events/s; cores: API server %.2f, etcd %.2f, operator %.2f, this benchmark %.2f; other writes: %s",
			breakdownEvery, d.applies/s, d.meanApplyMs(), d.events/s, d.cpuSeconds/s, d.etcdCPUSeconds/s, d.operatorCPUSeconds/s, (self-prevSelf)/s, d.others(b.gvrs))
		prev, prevSelf = cur, self
	}
}

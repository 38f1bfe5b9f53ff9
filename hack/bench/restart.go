package main

import (
	"context"
	"time"
)

// restart stops the operator and starts it again.
func (b *bench) restart(ctx context.Context, r *Results) error {
	step("restarting the operator")
	before, err := b.apiWrites(ctx)
	if err != nil {
		return err
	}
	if err := b.stopOperator(ctx); err != nil {
		return err
	}
	start := time.Now()
	if err := b.startOperator(ctx); err != nil {
		return err
	}
	if err := b.settle(ctx, float64(len(b.workloads))); err != nil {
		return err
	}
	r.Restart.Seconds = time.Since(start).Seconds()
	after, err := b.apiWrites(ctx)
	if err != nil {
		return err
	}
	rec, err := b.reconciles(ctx)
	if err != nil {
		return err
	}
	r.Restart.Reconciles = int(rec)
	r.Restart.Writes = int(after.sub(before).targets)
	r.Restart.WritesPerObject = after.sub(before).targets / float64(len(b.workloads))
	r.Restart.EventsCreated = after.sub(before).events
	step("restarted and re-evaluated everything in %.2fs: %d reconciles, %d writes, %d events",
		r.Restart.Seconds, r.Restart.Reconciles, r.Restart.Writes, int(r.Restart.EventsCreated))
	return nil
}

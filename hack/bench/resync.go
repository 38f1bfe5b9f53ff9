package main

import (
	"context"
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/responsibility-operator/responsibility-operator/hack/bench/benchkit"
)

// resync makes the operator re-evaluate every workload without a change to
// any input (an annotation on every namespace), and counts the writes.
func (b *bench) resync(ctx context.Context, r *Results) error {
	step("forced re-evaluation: touching an annotation of every namespace")
	before, err := b.apiWrites(ctx)
	if err != nil {
		return err
	}
	reconciles, err := b.reconciles(ctx)
	if err != nil {
		return err
	}
	for i := range b.o.namespaces {
		ns := &unstructured.Unstructured{}
		ns.SetAPIVersion("v1")
		ns.SetKind("Namespace")
		ns.SetName(benchkit.NamespaceName(i))
		patch := client.RawPatch("application/merge-patch+json", []byte(`{"metadata":{"annotations":{"bench.responsibility.io/touched":"`+time.Now().Format(time.RFC3339Nano)+`"}}}`))
		if err := b.c.Patch(ctx, ns, patch); err != nil {
			return fmt.Errorf("touch namespace: %w", err)
		}
	}
	if err := b.settle(ctx, reconciles+float64(len(b.workloads))); err != nil {
		return err
	}
	after, err := b.apiWrites(ctx)
	if err != nil {
		return err
	}
	now, err := b.reconciles(ctx)
	if err != nil {
		return err
	}
	r.Resync.Reconciles = int(now - reconciles)
	r.Resync.Writes = int(after.sub(before).targets)
	r.Resync.WritesPerObject = after.sub(before).targets / float64(len(b.workloads))
	step("re-evaluated %d times, %d writes", r.Resync.Reconciles, r.Resync.Writes)
	return nil
}

package main

import (
	"context"
	"fmt"
	"slices"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/responsibility-operator/responsibility-operator/api/v1alpha1"
	"github.com/responsibility-operator/responsibility-operator/hack/bench/benchkit"
)

// baseline times a plain client applying, with the same concurrency, the
// same annotations the operator will write (under keys of its own), with
// server-side apply and a UID precondition like the operator's.
func (b *bench) baseline(ctx context.Context, r *Results) error {
	step("baseline: a plain client applies the same annotations to %d objects, %d at a time", len(b.workloads), b.o.concurrency)
	clientBefore := processCPUSeconds()
	profiled := b.profileServer(ctx, "baseline")
	seconds, writes, err := b.measuredPass(ctx, b.oracle)
	if err != nil {
		return fmt.Errorf("baseline: %w", err)
	}
	if err := <-profiled; err != nil {
		return err
	}
	r.Baseline.ClientCPUSeconds = processCPUSeconds() - clientBefore
	r.Baseline.Seconds = seconds
	r.Baseline.WritesPerSecond = float64(len(b.workloads)) / seconds
	r.Baseline.ServerApplyMs = writes.meanApplyMs()
	r.Baseline.ServerCPUSeconds = writes.cpuSeconds
	r.Baseline.EtcdCPUSeconds = writes.etcdCPUSeconds
	step("baseline: %.2fs, %.0f writes/s, the server's mean apply %.1fms; CPU: API server %.1fs, etcd %.1fs, client %.1fs",
		r.Baseline.Seconds, r.Baseline.WritesPerSecond, r.Baseline.ServerApplyMs, r.Baseline.ServerCPUSeconds, r.Baseline.EtcdCPUSeconds, r.Baseline.ClientCPUSeconds)

	// Rewriting annotations an object carries costs the server more than
	// adding them (the old values and managed fields are read and
	// compared): the fan-out after a full model edit is compared with the
	// plain client doing that rewrite too.
	if !slices.Contains(b.o.skip, phaseFanOut) {
		if err := b.rewriteBaseline(ctx, r); err != nil {
			return err
		}
	}
	// The baseline's keys go again, so that the operator's cache holds
	// objects of the size they have in a cluster.
	if r.Baseline.RemoveSeconds, err = b.applyAll(ctx, b.oracle, false); err != nil {
		return fmt.Errorf("remove the baseline's annotations: %w", err)
	}
	step("baseline removal of its annotations: %.2fs", r.Baseline.RemoveSeconds)
	return b.secondPass(ctx, r)
}

// rewriteBaseline is the plain client's pass that a fan-out is compared
// with: the values of a full model edit over the first pass's.
func (b *bench) rewriteBaseline(ctx context.Context, r *Results) error {
	edited := make([]*v1alpha1.ResponsibilityModel, len(b.models))
	for i, m := range b.models {
		edited[i] = m.DeepCopy()
		fullEdit(edited[i])
	}
	rewrite, err := b.oracle.With(edited)
	if err != nil {
		return err
	}
	var writes apiWrites
	if r.Baseline.RewriteSeconds, writes, err = b.measuredPass(ctx, rewrite); err != nil {
		return fmt.Errorf("rewrite baseline: %w", err)
	}
	r.Baseline.RewriteServerCPUSeconds = writes.cpuSeconds
	r.Baseline.RewriteEtcdCPUSeconds = writes.etcdCPUSeconds
	step("baseline rewrite with the values of a full model edit: %.2fs; CPU: API server %.1fs, etcd %.1fs",
		r.Baseline.RewriteSeconds, r.Baseline.RewriteServerCPUSeconds, r.Baseline.RewriteEtcdCPUSeconds)
	return nil
}

// secondPass is the plain client's pass on objects written and cleared
// before, as the operator finds them.
func (b *bench) secondPass(ctx context.Context, r *Results) error {
	var (
		writes apiWrites
		err    error
	)
	// The first pass wrote to objects never written before; the operator
	// writes to objects written three times. The same pass again, on
	// objects in that state, shows how much that alone costs.
	if r.Baseline.AgainSeconds, writes, err = b.measuredPass(ctx, b.oracle); err != nil {
		return fmt.Errorf("baseline again: %w", err)
	}
	r.Baseline.AgainServerApplyMs = writes.meanApplyMs()
	r.Baseline.AgainServerCPUSeconds = writes.cpuSeconds
	r.Baseline.AgainEtcdCPUSeconds = writes.etcdCPUSeconds
	step("baseline again, on objects as the operator finds them: %.2fs, the server's mean apply %.1fms; CPU: API server %.1fs, etcd %.1fs",
		r.Baseline.AgainSeconds, r.Baseline.AgainServerApplyMs, r.Baseline.AgainServerCPUSeconds, r.Baseline.AgainEtcdCPUSeconds)
	if _, err := b.applyAll(ctx, b.oracle, false); err != nil {
		return fmt.Errorf("remove the baseline's annotations again: %w", err)
	}
	return nil
}

// measuredPass applies, as the baseline client, the annotations an oracle
// wants, and returns how long it took and what the API server counted
// meanwhile.
func (b *bench) measuredPass(ctx context.Context, o *benchkit.Oracle) (float64, apiWrites, error) {
	before, err := b.apiWrites(ctx)
	if err != nil {
		return 0, apiWrites{}, err
	}
	seconds, err := b.applyAll(ctx, o, true)
	if err != nil {
		return 0, apiWrites{}, err
	}
	after, err := b.apiWrites(ctx)
	if err != nil {
		return 0, apiWrites{}, err
	}
	return seconds, after.sub(before), nil
}

// applyAll applies, as the baseline client, the annotations an oracle wants
// (or, without keep, none, which removes the client's keys), and returns
// how long it took.
func (b *bench) applyAll(ctx context.Context, o *benchkit.Oracle, keep bool) (float64, error) {
	patches := make([]*unstructured.Unstructured, len(b.workloads))
	for i, w := range b.workloads {
		annotations, labels := map[string]any{}, map[string]any{}
		if keep {
			a, l := o.Desired(w.Obj)
			annotations, labels = rekey(a), rekey(l)
		}
		patches[i] = metadataPatch(w.Obj, annotations, labels)
	}
	start := time.Now()
	err := benchkit.Parallel(ctx, b.o.concurrency, len(patches), func(i int) error {
		return b.c.Apply(ctx, client.ApplyConfigurationFromUnstructured(patches[i]), client.FieldOwner("bench-baseline"), client.ForceOwnership)
	})
	return time.Since(start).Seconds(), err
}

// rekey moves the operator's keys under the benchmark's own prefix.
func rekey(m map[string]string) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out["bench."+k] = v
	}
	return out
}

func metadataPatch(obj *unstructured.Unstructured, annotations, labels map[string]any) *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": obj.GetAPIVersion(),
		"kind":       obj.GetKind(),
		"metadata": map[string]any{
			"name": obj.GetName(), "namespace": obj.GetNamespace(), "uid": string(obj.GetUID()),
			"annotations": annotations, "labels": labels,
		},
	}}
}

// closingBaseline runs the plain client's pass once more, the operator
// stopped, on the objects as the operator left them. The same pass differs by
// a fifth and more between runs and within one (the server's heap grows with
// its watch cache, the machine is shared), and the first pass runs on the
// freshest server: the ratios the goals use are to the median of the three
// passes, which bracket the operator's phases.
func (b *bench) closingBaseline(ctx context.Context, r *Results) error {
	step("baseline once more, the operator stopped: %d objects, %d at a time", len(b.workloads), b.o.concurrency)
	seconds, writes, err := b.measuredPass(ctx, b.oracle)
	if err != nil {
		return fmt.Errorf("closing baseline: %w", err)
	}
	r.Baseline.AfterSeconds = seconds
	r.Baseline.AfterServerApplyMs = writes.meanApplyMs()
	r.Baseline.AfterServerCPUSeconds = writes.cpuSeconds
	r.Baseline.AfterEtcdCPUSeconds = writes.etcdCPUSeconds
	passes := []float64{r.Baseline.Seconds, r.Baseline.AgainSeconds, r.Baseline.AfterSeconds}
	slices.Sort(passes)
	r.Baseline.MedianSeconds = passes[1]
	r.Converge.RatioToMedian = r.Converge.Seconds / r.Baseline.MedianSeconds
	r.FanOut.RatioToMedian = b.fanOutRatio(r, r.Baseline.MedianSeconds)
	step("baseline once more: %.2fs, the server's mean apply %.1fms; CPU: API server %.1fs, etcd %.1fs",
		r.Baseline.AfterSeconds, r.Baseline.AfterServerApplyMs, r.Baseline.AfterServerCPUSeconds, r.Baseline.AfterEtcdCPUSeconds)
	step("the plain client's passes: %.2fs, %.2fs, %.2fs, median %.2fs; converge %.2f × and fan-out %.2f × the median",
		r.Baseline.Seconds, r.Baseline.AgainSeconds, r.Baseline.AfterSeconds, r.Baseline.MedianSeconds, r.Converge.RatioToMedian, r.FanOut.RatioToMedian)
	return nil
}

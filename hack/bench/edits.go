package main

import (
	"context"
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/responsibility-operator/responsibility-operator/api/v1alpha1"
	"github.com/responsibility-operator/responsibility-operator/hack/bench/benchkit"
)

// editModels changes the models and waits for the workloads to follow.
func (b *bench) editModels(ctx context.Context, edit func(*v1alpha1.ResponsibilityModel)) (changed int, seconds float64, writes apiWrites, err error) {
	edited := map[*benchkit.Kind]bool{}
	for i, m := range b.models {
		before := m.Spec.DeepCopy()
		edit(m)
		edited[&benchkit.Kinds[i]] = !equality.Semantic.DeepEqual(before, &m.Spec)
	}
	reevaluated := 0
	for _, w := range b.workloads {
		if edited[w.Kind] {
			reevaluated++
		}
	}
	if err := b.oracle.SetModels(b.models); err != nil {
		return 0, 0, apiWrites{}, err
	}
	for _, w := range b.workloads {
		want := b.oracle.Want(w.Obj)
		if b.tracker.Wants(w.Key()) != want {
			changed++
		}
		b.tracker.Expect(w.Key(), want, time.Time{})
	}
	before, err := b.apiWrites(ctx)
	if err != nil {
		return 0, 0, apiWrites{}, err
	}
	rec, err := b.reconciles(ctx)
	if err != nil {
		return 0, 0, apiWrites{}, err
	}
	b.tracker.First()
	start := time.Now()
	for _, m := range b.models {
		cur := &v1alpha1.ResponsibilityModel{}
		if err := b.c.Get(ctx, client.ObjectKeyFromObject(m), cur); err != nil {
			return 0, 0, apiWrites{}, err
		}
		cur.Spec = m.Spec
		if err := b.c.Update(ctx, cur); err != nil {
			return 0, 0, apiWrites{}, fmt.Errorf("update model %s: %w", m.Name, err)
		}
	}
	last, err := b.tracker.Wait(ctx, b.timeout())
	if err != nil {
		return 0, 0, apiWrites{}, err
	}
	if changed > 0 {
		seconds = last.Sub(start).Seconds()
		step("the first object was done after %.2fs", b.tracker.First().Sub(start).Seconds())
	}
	// Every workload of an edited model is re-evaluated.
	if err := b.settle(ctx, rec+float64(reevaluated)); err != nil {
		return 0, 0, apiWrites{}, err
	}
	after, err := b.apiWrites(ctx)
	if err != nil {
		return 0, 0, apiWrites{}, err
	}
	return changed, seconds, after.sub(before), nil
}

// smallEdit rewords the message of one duty: only the workloads on which
// that duty is unmet change.
func (b *bench) smallEdit(ctx context.Context, r *Results) error {
	step("model edit that changes few workloads: rewording one unmet message")
	changed, seconds, writes, err := b.editModels(ctx, func(m *v1alpha1.ResponsibilityModel) {
		for a := range m.Spec.Areas {
			for d := range m.Spec.Areas[a].Duties {
				if duty := &m.Spec.Areas[a].Duties[d]; duty.Name == "image-pinned" {
					// The catalog's duty words its message with an
					// expression, which wins over the message.
					if duty.MessageExpression != "" {
						duty.MessageExpression = "(" + duty.MessageExpression + ") + ' (see the image policy)'"
					} else {
						duty.Message += " (see the image policy)"
					}
				}
			}
		}
	})
	if err != nil {
		return err
	}
	r.SmallEdit = EditResult{ChangedObjects: changed, Writes: int(writes.targets), Seconds: seconds, EventsCreated: writes.events}
	step("%d workloads changed, %d writes, %.2fs", changed, r.SmallEdit.Writes, seconds)
	return nil
}

// fanOut changes the matrix of every model: every workload changes.
func (b *bench) fanOut(ctx context.Context, r *Results) error {
	step("model edit that changes every workload: rewording every model's first area")
	changed, seconds, writes, err := b.editModels(ctx, fullEdit)
	if err != nil {
		return err
	}
	r.FanOut = EditResult{ChangedObjects: changed, Writes: int(writes.targets), Seconds: seconds, EventsCreated: writes.events,
		ServerApplyMs: writes.meanApplyMs(), ServerCPUSeconds: writes.cpuSeconds, EtcdCPUSeconds: writes.etcdCPUSeconds, OperatorCPUSeconds: writes.operatorCPUSeconds}
	r.FanOut.Ratio = b.fanOutRatio(r, r.Baseline.Seconds)
	r.FanOut.RatioToRewrite = b.fanOutRatio(r, r.Baseline.RewriteSeconds)
	step("%d workloads changed, %d writes, %.2fs (%.2f × baseline, %.2f × a plain rewrite); CPU: API server %.1fs, etcd %.1fs, operator %.1fs",
		changed, r.FanOut.Writes, seconds, r.FanOut.Ratio, r.FanOut.RatioToRewrite, r.FanOut.ServerCPUSeconds, r.FanOut.EtcdCPUSeconds, r.FanOut.OperatorCPUSeconds)
	return nil
}

// fanOutRatio is the fan-out's time over a plain pass's, scaled to every
// workload when the edit changed fewer.
func (b *bench) fanOutRatio(r *Results, pass float64) float64 {
	return r.FanOut.Seconds / pass * float64(len(b.workloads)) / float64(max(r.FanOut.ChangedObjects, 1))
}

// fullEdit rewords the first area of a model: every object it matches changes.
func fullEdit(m *v1alpha1.ResponsibilityModel) {
	m.Spec.Areas[0].Customer += " (reviewed)"
}

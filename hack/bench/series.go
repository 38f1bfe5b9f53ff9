package main

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/responsibility-operator/responsibility-operator/api/v1alpha1"
	"github.com/responsibility-operator/responsibility-operator/internal/evaluate"
)

// Series is the result of -series K: first convergence measured K times on
// one control plane, each between two passes of the plain client.
//
// The full benchmark has one convergence against three plain passes spread
// over a run of many phases; the same pass differs by a fifth within such a
// run (see docs/performance.md). Here the passes and convergences alternate
// on the same objects in the same state, so that each convergence is
// compared with the passes just before and just after it.
type Series struct {
	Run
	// WarmUpSeconds is the untimed first pass (and its removal) that gives
	// every object the managed fields of a written and cleared object, the
	// state every later pass and convergence finds.
	WarmUpSeconds float64 `json:"warmUpSeconds"`
	// PlainSeconds are the K+1 plain passes; Rounds[i] runs between
	// PlainSeconds[i] and PlainSeconds[i+1].
	PlainSeconds []float64     `json:"plainSeconds"`
	Rounds       []SeriesRound `json:"rounds"`
	// Plain has, for each plain pass, what it cost.
	Plain []SeriesPass `json:"plain"`
	// MedianPlainSeconds is the median of every plain pass.
	MedianPlainSeconds float64 `json:"medianPlainSeconds"`
	// PlainRatioToNeighbours is each plain pass between two others (the
	// second to the K-th) over the mean of those two: how far the same pass
	// strays from its neighbours in this run, the measure's own noise.
	PlainRatioToNeighbours []float64 `json:"plainRatioToNeighbours"`
	// MaxRatio is the largest of the rounds' RatioToNeighbours.
	MaxRatio float64 `json:"maxRatio"`
}

// SeriesPass is what one plain pass cost: the API server's own time per
// apply, and the CPU of the server, etcd and this process (the plain
// client, its watch, and reading the server's metrics before and after).
type SeriesPass struct {
	ServerApplyMs    float64 `json:"serverApplyMs"`
	ServerCPUSeconds float64 `json:"serverCPUSeconds"`
	EtcdCPUSeconds   float64 `json:"etcdCPUSeconds"`
	ClientCPUSeconds float64 `json:"clientCPUSeconds"`
}

// SeriesRound is one convergence of a freshly started operator on objects
// that carry none of its metadata.
type SeriesRound struct {
	Seconds           float64 `json:"seconds"`
	FirstWriteSeconds float64 `json:"firstWriteSeconds"`
	// RatioToNeighbours is Seconds over the mean of the plain passes just
	// before and just after; RatioToMedian over the median of all passes.
	RatioToNeighbours float64 `json:"ratioToNeighbours"`
	RatioToMedian     float64 `json:"ratioToMedian"`
	WritesPerObject   float64 `json:"writesPerObject"`
	EventsCreated     float64 `json:"eventsCreated"`
	OtherWrites       float64 `json:"otherWrites"`
	ServerCPUSeconds  float64 `json:"serverCPUSeconds"`
	// EtcdCPUSeconds, OperatorCPUSeconds and ClientCPUSeconds are what etcd,
	// the operator and this process (its watch, and reading the metrics)
	// used from the models' creation until the operator was idle.
	EtcdCPUSeconds     float64 `json:"etcdCPUSeconds"`
	OperatorCPUSeconds float64 `json:"operatorCPUSeconds"`
	ClientCPUSeconds   float64 `json:"clientCPUSeconds"`
	// MeanApplyMs is an apply's round trip as the operator sees it,
	// ServerApplyMs the API server's own time for it.
	MeanApplyMs   float64 `json:"meanApplyMs"`
	ServerApplyMs float64 `json:"serverApplyMs"`
	// CleanupSeconds is how long the operator took to remove its metadata
	// from every object once the models were deleted (not compared).
	CleanupSeconds float64 `json:"cleanupSeconds"`
}

// series runs the plain pass and the operator's first convergence
// alternately, rounds times, and one plain pass more.
func (b *bench) series(ctx context.Context, rounds int) (*Series, error) {
	s := &Series{Run: b.run()}
	step("warm-up: a plain pass and its removal, untimed")
	warm, err := b.applyAll(ctx, b.oracle, true)
	if err != nil {
		return nil, fmt.Errorf("warm-up: %w", err)
	}
	if _, err := b.applyAll(ctx, b.oracle, false); err != nil {
		return nil, fmt.Errorf("warm-up removal: %w", err)
	}
	s.WarmUpSeconds = warm
	plain := func() error {
		if err := b.compact(ctx); err != nil {
			return err
		}
		cpu := processCPUSeconds()
		seconds, writes, err := b.measuredPass(ctx, b.oracle)
		cpu = processCPUSeconds() - cpu
		if err != nil {
			return fmt.Errorf("plain pass: %w", err)
		}
		if _, err := b.applyAll(ctx, b.oracle, false); err != nil {
			return fmt.Errorf("remove the plain pass's annotations: %w", err)
		}
		s.PlainSeconds = append(s.PlainSeconds, seconds)
		s.Plain = append(s.Plain, SeriesPass{ServerApplyMs: writes.meanApplyMs(), ServerCPUSeconds: writes.cpuSeconds, EtcdCPUSeconds: writes.etcdCPUSeconds, ClientCPUSeconds: cpu})
		step("plain pass %d: %.2fs, the server's apply %.1fms", len(s.PlainSeconds), seconds, writes.meanApplyMs())
		return nil
	}
	for i := range rounds {
		if err := plain(); err != nil {
			return nil, err
		}
		if err := b.compact(ctx); err != nil {
			return nil, err
		}
		round, err := b.seriesRound(ctx)
		if err != nil {
			return nil, fmt.Errorf("round %d: %w (operator log: %s)", i+1, err, filepath.Join(b.o.dir, "manager.log"))
		}
		s.Rounds = append(s.Rounds, round)
	}
	if err := plain(); err != nil {
		return nil, err
	}
	sorted := slices.Clone(s.PlainSeconds)
	slices.Sort(sorted)
	if len(sorted)%2 == 1 {
		s.MedianPlainSeconds = sorted[len(sorted)/2]
	} else {
		s.MedianPlainSeconds = (sorted[len(sorted)/2-1] + sorted[len(sorted)/2]) / 2
	}
	for i := 1; i+1 < len(s.PlainSeconds); i++ {
		s.PlainRatioToNeighbours = append(s.PlainRatioToNeighbours, overNeighbours(s.PlainSeconds[i], s.PlainSeconds[i-1], s.PlainSeconds[i+1]))
	}
	for i := range s.Rounds {
		r := &s.Rounds[i]
		r.RatioToNeighbours = overNeighbours(r.Seconds, s.PlainSeconds[i], s.PlainSeconds[i+1])
		r.RatioToMedian = r.Seconds / s.MedianPlainSeconds
		s.MaxRatio = max(s.MaxRatio, r.RatioToNeighbours)
	}
	return s, nil
}

// overNeighbours is the ratio a series holds every timed phase to: its
// seconds over the mean of the plain passes just before and just after it.
func overNeighbours(seconds, before, after float64) float64 {
	return seconds / ((before + after) / 2)
}

// compact compacts etcd's history before a timed pass or round: in a
// series the API server's own compaction, every five minutes, is off (see
// start), so that none runs inside one.
func (b *bench) compact(ctx context.Context) error {
	rev, err := b.cluster.CompactEtcd(ctx)
	if err != nil {
		return fmt.Errorf("before a timed phase: %w", err)
	}
	step("etcd compacted to revision %d", rev)
	return nil
}

// seriesRound starts the operator, creates the models, times the
// convergence, then deletes the models, waits until the operator has removed
// its metadata from every object, and stops it.
func (b *bench) seriesRound(ctx context.Context) (SeriesRound, error) {
	var r SeriesRound
	if err := b.startOperator(ctx); err != nil {
		return r, err
	}
	for _, w := range b.workloads {
		b.tracker.Expect(w.Key(), b.oracle.Want(w.Obj), time.Time{})
	}
	cpu := processCPUSeconds()
	before, err := b.apiWrites(ctx)
	if err != nil {
		return r, err
	}
	b.tracker.First()
	start := time.Now()
	for _, m := range b.models {
		if err := b.c.Create(ctx, m.DeepCopy()); err != nil {
			return r, fmt.Errorf("create model %s: %w", m.Name, err)
		}
	}
	last, err := b.tracker.Wait(ctx, b.timeout())
	if err != nil {
		return r, err
	}
	r.Seconds = last.Sub(start).Seconds()
	r.FirstWriteSeconds = b.tracker.First().Sub(start).Seconds()
	if err := b.settle(ctx, 0); err != nil {
		return r, err
	}
	after, err := b.apiWrites(ctx)
	if err != nil {
		return r, err
	}
	if f, err := b.operator.Metrics(ctx); err == nil {
		r.MeanApplyMs = 1000 * f.Mean("responsibility_apply_duration_seconds", nil)
	}
	d := after.sub(before)
	r.ServerApplyMs = d.meanApplyMs()
	r.WritesPerObject = d.targets / float64(len(b.workloads))
	r.EventsCreated = d.events
	r.OtherWrites = d.all - d.targets - d.events
	r.ServerCPUSeconds = d.cpuSeconds
	r.EtcdCPUSeconds, r.OperatorCPUSeconds = d.etcdCPUSeconds, d.operatorCPUSeconds
	r.ClientCPUSeconds = processCPUSeconds() - cpu
	step("converged in %.2fs (first object after %.2fs): %.3f writes per object, %d events, %d other writes; apply %.1fms, of which the server's %.1fms",
		r.Seconds, r.FirstWriteSeconds, r.WritesPerObject, int(r.EventsCreated), int(r.OtherWrites), r.MeanApplyMs, r.ServerApplyMs)

	// Deleting the models makes the operator remove its metadata: the
	// objects are then as the plain client's removal leaves them.
	none := evaluate.OwnedDigest(nil, nil)
	for _, w := range b.workloads {
		b.tracker.Expect(w.Key(), none, time.Time{})
	}
	start = time.Now()
	for _, m := range b.models {
		if err := b.c.Delete(ctx, m.DeepCopy()); err != nil && !apierrors.IsNotFound(err) {
			return r, fmt.Errorf("delete model %s: %w", m.Name, err)
		}
	}
	if _, err := b.tracker.Wait(ctx, b.timeout()); err != nil {
		return r, fmt.Errorf("cleanup after the models' deletion: %w", err)
	}
	if err := b.waitModelsGone(ctx); err != nil {
		return r, err
	}
	r.CleanupSeconds = time.Since(start).Seconds()
	step("models deleted; the operator removed its metadata in %.2fs", r.CleanupSeconds)
	return r, b.stopOperator(ctx)
}

// waitModelsGone waits until the models' finalizer has let them go.
func (b *bench) waitModelsGone(ctx context.Context) error {
	deadline := time.Now().Add(b.timeout())
	for {
		list := &v1alpha1.ResponsibilityModelList{}
		if err := b.c.List(ctx, list, client.Limit(1)); err != nil {
			return fmt.Errorf("list models: %w", err)
		}
		if len(list.Items) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("model %s still exists after %s", list.Items[0].Name, b.timeout())
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func printSeries(s *Series) {
	fmt.Printf("\nN=%d workloads, %d namespaces, concurrency %d, %d CPUs: %d rounds\n", s.N, s.Namespaces, s.Concurrency, s.CPUs, len(s.Rounds))
	if s.CPUSplit != "" {
		fmt.Printf("-cpus-apart: %s\n", s.CPUSplit)
	}
	fmt.Printf("%-6s %-22s %-10s %-12s %-12s %-8s %-10s\n", "ROUND", "PLAIN BEFORE / AFTER", "CONVERGE", "× NEIGHBOURS", "× MEDIAN", "WRITES", "CLEANUP")
	for i, r := range s.Rounds {
		fmt.Printf("%-6d %-22s %-10s %-12.2f %-12.2f %-8.3f %-10s\n", i+1,
			fmt.Sprintf("%.2fs / %.2fs", s.PlainSeconds[i], s.PlainSeconds[i+1]),
			fmt.Sprintf("%.2fs", r.Seconds), r.RatioToNeighbours, r.RatioToMedian, r.WritesPerObject,
			fmt.Sprintf("%.2fs", r.CleanupSeconds))
	}
	fmt.Printf("median plain pass %.2fs; the largest ratio to the neighbouring passes %.2f (goal ≤ 1.15)\n", s.MedianPlainSeconds, s.MaxRatio)
	if len(s.PlainRatioToNeighbours) > 0 {
		parts := make([]string, len(s.PlainRatioToNeighbours))
		for i, r := range s.PlainRatioToNeighbours {
			parts[i] = fmt.Sprintf("%.2f", r)
		}
		fmt.Printf("plain passes 2–%d against their neighbouring passes (the method's own spread): %s\n", len(s.PlainSeconds)-1, strings.Join(parts, ", "))
	}
}

package benchkit

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	toolscache "k8s.io/client-go/tools/cache"

	"github.com/responsibility-operator/responsibility-operator/api/v1alpha1"
	"github.com/responsibility-operator/responsibility-operator/internal/evaluate"
)

// Tracker watches the target objects and knows, at any time, which of them
// do not yet carry the metadata the Oracle wants, when the last one got
// it, how long each awaited update took to show, and how many duty
// transitions the operator wrote.
type Tracker struct {
	mu          sync.Mutex
	want        map[ObjectKey]uint64
	have        map[ObjectKey]uint64
	pending     map[ObjectKey]struct{}
	lastMatch   time.Time
	firstMatch  time.Time
	sent        map[ObjectKey]time.Time
	latencies   []time.Duration
	transitions int
}

// NewTracker returns a tracker that awaits nothing yet.
func NewTracker() *Tracker {
	return &Tracker{
		want:    map[ObjectKey]uint64{},
		have:    map[ObjectKey]uint64{},
		pending: map[ObjectKey]struct{}{},
		sent:    map[ObjectKey]time.Time{},
	}
}

// Start runs an informer per target resource; it keeps only metadata.
func (t *Tracker) Start(ctx context.Context, dyn dynamic.Interface, gvrs map[schema.GroupVersionResource]schema.GroupVersionKind) error {
	factory := dynamicinformer.NewDynamicSharedInformerFactory(dyn, 0)
	for gvr, gvk := range gvrs {
		inf := factory.ForResource(gvr).Informer()
		if err := inf.SetTransform(metadataOnly); err != nil {
			return fmt.Errorf("transform %s: %w", gvr, err)
		}
		_, err := inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
			AddFunc: func(obj any) { t.observe(gvk, nil, obj.(*unstructured.Unstructured)) },
			UpdateFunc: func(old, obj any) {
				t.observe(gvk, old.(*unstructured.Unstructured), obj.(*unstructured.Unstructured))
			},
		})
		if err != nil {
			return fmt.Errorf("watch %s: %w", gvr, err)
		}
	}
	factory.Start(ctx.Done())
	for gvr, ok := range factory.WaitForCacheSync(ctx.Done()) {
		if !ok {
			return fmt.Errorf("watch %s: cache did not sync", gvr)
		}
	}
	return nil
}

func metadataOnly(obj any) (any, error) {
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return obj, nil
	}
	md, _ := u.Object["metadata"].(map[string]any)
	out := map[string]any{"metadata": map[string]any{
		"name": md["name"], "namespace": md["namespace"],
		"annotations": md["annotations"], "labels": md["labels"],
		"resourceVersion": md["resourceVersion"],
	}}
	return &unstructured.Unstructured{Object: out}, nil
}

func (t *Tracker) observe(gvk schema.GroupVersionKind, old, obj *unstructured.Unstructured) {
	k := ObjectKey{GVK: gvk, Namespace: obj.GetNamespace(), Name: obj.GetName()}
	fp := evaluate.OwnedDigest(obj.GetAnnotations(), obj.GetLabels())
	t.mu.Lock()
	defer t.mu.Unlock()
	if old != nil {
		before, after := old.GetAnnotations()[v1alpha1.AnnotationDuties], obj.GetAnnotations()[v1alpha1.AnnotationDuties]
		if before != after {
			prev := evaluate.ParseDuties(before)
			for model, duties := range evaluate.ParseDuties(after) {
				for name, d := range duties {
					if evaluate.IsTransition(prev[model][name].State, d.State) {
						t.transitions++
					}
				}
			}
		}
	}
	t.have[k] = fp
	t.check(k)
}

// Expect sets what an object must carry; sent, when not zero, is when the
// change that calls for it was sent, for the latency statistics.
func (t *Tracker) Expect(k ObjectKey, fp uint64, sent time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.want[k] = fp
	if !sent.IsZero() {
		t.sent[k] = sent
	}
	t.check(k)
}

func (t *Tracker) check(k ObjectKey) {
	want, ok := t.want[k]
	if !ok {
		return
	}
	if t.have[k] != want {
		t.pending[k] = struct{}{}
		return
	}
	now := time.Now()
	if _, was := t.pending[k]; was {
		delete(t.pending, k)
		t.lastMatch = now
		if t.firstMatch.IsZero() {
			t.firstMatch = now
		}
	}
	if sent, ok := t.sent[k]; ok {
		t.latencies = append(t.latencies, now.Sub(sent))
		delete(t.sent, k)
	}
}

// First returns when the first awaited object got what it must since the
// last call, and forgets it.
func (t *Tracker) First() time.Time {
	t.mu.Lock()
	defer t.mu.Unlock()
	f := t.firstMatch
	t.firstMatch = time.Time{}
	return f
}

// Wait returns when every object carries what it must, with the time the
// last one got it. Every 10 s it logs how many are still pending, so that a
// slow start or tail shows.
func (t *Tracker) Wait(ctx context.Context, timeout time.Duration) (time.Time, error) {
	deadline := time.Now().Add(timeout)
	report := time.Now().Add(10 * time.Second)
	for {
		t.mu.Lock()
		n, last := len(t.pending), t.lastMatch
		var example string
		for k := range t.pending {
			example = k.String()
			break
		}
		t.mu.Unlock()
		if n == 0 {
			return last, nil
		}
		if time.Now().After(deadline) {
			return time.Time{}, fmt.Errorf("after %s, %d objects still lack their annotations (e.g. %s)", timeout, n, example)
		}
		if time.Now().After(report) {
			Step("%d objects pending", n)
			report = report.Add(10 * time.Second)
		}
		select {
		case <-ctx.Done():
			return time.Time{}, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// TransitionCount is the number of duty transitions seen so far.
func (t *Tracker) TransitionCount() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.transitions
}

// TakeLatencies returns the recorded latencies, sorted, and forgets them.
func (t *Tracker) TakeLatencies() []time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := t.latencies
	t.latencies = nil
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// Wants returns the digest an object must carry (0 when none is awaited).
func (t *Tracker) Wants(k ObjectKey) uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.want[k]
}

// Pending is the number of objects that do not carry what they must yet.
func (t *Tracker) Pending() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.pending)
}

// Step logs a step of a benchmark with the time of day.
func Step(format string, args ...any) {
	fmt.Printf("==> %s %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

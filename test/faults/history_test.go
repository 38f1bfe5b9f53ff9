package faults

import (
	"context"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/responsibility-operator/responsibility-operator/api/v1alpha1"
)

// history records, from watches on the API server, every change of the
// operator-owned metadata of the objects of some kinds: who wrote what,
// when, even when a later write hides it.
type history struct {
	// phase tags the changes recorded from now on (which process runs).
	phase atomic.Int32

	mu sync.Mutex
	// initial is each object's models annotation when the watch started.
	initial map[string]string
	// changes are the owned-metadata changes of each object, in order.
	changes map[string][]change
	// errs are watches that failed or ended early.
	errs []string
	last map[string]map[string]string
	wg   sync.WaitGroup
}

// change is one write of the operator-owned metadata of an object.
type change struct {
	phase  int32
	models string
}

// watchHistory starts watching every kind until ctx ends.
func (e *env) watchHistory(ctx context.Context, kinds []schema.GroupVersionKind) *history {
	e.t.Helper()
	wc, err := client.NewWithWatch(e.cfg, client.Options{Scheme: testScheme(e.t)})
	if err != nil {
		e.t.Fatal(err)
	}
	h := &history{initial: map[string]string{}, changes: map[string][]change{}, last: map[string]map[string]string{}}
	for _, gvk := range kinds {
		list := &unstructured.UnstructuredList{}
		list.SetGroupVersionKind(gvk.GroupVersion().WithKind(gvk.Kind + "List"))
		w, err := wc.Watch(ctx, list)
		if err != nil {
			e.t.Fatalf("watch %s: %v", gvk, err)
		}
		h.wg.Go(func() {
			defer w.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case ev, ok := <-w.ResultChan():
					if !ok {
						if ctx.Err() == nil {
							h.fail(gvk.String() + ": the watch ended early")
						}
						return
					}
					h.record(gvk, ev)
				}
			}
		})
	}
	return h
}

func (h *history) fail(msg string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.errs = append(h.errs, msg)
}

func (h *history) record(gvk schema.GroupVersionKind, ev watch.Event) {
	if ev.Type == watch.Error {
		h.fail(gvk.String() + ": watch error")
		return
	}
	u, ok := ev.Object.(*unstructured.Unstructured)
	if !ok || (ev.Type != watch.Added && ev.Type != watch.Modified) {
		return
	}
	owned := ownedMetadata(u)
	uid := string(u.GetUID())
	h.mu.Lock()
	defer h.mu.Unlock()
	prev, seen := h.last[uid]
	h.last[uid] = owned
	if !seen {
		h.initial[uid] = owned[v1alpha1.AnnotationModels]
		return
	}
	if !maps.Equal(prev, owned) {
		h.changes[uid] = append(h.changes[uid], change{phase: h.phase.Load(), models: owned[v1alpha1.AnnotationModels]})
	}
}

// ownedMetadata returns the operator's annotations and label of an object.
func ownedMetadata(u *unstructured.Unstructured) map[string]string {
	out := map[string]string{}
	for _, k := range v1alpha1.OwnedAnnotations {
		if v, ok := u.GetAnnotations()[k]; ok {
			out[k] = v
		}
	}
	if v, ok := u.GetLabels()[v1alpha1.LabelStatus]; ok {
		out["label "+v1alpha1.LabelStatus] = v
	}
	return out
}

// seen counts the objects the watches have reported.
func (h *history) seen() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.initial)
}

// writes counts the changes made in a phase.
func (h *history) writes(phase int32) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, cs := range h.changes {
		for _, c := range cs {
			if c.phase == phase {
				n++
			}
		}
	}
	return n
}

// partial lists, per object, the writes of a phase that named fewer models
// than the object's final models, and the models such a write removed
// although the object carried them before and carries them at the end.
func (h *history) partial(phase int32, final map[string]string) (partialWrites int, dropped map[string][]string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	dropped = map[string][]string{}
	for uid, cs := range h.changes {
		want := splitModels(final[uid])
		before := splitModels(h.initial[uid])
		for _, c := range cs {
			now := splitModels(c.models)
			if c.phase == phase && !slices.Equal(now, want) {
				partialWrites++
			}
			for _, m := range before {
				if c.phase == phase && !slices.Contains(now, m) && slices.Contains(want, m) && !slices.Contains(dropped[uid], m) {
					dropped[uid] = append(dropped[uid], m)
				}
			}
			before = now
		}
	}
	return partialWrites, dropped
}

func splitModels(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}

// check fails the test when a watch failed.
func (h *history) check(t *testing.T) {
	t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.errs) > 0 {
		t.Fatalf("the watches that record the writes failed: %s", strings.Join(h.errs, "; "))
	}
}

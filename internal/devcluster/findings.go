package devcluster

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/responsibility-operator/responsibility-operator/api/v1alpha1"
	"github.com/responsibility-operator/responsibility-operator/internal/evaluate"
)

// Findings compares, in one namespace, the unmet findings the operator's
// annotations record with the CustomerDutyUnmet events it created: a finding
// is an unmet duty of an object, or, for a namespace-wide duty, of the
// namespace (see docs/reference.md, "What is reported where"). The tenant
// sees each finding once when every finding has exactly one event and no
// event is about anything else.
type Findings struct {
	// Unmet are the distinct findings, "<Kind>/<name> <model>/<duty>".
	Unmet []string
	// Events counts the CustomerDutyUnmet and CustomerDutyMet occurrences by
	// finding (an event's series counts as its count).
	Events map[string]int
	// Held names the objects whose duty events still wait for their grace
	// period to end (v1alpha1.AnnotationEventsHeldUntil).
	Held []string
}

// Problems lists what keeps the tenant from seeing each finding once: a
// finding without its one event, one reported more than once, an event of
// something that is not a finding (a duty that was met in the end: a
// transient warning, or its "met again").
func (f Findings) Problems() []string {
	var out []string
	unmet := map[string]bool{}
	for _, k := range f.Unmet {
		unmet[k] = true
		if n := f.Events[k]; n != 1 {
			out = append(out, fmt.Sprintf("%s: %d events, want 1", k, n))
		}
	}
	for k, n := range f.Events {
		if !unmet[k] {
			out = append(out, fmt.Sprintf("%s: %d events, but it is not unmet", k, n))
		}
	}
	sort.Strings(out)
	return out
}

// ReadFindings reads the findings of namespace from objects (the workloads
// of the namespace, as the operator annotated them) and its events, through
// c: the API server, not a cache (events are not cached).
func ReadFindings(ctx context.Context, c client.Reader, namespace string, objects []*unstructured.Unstructured) (Findings, error) {
	f := Findings{Events: map[string]int{}}
	seen := map[string]bool{}
	for _, proto := range objects {
		if proto.GetNamespace() != namespace {
			continue
		}
		obj := &unstructured.Unstructured{}
		obj.SetGroupVersionKind(proto.GroupVersionKind())
		if err := c.Get(ctx, client.ObjectKeyFromObject(proto), obj); err != nil {
			return f, fmt.Errorf("get %s %s/%s: %w", proto.GetKind(), namespace, proto.GetName(), err)
		}
		annotations := obj.GetAnnotations()
		if _, held := annotations[v1alpha1.AnnotationEventsHeldUntil]; held {
			f.Held = append(f.Held, obj.GetKind()+"/"+obj.GetName())
		}
		for model, duties := range evaluate.ParseDuties(annotations[v1alpha1.AnnotationDuties]) {
			for duty, st := range duties {
				if st.State != v1alpha1.DutyUnmet {
					continue
				}
				k := findingKey(obj.GetKind(), obj.GetName(), model, duty)
				if st.Scope == evaluate.ScopeNamespace {
					k = findingKey("Namespace", namespace, model, duty)
				}
				if !seen[k] {
					seen[k] = true
					f.Unmet = append(f.Unmet, k)
				}
			}
		}
	}
	sort.Strings(f.Unmet)
	list := &eventsv1.EventList{}
	if err := c.List(ctx, list, client.InNamespace(namespace)); err != nil {
		return f, fmt.Errorf("list the events of %s: %w", namespace, err)
	}
	for _, ev := range list.Items {
		if ev.ReportingController != v1alpha1.FieldManager || ev.Related == nil ||
			(ev.Reason != v1alpha1.EventCustomerDutyUnmet && ev.Reason != v1alpha1.EventCustomerDutyMet) {
			continue
		}
		_, duty, _ := strings.Cut(ev.Related.FieldPath, ".duties{")
		n := 1
		if ev.Series != nil && ev.Series.Count > 1 {
			n = int(ev.Series.Count)
		}
		f.Events[findingKey(ev.Regarding.Kind, ev.Regarding.Name, ev.Related.Name, strings.TrimSuffix(duty, "}"))] += n
	}
	return f, nil
}

func findingKey(kind, name, model, duty string) string {
	return fmt.Sprintf("%s/%s %s/%s", kind, name, model, duty)
}

// WaitFindings polls ReadFindings until no object of namespace is held and
// Problems finds nothing, and returns those findings; after timeout it
// returns the last ones read with an error that lists what is still wrong.
func WaitFindings(ctx context.Context, c client.Reader, namespace string, objects []*unstructured.Unstructured, timeout time.Duration) (Findings, error) {
	deadline := time.Now().Add(timeout)
	for {
		f, err := ReadFindings(ctx, c, namespace, objects)
		if err != nil {
			return f, err
		}
		problems := f.Problems()
		if len(f.Held) == 0 && len(problems) == 0 {
			return f, nil
		}
		if time.Now().After(deadline) {
			return f, fmt.Errorf("namespace %s after %s: events still held on %v; %d problems:\n  %s", namespace, timeout, f.Held, len(problems), strings.Join(problems, "\n  "))
		}
		select {
		case <-ctx.Done():
			return f, ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// NamespaceWide counts the findings of the namespace itself (a
// namespace-wide duty's), not of one of its objects.
func (f Findings) NamespaceWide() int {
	n := 0
	for _, k := range f.Unmet {
		if strings.HasPrefix(k, "Namespace/") {
			n++
		}
	}
	return n
}

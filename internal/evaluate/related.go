package evaluate

import (
	"fmt"

	"k8s.io/apimachinery/pkg/runtime/schema"
)

// RelatedLister returns the objects of a kind in a namespace, sorted by name.
// ok is false when they cannot be known yet (a cache still filling): the
// input is then incomplete and must not be evaluated.
type RelatedLister func(gvk schema.GroupVersionKind, namespace string) (objects []map[string]any, ok bool, err error)

// RelatedInput gathers Input.Related for a workload in namespace ("" for a
// cluster-scoped one): for every related source of the matched models, the
// objects in the namespace the declaration names, or else in the workload's.
// A cluster-scoped workload has no namespace of its own, and reads an empty
// list there. complete is false as soon as list says so.
func RelatedInput(matched []*Model, namespace string, list RelatedLister) (related map[RelatedSource][]map[string]any, complete bool, err error) {
	for _, m := range matched {
		for _, src := range m.RelatedSources() {
			if _, done := related[src]; done {
				continue
			}
			if related == nil {
				related = map[RelatedSource][]map[string]any{}
			}
			ns := src.Namespace
			if ns == "" {
				ns = namespace
			}
			if ns == "" {
				related[src] = nil
				continue
			}
			objects, ok, err := list(src.GVK, ns)
			if err != nil {
				return nil, false, fmt.Errorf("related %s in %q: %w", src.GVK.Kind, ns, err)
			}
			if !ok {
				return nil, false, nil
			}
			related[src] = objects
		}
	}
	return related, true, nil
}

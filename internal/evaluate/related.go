package evaluate

import (
	"cmp"
	"fmt"
	"slices"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
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

// EvaluateWorkload evaluates one object at now as the operator does: the
// models that match its kind, labels and namespace (nsObj, its Namespace
// object; nil for a cluster-scoped object), with the related objects they
// read listed through list, and the DutyWaivers of its namespace (sorted by
// name). complete is false, and nothing is evaluated, while list
// cannot know a related kind yet. The operator, its benchmark's oracle and
// the tests that predict its writes all evaluate through this one function.
func EvaluateWorkload(models []*Model, obj *unstructured.Unstructured, nsObj map[string]any, list RelatedLister, waivers []*Waiver, now time.Time) (res Result, complete bool, err error) {
	gvk, ns := obj.GroupVersionKind(), obj.GetNamespace()
	matched := Match(models, gvk, obj.GetLabels(), nsObj, ns != "")
	related, complete, err := RelatedInput(matched, ns, list)
	if err != nil || !complete {
		return Result{}, complete, err
	}
	return Evaluate(matched, Input{GVK: gvk, Object: obj.Object, Namespace: nsObj, Related: related, Now: now, Waivers: waivers}), true, nil
}

// ListerOf is a RelatedLister over a fixed set of objects, which never
// fails and is always complete: the objects of a kind in a namespace,
// sorted by name as the operator's cache lists them.
func ListerOf(objects []*unstructured.Unstructured) RelatedLister {
	type kindIn struct {
		gvk       schema.GroupVersionKind
		namespace string
	}
	sorted := slices.Clone(objects)
	slices.SortStableFunc(sorted, func(a, b *unstructured.Unstructured) int { return cmp.Compare(a.GetName(), b.GetName()) })
	index := map[kindIn][]map[string]any{}
	for _, o := range sorted {
		k := kindIn{o.GroupVersionKind(), o.GetNamespace()}
		index[k] = append(index[k], o.Object)
	}
	return func(gvk schema.GroupVersionKind, namespace string) ([]map[string]any, bool, error) {
		return index[kindIn{gvk, namespace}], true, nil
	}
}

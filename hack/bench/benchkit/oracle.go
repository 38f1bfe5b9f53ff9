package benchkit

import (
	"fmt"
	"sort"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/responsibility-operator/responsibility-operator/api/v1alpha1"
	"github.com/responsibility-operator/responsibility-operator/internal/evaluate"
)

// Oracle computes, with the operator's own evaluation library, the metadata
// each workload must end up with: the benchmark's definition of "converged".
type Oracle struct {
	models     []*evaluate.Model
	namespaces map[string]map[string]any
	// related lists relatedObjects, as the operator's cache does.
	related        evaluate.RelatedLister
	relatedObjects []*unstructured.Unstructured
}

// NewOracle returns the oracle of models over the workloads, in namespaces
// (by name) and with the workloads' related objects.
func NewOracle(models []*v1alpha1.ResponsibilityModel, namespaces map[string]map[string]any, workloads []*Workload) (*Oracle, error) {
	o := &Oracle{namespaces: namespaces}
	if err := o.SetModels(models); err != nil {
		return nil, err
	}
	var related []*unstructured.Unstructured
	for _, w := range workloads {
		if w.Related != nil {
			related = append(related, w.Related)
		}
	}
	o.AddRelated(related)
	return o, nil
}

// With returns an Oracle for other models over the same objects.
func (o *Oracle) With(models []*v1alpha1.ResponsibilityModel) (*Oracle, error) {
	cp := &Oracle{namespaces: o.namespaces, related: o.related, relatedObjects: o.relatedObjects}
	if err := cp.SetModels(models); err != nil {
		return nil, err
	}
	return cp, nil
}

// SetModels replaces the models the oracle evaluates.
func (o *Oracle) SetModels(models []*v1alpha1.ResponsibilityModel) error {
	o.models = o.models[:0]
	for _, rm := range models {
		m, err := evaluate.Compile(rm)
		if err != nil {
			return fmt.Errorf("compile %s: %w", rm.Name, err)
		}
		o.models = append(o.models, m)
	}
	sort.Slice(o.models, func(i, j int) bool { return o.models[i].Name < o.models[j].Name })
	return nil
}

// Want returns the digest of the metadata the operator must write.
func (o *Oracle) Want(obj *unstructured.Unstructured) uint64 {
	return evaluate.OwnedDigest(o.Desired(obj))
}

// Desired returns the annotations and labels the operator must write.
func (o *Oracle) Desired(obj *unstructured.Unstructured) (annotations, labels map[string]string) {
	// The lister never fails and is always complete.
	res, _, _ := evaluate.EvaluateWorkload(o.models, obj, o.namespaces[obj.GetNamespace()], o.related, nil, time.Now())
	return res.Annotations, res.Labels
}

// AddRelated adds related objects to what the oracle's rules read.
func (o *Oracle) AddRelated(objs []*unstructured.Unstructured) {
	o.relatedObjects = append(o.relatedObjects, objs...)
	o.related = evaluate.ListerOf(o.relatedObjects)
}

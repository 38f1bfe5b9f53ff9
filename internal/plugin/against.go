package plugin

import (
	"fmt"
	"path/filepath"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/responsibility-operator/responsibility-operator/internal/evaluate"
	"github.com/responsibility-operator/responsibility-operator/internal/samples"
)

// Evaluation is the result of the models on one sample object.
type Evaluation struct {
	File string `json:"file"`
	ObjectRef
	Status         string    `json:"status"`
	Models         []string  `json:"models"`
	Duties         []DutyRow `json:"duties"`
	IgnoredWaivers []string  `json:"ignoredWaivers,omitempty"`
}

type sampleObject struct {
	file string
	obj  *unstructured.Unstructured
}

// evaluateSamples evaluates the models on every object of the sample files
// the way the operator would: the object's Namespace from the files (a
// bare one when the files have none) and the related objects from the
// files. matchedNone is true when no model targets any object.
func evaluateSamples(models []*evaluate.Model, files []string) (out []Evaluation, matchedNone bool, err error) {
	var objects []sampleObject
	namespaces := map[string]map[string]any{}
	for _, f := range files {
		docs, err := samples.ReadFile(f)
		if err != nil {
			return nil, false, fmt.Errorf("--against: %w", err)
		}
		for _, u := range docs {
			objects = append(objects, sampleObject{file: f, obj: u})
			if u.GetAPIVersion() == "v1" && u.GetKind() == "Namespace" {
				namespaces[u.GetName()] = u.Object
			}
		}
	}
	for _, s := range objects {
		o := s.obj
		ns := o.GetNamespace()
		nsObj := namespaces[ns]
		if ns != "" && nsObj == nil {
			nsObj = map[string]any{"apiVersion": "v1", "kind": "Namespace", "metadata": map[string]any{"name": ns}}
		}
		gvk := o.GroupVersionKind()
		matched := evaluate.Match(models, gvk, o.GetLabels(), nsObj, ns != "")
		if len(matched) == 0 {
			continue
		}
		res := evaluate.Evaluate(matched, evaluate.Input{GVK: gvk, Object: o.Object, Namespace: nsObj, Related: relatedOf(matched, ns, objects)})
		e := Evaluation{
			File: filepath.Base(s.file), ObjectRef: refOf(o), Status: res.Status(), Duties: []DutyRow{},
		}
		for _, m := range res.Models {
			e.Models = append(e.Models, m.Name)
		}
		for _, d := range res.Duties {
			e.Duties = append(e.Duties, DutyRow{Model: d.Model, Duty: d.Duty.Name, State: d.State, Message: d.Message})
		}
		for _, w := range res.IgnoredWaivers {
			e.IgnoredWaivers = append(e.IgnoredWaivers, w.Duty+": "+w.Reason)
		}
		out = append(out, e)
	}
	return out, len(out) == 0, nil
}

// relatedOf collects, for every related source of the matched models, the
// sample objects of its kind in its namespace (the workload's when the
// source names none).
func relatedOf(models []*evaluate.Model, namespace string, objects []sampleObject) map[evaluate.RelatedSource][]map[string]any {
	out := map[evaluate.RelatedSource][]map[string]any{}
	for _, m := range models {
		for _, src := range m.RelatedSources() {
			if _, done := out[src]; done {
				continue
			}
			ns := src.Namespace
			if ns == "" {
				ns = namespace
			}
			list := []map[string]any{}
			for _, s := range objects {
				if s.obj.GroupVersionKind() == src.GVK && s.obj.GetNamespace() == ns {
					list = append(list, s.obj.Object)
				}
			}
			out[src] = list
		}
	}
	return out
}

func (o *Options) printEvaluation(w *printer, e Evaluation) error {
	w.printf("%s (%s): %s\n", e.String(), sanitize(e.File), e.Status)
	for _, iw := range e.IgnoredWaivers {
		w.printf("  ignored waiver %s\n", sanitize(iw))
	}
	if len(e.Duties) == 0 {
		w.println("  no duties")
		return nil
	}
	t := newTable("MODEL", "DUTY", "STATE", "MESSAGE")
	t.stateColumn = 2
	t.indent = "  "
	for _, d := range e.Duties {
		t.add(d.Model, d.Duty, string(d.State), d.Message)
	}
	return t.print(w, o.Color)
}

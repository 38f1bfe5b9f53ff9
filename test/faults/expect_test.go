package faults

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/responsibility-operator/responsibility-operator/api/v1alpha1"
	"github.com/responsibility-operator/responsibility-operator/internal/evaluate"
)

// world is what the API server holds, read in one pass: the compiled
// models, the namespaces and every object of the kinds the models target
// or read. expect computes from it, with the operator's own evaluation
// code, what the operator must have written on each object.
type world struct {
	models     []*evaluate.Model
	namespaces map[string]map[string]any
	objects    map[schema.GroupVersionKind][]*unstructured.Unstructured
	// related lists the objects, as the operator's cache does.
	related evaluate.RelatedLister
}

// loadWorld reads the models and every object of the kinds in targets and
// of the kinds the models read, from the API server (not a cache), without
// managedFields (the operator's cache strips them too).
func loadWorld(ctx context.Context, c client.Client, targets []schema.GroupVersionKind) (*world, error) {
	w := &world{namespaces: map[string]map[string]any{}, objects: map[schema.GroupVersionKind][]*unstructured.Unstructured{}}
	rms := &v1alpha1.ResponsibilityModelList{}
	if err := c.List(ctx, rms); err != nil {
		return nil, fmt.Errorf("list models: %w", err)
	}
	kinds := map[schema.GroupVersionKind]bool{}
	for _, gvk := range targets {
		kinds[gvk] = true
	}
	for i := range rms.Items {
		if rms.Items[i].DeletionTimestamp != nil {
			continue
		}
		m, err := evaluate.Compile(&rms.Items[i])
		if err != nil {
			return nil, fmt.Errorf("compile model %s: %w", rms.Items[i].Name, err)
		}
		w.models = append(w.models, m)
		for _, src := range m.RelatedSources() {
			kinds[src.GVK] = true
		}
	}
	nss := &corev1.NamespaceList{}
	if err := c.List(ctx, nss); err != nil {
		return nil, fmt.Errorf("list namespaces: %w", err)
	}
	for i := range nss.Items {
		ns := &nss.Items[i]
		ns.ManagedFields = nil
		obj, err := runtime.DefaultUnstructuredConverter.ToUnstructured(ns)
		if err != nil {
			return nil, err
		}
		obj["apiVersion"], obj["kind"] = "v1", "Namespace"
		w.namespaces[ns.Name] = obj
	}
	for gvk := range kinds {
		list := &unstructured.UnstructuredList{}
		list.SetGroupVersionKind(gvk.GroupVersion().WithKind(gvk.Kind + "List"))
		if err := c.List(ctx, list); err != nil {
			return nil, fmt.Errorf("list %s: %w", gvk, err)
		}
		for i := range list.Items {
			u := &list.Items[i]
			u.SetManagedFields(nil)
			w.objects[gvk] = append(w.objects[gvk], u)
		}
	}
	var all []*unstructured.Unstructured
	for _, objs := range w.objects {
		all = append(all, objs...)
	}
	w.related = evaluate.ListerOf(all)
	return w, nil
}

// expect evaluates an object as the operator does: the models matching its
// kind, labels and namespace, with the related objects they declare.
func (w *world) expect(obj *unstructured.Unstructured) evaluate.Result {
	var nsObj map[string]any
	if ns := obj.GetNamespace(); ns != "" {
		nsObj = w.namespaces[ns]
	}
	// The lister never fails and is always complete.
	res, _, _ := evaluate.EvaluateWorkload(w.models, obj, nsObj, w.related, nil, time.Now())
	return res
}

// mismatch says how an object's operator-owned metadata differs from the
// expected result, or "" when it is exactly what the operator must write.
func mismatch(obj *unstructured.Unstructured, want evaluate.Result) string {
	if evaluate.OwnedMetadataEqual(obj.GetAnnotations(), obj.GetLabels(), want) {
		return ""
	}
	var diffs []string
	for _, k := range v1alpha1.OwnedAnnotations {
		have, haveOK := obj.GetAnnotations()[k]
		exp, expOK := want.Annotations[k]
		if have == exp && haveOK == expOK {
			continue
		}
		if k == v1alpha1.AnnotationDuties && haveOK && expOK {
			diffs = append(diffs, dutiesDiff(have, exp))
			continue
		}
		diffs = append(diffs, fmt.Sprintf("%s=%s, want %s", k, shorten(have, haveOK), shorten(exp, expOK)))
	}
	have, haveOK := obj.GetLabels()[v1alpha1.LabelStatus]
	exp, expOK := want.Labels[v1alpha1.LabelStatus]
	if have != exp || haveOK != expOK {
		diffs = append(diffs, fmt.Sprintf("label %s=%s, want %s", v1alpha1.LabelStatus, shorten(have, haveOK), shorten(exp, expOK)))
	}
	return strings.Join(diffs, "; ")
}

// dutiesDiff names the duties whose recorded state or message differs.
func dutiesDiff(have, want string) string {
	h, w := evaluate.ParseDuties(have), evaluate.ParseDuties(want)
	var out []string
	for model, duties := range w {
		for duty, wd := range duties {
			if hd, ok := h[model][duty]; !ok || hd != wd {
				out = append(out, fmt.Sprintf("%s/%s is %+v, want %+v", model, duty, hd, wd))
			}
		}
	}
	for model, duties := range h {
		for duty := range duties {
			if _, ok := w[model][duty]; !ok {
				out = append(out, fmt.Sprintf("%s/%s recorded, want absent", model, duty))
			}
		}
	}
	sort.Strings(out)
	return v1alpha1.AnnotationDuties + ": " + strings.Join(out, ", ")
}

func shorten(s string, ok bool) string {
	if !ok {
		return "(absent)"
	}
	if len(s) > 80 {
		return fmt.Sprintf("%q…", s[:80])
	}
	return fmt.Sprintf("%q", s)
}

// namespaceUID is the UID of a namespace of the world.
func (w *world) namespaceUID(name string) string {
	uid, _, _ := unstructured.NestedString(w.namespaces[name], "metadata", "uid")
	return uid
}

// objectKey names an object in messages.
func objectKey(u *unstructured.Unstructured) string {
	return fmt.Sprintf("%s %s/%s", u.GetKind(), u.GetNamespace(), u.GetName())
}

// sortedSample returns at most n sorted entries, for failure messages.
func sortedSample(in []string, n int) string {
	sort.Strings(in)
	if len(in) > n {
		return strings.Join(in[:n], "\n  ") + fmt.Sprintf("\n  … and %d more", len(in)-n)
	}
	return strings.Join(in, "\n  ")
}

package plugin

import (
	"context"
	"fmt"
	"strings"
	"testing"

	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/cli-runtime/pkg/genericclioptions"

	"github.com/responsibility-operator/responsibility-operator/api/v1alpha1"
	"github.com/responsibility-operator/responsibility-operator/internal/evaluate"
	"github.com/responsibility-operator/responsibility-operator/internal/samples"
)

// fakeCluster is a cluster read from testdata: the models of models.yaml,
// the objects of objects.yaml annotated by evaluate as the operator would
// at goldenNow (objects that already carry annotations keep them: they are
// forged), the events of events.yaml, and the models, objects and
// DutyWaivers of waivers.yaml (their status written by hand, as the
// operator would at goldenNow).
type fakeCluster struct {
	flags        *genericclioptions.ConfigFlags
	models       []v1alpha1.ResponsibilityModel
	objects      []*unstructured.Unstructured
	events       []eventsv1.Event
	waivers      []v1alpha1.DutyWaiver
	forbidModels bool
	// forbidWaivers answers a list of DutyWaivers as RBAC does for a user
	// without the viewer role; noWaiverCRD as an API server without the CRD.
	forbidWaivers, noWaiverCRD bool
}

func loadFakeCluster(t *testing.T) *fakeCluster {
	t.Helper()
	f := &fakeCluster{}
	var compiled []*evaluate.Model
	var objects []*unstructured.Unstructured
	docs := append(readTestdata(t, "models.yaml"), readTestdata(t, "objects.yaml")...)
	for _, u := range append(docs, readTestdata(t, "waivers.yaml")...) {
		switch u.GetKind() {
		case "ResponsibilityModel":
			rm := v1alpha1.ResponsibilityModel{}
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &rm); err != nil {
				t.Fatal(err)
			}
			m, err := evaluate.Compile(&rm)
			if err != nil {
				t.Fatal(err)
			}
			f.models = append(f.models, rm)
			compiled = append(compiled, m)
		case "DutyWaiver":
			dw := v1alpha1.DutyWaiver{}
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &dw); err != nil {
				t.Fatal(err)
			}
			f.waivers = append(f.waivers, dw)
		default:
			objects = append(objects, u)
		}
	}
	namespaces := map[string]map[string]any{}
	for _, u := range objects {
		if u.GetKind() == "Namespace" {
			namespaces[u.GetName()] = u.Object
		}
	}
	waivers := map[string][]*evaluate.Waiver{}
	for i := range f.waivers {
		w, err := evaluate.CompileWaiver(&f.waivers[i])
		if err != nil {
			t.Fatal(err)
		}
		waivers[w.Namespace] = append(waivers[w.Namespace], w)
	}
	for _, ws := range waivers {
		evaluate.SortWaivers(ws)
	}
	for _, u := range objects {
		if _, forged := u.GetAnnotations()[v1alpha1.AnnotationModels]; !forged {
			annotate(u, compiled, namespaces, objects, waivers[u.GetNamespace()])
		}
		f.objects = append(f.objects, u)
	}
	for _, u := range readTestdata(t, "events.yaml") {
		ev := eventsv1.Event{}
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &ev); err != nil {
			t.Fatal(err)
		}
		f.events = append(f.events, ev)
	}
	return f
}

func readTestdata(t *testing.T, name string) []*unstructured.Unstructured {
	t.Helper()
	objs, err := samples.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

// annotate writes what the operator would at goldenNow: the annotations
// and label of evaluate's result, with the DutyWaivers of the object's
// namespace.
func annotate(u *unstructured.Unstructured, models []*evaluate.Model, namespaces map[string]map[string]any, objects []*unstructured.Unstructured, waivers []*evaluate.Waiver) {
	matched := evaluate.Match(models, u.GroupVersionKind(), u.GetLabels(), namespaces[u.GetNamespace()], u.GetNamespace() != "")
	if len(matched) == 0 {
		return
	}
	related := map[evaluate.RelatedSource][]map[string]any{}
	for _, m := range matched {
		for _, src := range m.RelatedSources() {
			for _, o := range objects {
				if o.GroupVersionKind() == src.GVK && o.GetNamespace() == u.GetNamespace() {
					related[src] = append(related[src], o.Object)
				}
			}
		}
	}
	res := evaluate.Evaluate(matched, evaluate.Input{GVK: u.GroupVersionKind(), Object: u.Object, Namespace: namespaces[u.GetNamespace()], Related: related,
		Now: goldenNow, Waivers: waivers})
	annotations := u.GetAnnotations()
	if annotations == nil {
		annotations = map[string]string{}
	}
	for k, v := range res.Annotations {
		annotations[k] = v
	}
	u.SetAnnotations(annotations)
	labels := u.GetLabels()
	if labels == nil {
		labels = map[string]string{}
	}
	for k, v := range res.Labels {
		labels[k] = v
	}
	u.SetLabels(labels)
}

func (f *fakeCluster) DefaultNamespace() (string, error) {
	if f.flags != nil && f.flags.Namespace != nil && *f.flags.Namespace != "" {
		return *f.flags.Namespace, nil
	}
	return "default", nil
}

// Get resolves KIND the simple way: kind, plural, or either with .group.
func (f *fakeCluster) Get(_ context.Context, namespace string, args []string) (*unstructured.Unstructured, error) {
	kind, name, ok := strings.Cut(args[0], "/")
	if len(args) == 2 {
		kind, name, ok = args[0], args[1], true
	}
	if !ok {
		return nil, fmt.Errorf("name one object: KIND/NAME")
	}
	kind = strings.ToLower(kind)
	for _, u := range f.objects {
		gvk := u.GroupVersionKind()
		k := strings.ToLower(gvk.Kind)
		names := []string{k, k + "s", k + "." + gvk.Group, k + "s." + gvk.Group}
		if contains(names, kind) && u.GetName() == name && u.GetNamespace() == namespace {
			return u.DeepCopy(), nil
		}
	}
	return nil, apierrors.NewNotFound(schema.GroupResource{Resource: kind}, name)
}

func (f *fakeCluster) Events(_ context.Context, obj *unstructured.Unstructured) ([]Event, error) {
	var items []eventsv1.Event
	for _, e := range f.events {
		if e.Regarding.Name == obj.GetName() && e.Regarding.Namespace == obj.GetNamespace() && e.Regarding.Kind == obj.GetKind() {
			items = append(items, e)
		}
	}
	return fromEventsV1(items), nil
}

func (f *fakeCluster) Models(context.Context) ([]v1alpha1.ResponsibilityModel, error) {
	if f.forbidModels {
		return nil, forbiddenModels("list")
	}
	return append([]v1alpha1.ResponsibilityModel(nil), f.models...), nil
}

func (f *fakeCluster) Model(_ context.Context, name string) (*v1alpha1.ResponsibilityModel, error) {
	if f.forbidModels {
		return nil, forbiddenModels("get")
	}
	for i := range f.models {
		if f.models[i].Name == name {
			return f.models[i].DeepCopy(), nil
		}
	}
	return nil, apierrors.NewNotFound(modelsResource.GroupResource(), name)
}

func forbiddenModels(verb string) error {
	return fmt.Errorf("%s responsibilitymodels: %w", verb, apierrors.NewForbidden(modelsResource.GroupResource(), "",
		fmt.Errorf(`User "tenant-a" cannot %s resource "responsibilitymodels" in API group "responsibility.io" at the cluster scope`, verb)))
}

func (f *fakeCluster) Flagged(_ context.Context, namespace string) (*FlaggedList, error) {
	return f.labelled(namespace, func(status string) bool { return status == v1alpha1.StatusUnmet || status == v1alpha1.StatusUnknown }), nil
}

func (f *fakeCluster) Evaluated(_ context.Context, namespace string) (*FlaggedList, error) {
	return f.labelled(namespace, func(status string) bool { return status != "" }), nil
}

func (f *fakeCluster) labelled(namespace string, match func(status string) bool) *FlaggedList {
	out := &FlaggedList{Listed: 2}
	for _, u := range f.objects {
		if !match(u.GetLabels()[v1alpha1.LabelStatus]) {
			continue
		}
		if namespace != "" && u.GetNamespace() != namespace {
			continue
		}
		out.Objects = append(out.Objects, Flagged{GVK: u.GroupVersionKind(), Namespace: u.GetNamespace(), Name: u.GetName(), Labels: u.GetLabels(), Annotations: u.GetAnnotations()})
	}
	return out
}

func (f *fakeCluster) DutyWaivers(_ context.Context, namespace string) ([]v1alpha1.DutyWaiver, error) {
	resource := waiversResource.GroupResource()
	switch {
	case f.forbidWaivers:
		scope := "at the cluster scope"
		if namespace != "" {
			scope = fmt.Sprintf("in the namespace %q", namespace)
		}
		return nil, fmt.Errorf("list dutywaivers: %w", apierrors.NewForbidden(resource, "",
			fmt.Errorf(`User "tenant-a" cannot list resource "dutywaivers" in API group "responsibility.io" %s`, scope)))
	case f.noWaiverCRD:
		return nil, fmt.Errorf("list dutywaivers: %w", apierrors.NewNotFound(resource, ""))
	}
	var out []v1alpha1.DutyWaiver
	for i := range f.waivers {
		if namespace == "" || f.waivers[i].Namespace == namespace {
			out = append(out, *f.waivers[i].DeepCopy())
		}
	}
	return out, nil
}

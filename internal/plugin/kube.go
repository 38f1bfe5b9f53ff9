package plugin

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/resource"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	eventsv1client "k8s.io/client-go/kubernetes/typed/events/v1"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/rest"

	"github.com/responsibility-operator/responsibility-operator/api/v1alpha1"
)

// modelsResource is the resource of ResponsibilityModels.
var modelsResource = v1alpha1.GroupVersion.WithResource("responsibilitymodels")

// waiversResource is the resource of DutyWaivers.
var waiversResource = v1alpha1.GroupVersion.WithResource("dutywaivers")

// listConcurrency bounds the list requests unmet sends at once.
const listConcurrency = 8

// Client-side rate limits: unmet without permission to read models lists
// every namespaced resource (about 60 on a bare cluster), which client-go's
// default of 5 requests per second would stretch over ten seconds. The API
// server's priority and fairness still applies.
const (
	clientQPS   = 50
	clientBurst = 100
)

// kubeCluster reads a real API server with the kubeconfig flags.
type kubeCluster struct {
	flags *genericclioptions.ConfigFlags
}

// NewKubeCluster returns the Cluster the kubeconfig flags name. It connects
// lazily: nothing is sent until a command reads.
func NewKubeCluster(flags *genericclioptions.ConfigFlags) (Cluster, error) {
	return &kubeCluster{flags: flags}, nil
}

func (k *kubeCluster) restConfig() (*rest.Config, error) {
	cfg, err := k.flags.ToRESTConfig()
	if err != nil {
		return nil, fmt.Errorf("load kubeconfig: %w", err)
	}
	if cfg.QPS == 0 {
		cfg.QPS, cfg.Burst = clientQPS, clientBurst
	}
	return cfg, nil
}

func (k *kubeCluster) DefaultNamespace() (string, error) {
	ns, _, err := k.flags.ToRawKubeConfigLoader().Namespace()
	if err != nil {
		return "", fmt.Errorf("read the namespace of the kubeconfig context: %w", err)
	}
	return ns, nil
}

func (k *kubeCluster) Get(_ context.Context, namespace string, args []string) (*unstructured.Unstructured, error) {
	infos, err := resource.NewBuilder(k.flags).
		Unstructured().
		NamespaceParam(namespace).DefaultNamespace().
		ResourceTypeOrNameArgs(false, args...).
		SingleResourceType().
		Flatten().
		Do().Infos()
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", strings.Join(args, " "), err)
	}
	if len(infos) != 1 {
		return nil, fmt.Errorf("get %s: %d objects, name exactly one as KIND/NAME", strings.Join(args, " "), len(infos))
	}
	obj, ok := infos[0].Object.(*unstructured.Unstructured)
	if !ok {
		return nil, fmt.Errorf("get %s: unexpected %T", strings.Join(args, " "), infos[0].Object)
	}
	return obj, nil
}

// Events reads events.k8s.io/v1 events regarding the object, or core/v1
// events when the user may read only those. Events of a cluster-scoped
// object live in the default namespace.
func (k *kubeCluster) Events(ctx context.Context, obj *unstructured.Unstructured) ([]Event, error) {
	ns := obj.GetNamespace()
	if ns == "" {
		ns = metav1.NamespaceDefault
	}
	events, err := newClient(k, "events", eventsv1client.NewForConfig)
	if err != nil {
		return nil, err
	}
	list, err := events.Events(ns).List(ctx, metav1.ListOptions{FieldSelector: fields.OneTermEqualSelector("regarding.uid", string(obj.GetUID())).String()})
	if err == nil {
		return fromEventsV1(list.Items), nil
	}
	if !apierrors.IsForbidden(err) {
		return nil, fmt.Errorf("list events in namespace %s: %w", ns, err)
	}
	core, cerr := newClient(k, "events", corev1client.NewForConfig)
	if cerr != nil {
		return nil, cerr
	}
	coreList, cerr := core.Events(ns).List(ctx, metav1.ListOptions{FieldSelector: fields.OneTermEqualSelector("involvedObject.uid", string(obj.GetUID())).String()})
	if cerr != nil {
		return nil, fmt.Errorf("list events in namespace %s: %w", ns, errors.Join(err, cerr))
	}
	return fromCoreEvents(coreList.Items), nil
}

func fromEventsV1(items []eventsv1.Event) []Event {
	var out []Event
	for i := range items {
		e := &items[i]
		if !isOperatorEvent(e.ReportingController, e.Reason) {
			continue
		}
		ev := Event{Type: e.Type, Reason: e.Reason, Message: e.Note, Count: 1, First: e.EventTime.Time, Last: e.EventTime.Time}
		if ev.First.IsZero() {
			ev.First, ev.Last, ev.Count = e.DeprecatedFirstTimestamp.Time, e.DeprecatedLastTimestamp.Time, max(e.DeprecatedCount, 1)
		}
		if e.Series != nil {
			ev.Count, ev.Last = e.Series.Count, e.Series.LastObservedTime.Time
		}
		out = append(out, ev)
	}
	return out
}

func fromCoreEvents(items []corev1.Event) []Event {
	var out []Event
	for i := range items {
		e := &items[i]
		if !isOperatorEvent(e.ReportingController, e.Reason) {
			continue
		}
		ev := Event{Type: e.Type, Reason: e.Reason, Message: e.Message, Count: max(e.Count, 1), First: e.FirstTimestamp.Time, Last: e.LastTimestamp.Time}
		if ev.First.IsZero() {
			ev.First, ev.Last = e.EventTime.Time, e.EventTime.Time
		}
		if e.Series != nil {
			ev.Count, ev.Last = e.Series.Count, e.Series.LastObservedTime.Time
		}
		out = append(out, ev)
	}
	return out
}

// newClient builds one kind of client of the kubeconfig's cluster.
func newClient[T any](k *kubeCluster, what string, build func(*rest.Config) (T, error)) (T, error) {
	var zero T
	cfg, err := k.restConfig()
	if err != nil {
		return zero, err
	}
	c, err := build(cfg)
	if err != nil {
		return zero, fmt.Errorf("%s client: %w", what, err)
	}
	return c, nil
}

func (k *kubeCluster) dynamic() (dynamic.Interface, error) {
	return newClient(k, "dynamic", func(cfg *rest.Config) (dynamic.Interface, error) { return dynamic.NewForConfig(cfg) })
}

func (k *kubeCluster) Models(ctx context.Context) ([]v1alpha1.ResponsibilityModel, error) {
	dyn, err := k.dynamic()
	if err != nil {
		return nil, err
	}
	list, err := dyn.Resource(modelsResource).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list responsibilitymodels: %w", err)
	}
	out := make([]v1alpha1.ResponsibilityModel, len(list.Items))
	for i := range list.Items {
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(list.Items[i].Object, &out[i]); err != nil {
			return nil, fmt.Errorf("read responsibilitymodel %s: %w", list.Items[i].GetName(), err)
		}
	}
	return out, nil
}

func (k *kubeCluster) Model(ctx context.Context, name string) (*v1alpha1.ResponsibilityModel, error) {
	dyn, err := k.dynamic()
	if err != nil {
		return nil, err
	}
	u, err := dyn.Resource(modelsResource).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("get responsibilitymodel %s: %w", name, err)
	}
	rm := &v1alpha1.ResponsibilityModel{}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, rm); err != nil {
		return nil, fmt.Errorf("read responsibilitymodel %s: %w", name, err)
	}
	return rm, nil
}

// listedResource is one resource unmet lists.
type listedResource struct {
	GVR        schema.GroupVersionResource
	Kind       string
	Namespaced bool
}

// Flagged lists the target kinds of the models when the user may list
// models, else every namespaced, listable resource that discovery reports.
// Kinds the user may not list are skipped, so a tenant with a namespaced
// Role sees the objects of the kinds it may read.
func (k *kubeCluster) Flagged(ctx context.Context, namespace string) (*FlaggedList, error) {
	req, err := labels.NewRequirement(v1alpha1.LabelStatus, selection.In, []string{v1alpha1.StatusUnmet, v1alpha1.StatusUnknown})
	if err != nil {
		return nil, fmt.Errorf("status selector: %w", err)
	}
	return k.labelled(ctx, namespace, labels.NewSelector().Add(*req).String())
}

// Evaluated lists the objects that carry the status label, the way Flagged
// lists those whose label says unmet or unknown.
func (k *kubeCluster) Evaluated(ctx context.Context, namespace string) (*FlaggedList, error) {
	req, err := labels.NewRequirement(v1alpha1.LabelStatus, selection.Exists, nil)
	if err != nil {
		return nil, fmt.Errorf("status selector: %w", err)
	}
	return k.labelled(ctx, namespace, labels.NewSelector().Add(*req).String())
}

// labelled lists the metadata of the objects that match a label selector,
// of the kinds Flagged lists.
func (k *kubeCluster) labelled(ctx context.Context, namespace, selector string) (*FlaggedList, error) {
	resources, err := k.flaggedResources(ctx)
	if err != nil {
		return nil, err
	}
	metaClient, err := newClient(k, "metadata", metadata.NewForConfig)
	if err != nil {
		return nil, err
	}

	var (
		mu   sync.Mutex
		wg   sync.WaitGroup
		out  = &FlaggedList{}
		seen = map[types.UID]bool{}
		sem  = make(chan struct{}, listConcurrency)
	)
	for _, r := range resources {
		if !r.Namespaced && namespace != "" {
			continue
		}
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			items, err := listMetadata(ctx, metaClient, r, namespace, selector)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case apierrors.IsForbidden(err):
				out.Forbidden = append(out.Forbidden, r.GVR.GroupResource().String())
			case apierrors.IsNotFound(err) || apierrors.IsMethodNotSupported(err):
				// removed since discovery, or not listable after all
			case err != nil:
				out.Warnings = append(out.Warnings, err.Error())
			default:
				out.Listed++
				gvk := r.GVR.GroupVersion().WithKind(r.Kind)
				for _, m := range items {
					if seen[m.UID] {
						continue
					}
					seen[m.UID] = true
					out.Objects = append(out.Objects, Flagged{GVK: gvk, Namespace: m.Namespace, Name: m.Name, Labels: m.Labels, Annotations: m.Annotations})
				}
			}
		})
	}
	wg.Wait()
	sort.Strings(out.Forbidden)
	sort.Strings(out.Warnings)
	return out, nil
}

// DutyWaivers lists the DutyWaivers of a namespace (every namespace when
// it is empty), a page at a time.
func (k *kubeCluster) DutyWaivers(ctx context.Context, namespace string) ([]v1alpha1.DutyWaiver, error) {
	dyn, err := k.dynamic()
	if err != nil {
		return nil, err
	}
	var out []v1alpha1.DutyWaiver
	opts := metav1.ListOptions{Limit: 500}
	for {
		list, err := dyn.Resource(waiversResource).Namespace(namespace).List(ctx, opts)
		if err != nil {
			return nil, fmt.Errorf("list dutywaivers: %w", err)
		}
		for i := range list.Items {
			dw := v1alpha1.DutyWaiver{}
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(list.Items[i].Object, &dw); err != nil {
				return nil, fmt.Errorf("read dutywaiver %s/%s: %w", list.Items[i].GetNamespace(), list.Items[i].GetName(), err)
			}
			out = append(out, dw)
		}
		if list.GetContinue() == "" {
			return out, nil
		}
		opts.Continue = list.GetContinue()
	}
}

func listMetadata(ctx context.Context, client metadata.Interface, r listedResource, namespace, selector string) ([]metav1.PartialObjectMetadata, error) {
	var out []metav1.PartialObjectMetadata
	opts := metav1.ListOptions{LabelSelector: selector, Limit: 500}
	for {
		list, err := client.Resource(r.GVR).Namespace(namespace).List(ctx, opts)
		if err != nil {
			return nil, fmt.Errorf("list %s: %w", r.GVR.GroupResource(), err)
		}
		out = append(out, list.Items...)
		if list.Continue == "" {
			return out, nil
		}
		opts.Continue = list.Continue
	}
}

// flaggedResources are the resources unmet lists: the models' target kinds,
// or, when the user may not list models, every namespaced listable resource.
func (k *kubeCluster) flaggedResources(ctx context.Context) ([]listedResource, error) {
	models, err := k.Models(ctx)
	if err == nil {
		mapper, merr := k.flags.ToRESTMapper()
		if merr != nil {
			return nil, fmt.Errorf("discover resources: %w", merr)
		}
		return targetResources(mapper, models), nil
	}
	if !apierrors.IsForbidden(err) && !apierrors.IsNotFound(err) && !meta.IsNoMatchError(err) {
		return nil, err
	}
	dc, err := k.flags.ToDiscoveryClient()
	if err != nil {
		return nil, fmt.Errorf("discover resources: %w", err)
	}
	lists, err := discovery.ServerPreferredNamespacedResources(dc)
	if err != nil && !discovery.IsGroupDiscoveryFailedError(err) {
		return nil, fmt.Errorf("discover resources: %w", err)
	}
	return listableResources(lists), nil
}

// targetResources maps the models' target kinds to resources; a kind the
// API server does not serve is skipped (the model's status says so).
func targetResources(mapper meta.RESTMapper, models []v1alpha1.ResponsibilityModel) []listedResource {
	var out []listedResource
	seen := map[schema.GroupVersionResource]bool{}
	for i := range models {
		for _, t := range models[i].Spec.Targets {
			gv, err := schema.ParseGroupVersion(t.APIVersion)
			if err != nil {
				continue
			}
			m, err := mapper.RESTMapping(schema.GroupKind{Group: gv.Group, Kind: t.Kind}, gv.Version)
			if err != nil || seen[m.Resource] {
				continue
			}
			seen[m.Resource] = true
			out = append(out, listedResource{GVR: m.Resource, Kind: t.Kind, Namespaced: m.Scope.Name() == meta.RESTScopeNameNamespace})
		}
	}
	return out
}

// listableResources are the resources of discovery lists that support list,
// without subresources.
func listableResources(lists []*metav1.APIResourceList) []listedResource {
	var out []listedResource
	for _, l := range lists {
		gv, err := schema.ParseGroupVersion(l.GroupVersion)
		if err != nil {
			continue
		}
		for _, r := range l.APIResources {
			if strings.Contains(r.Name, "/") || !hasVerb(r.Verbs, "list") {
				continue
			}
			out = append(out, listedResource{GVR: gv.WithResource(r.Name), Kind: r.Kind, Namespaced: r.Namespaced})
		}
	}
	return out
}

func hasVerb(verbs metav1.Verbs, verb string) bool {
	for _, v := range verbs {
		if v == verb {
			return true
		}
	}
	return false
}

package controller

import (
	"context"
	"fmt"
	"maps"
	"sync"
	"time"
	"unique"
	"unsafe"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/sets"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"github.com/responsibility-operator/responsibility-operator/api/v1alpha1"
)

// statusDelay coalesces the count changes of many objects into one status
// write per model.
const statusDelay = time.Second

// Options configure the operator's controllers.
type Options struct {
	// ExcludedNamespaces are never written to.
	ExcludedNamespaces []string
	// WorkloadConcurrency is the number of objects evaluated and written at once.
	WorkloadConcurrency int
	// PolicyReports selects the policy report kind to write: ReportsAuto
	// (the default), ReportsOpenReports, ReportsWGPolicy or ReportsOff.
	PolicyReports string
	// Projections, when set, are those of the manager's CacheOptions: the
	// cache then keeps only what the models read of each watched kind.
	Projections *Projections
}

// NewScheme returns the scheme the operator's manager needs.
func NewScheme() (*runtime.Scheme, error) {
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, apiextensionsv1.AddToScheme, v1alpha1.AddToScheme} {
		if err := add(scheme); err != nil {
			return nil, fmt.Errorf("build scheme: %w", err)
		}
	}
	return scheme, nil
}

// CacheOptions are the manager's cache options: the transform of
// TransformForCache with the projections to pass on to Setup in Options,
// and no informer started behind a reader's back.
func CacheOptions(p *Projections) cache.Options {
	return cache.Options{
		DefaultTransform:            TransformForCache(p),
		ReaderFailOnMissingInformer: true,
	}
}

// lastAppliedAnnotation is where kubectl apply keeps the configuration it
// last applied.
const lastAppliedAnnotation = "kubectl.kubernetes.io/last-applied-configuration"

// TransformForCache prepares an object for the cache. It strips
// managedFields and kubectl's last-applied configuration: nothing the
// operator decides reads them, and together they are often most of an
// object. It also makes the operator's own annotation
// values on objects share one copy each: every object a model matches
// carries the same matrix, a few KiB of JSON, and most carry the same duties,
// which would otherwise be decoded into a string of their own per object;
// so are the keys of metadata, labels and annotations, and the namespace.
// Last, it keeps of an object of a watched kind only what p says the models
// read (nil p keeps everything).
func TransformForCache(p *Projections) toolscache.TransformFunc {
	strip := cache.TransformStripManagedFields()
	return func(in any) (any, error) {
		u, ok := in.(*unstructured.Unstructured)
		if !ok {
			return strip(in)
		}
		internMetadata(u.Object)
		p.project(u)
		return u, nil
	}
}

// internMetadata drops an object's managedFields and kubectl's
// last-applied configuration, and makes the keys of its metadata, labels
// and annotations, its namespace and the operator's own annotation values
// the same strings on every object. A decoder makes a copy of each per object:
// at 10,000 cached objects, a few MiB of the same few hundred strings.
func internMetadata(obj map[string]any) {
	meta, _ := obj["metadata"].(map[string]any)
	if meta == nil {
		return
	}
	// Deleted from the map rather than through the object's accessor, whose
	// GetManagedFields converts every entry to its typed form first: that
	// was a tenth of the operator's CPU while it converged 10,000 objects.
	delete(meta, "managedFields")
	internKeys(meta)
	if ns, ok := meta["namespace"]; ok {
		if _, ok := ns.(string); ok {
			meta["namespace"] = unique.Make(ns).Value()
		}
	}
	if labels, ok := meta["labels"].(map[string]any); ok {
		internKeys(labels)
	}
	annotations, _ := meta["annotations"].(map[string]any)
	if len(annotations) == 0 {
		return
	}
	// kubectl apply's copy of the whole object, as large as the object
	// itself on every kubectl-applied workload; rules see objects without it.
	delete(annotations, lastAppliedAnnotation)
	internKeys(annotations)
	for _, k := range v1alpha1.OwnedAnnotations {
		if v, ok := annotations[k]; ok {
			if _, ok := v.(string); ok {
				// The value as an interface, so that its box is shared too.
				annotations[k] = unique.Make(v).Value()
			}
		}
	}
}

// internKeys replaces every key of m by its interned copy. Deleting a key
// and adding an equal one reuses its slot: m does not grow.
func internKeys(m map[string]any) {
	for k, v := range m {
		ik := unique.Make(k).Value()
		if unsafe.StringData(ik) == unsafe.StringData(k) {
			continue
		}
		delete(m, k)
		m[ik] = v
	}
}

// Setup registers the model and workload controllers with a manager.
func Setup(mgr manager.Manager, opts Options) error {
	switch opts.PolicyReports {
	case "", ReportsAuto, ReportsOpenReports, ReportsWGPolicy, ReportsOff:
	default:
		return fmt.Errorf("policy reports %q: want %s, %s, %s or %s", opts.PolicyReports, ReportsAuto, ReportsOpenReports, ReportsWGPolicy, ReportsOff)
	}
	m, err := DefaultMetrics()
	if err != nil {
		return fmt.Errorf("register metrics: %w", err)
	}
	registry := NewRegistry()
	written := NewWritten()
	watcher := NewWatcher(mgr.GetCache(), registry, written, opts.Projections)
	events := &EventEmitter{Recorder: mgr.GetEventRecorder(v1alpha1.FieldManager), Metrics: m}

	modelQueue := &queueRef[reconcile.Request]{}
	tally := NewTally(func(model string) { modelQueue.addAfter(modelRequest(model), statusDelay) })
	tally.SetMetrics(m)
	// While the controllers run, the metrics count their objects and watches;
	// when they stop, the counts go with them.
	if err := mgr.Add(manager.RunnableFunc(func(ctx context.Context) error {
		watches.add(watcher)
		<-ctx.Done()
		watches.remove(watcher)
		tally.Reset()
		return nil
	})); err != nil {
		return fmt.Errorf("add metrics lifecycle: %w", err)
	}

	models := &ModelReconciler{
		Written:            written,
		ExcludedNamespaces: sets.New(opts.ExcludedNamespaces...),
		Client:             mgr.GetClient(),
		Cache:              mgr.GetCache(),
		Resolver:           &Resolver{Mapper: mgr.GetRESTMapper(), Client: mgr.GetClient()},
		Registry:           registry,
		Tally:              tally,
		Watcher:            watcher,
		Events:             events,
		Metrics:            m,
	}
	err = ctrl.NewControllerManagedBy(mgr).
		Named("responsibilitymodel").
		// Models are independent; a model's reconcile is mostly API round
		// trips (access reviews, finalizer and status patches), so several
		// at once keep a thousand models from queueing for minutes.
		WithOptions(controller.Options{MaxConcurrentReconciles: 4}).
		For(&v1alpha1.ResponsibilityModel{}).
		WatchesRawSource(modelQueue.source()).
		WatchesMetadata(&apiextensionsv1.CustomResourceDefinition{}, handler.EnqueueRequestsFromMapFunc(
			func(ctx context.Context, _ client.Object) []reconcile.Request {
				models.CRDChanged()
				return allModels(ctx, mgr.GetClient())
			})).
		Complete(models)
	if err != nil {
		return fmt.Errorf("set up model controller: %w", err)
	}

	reportQueue := &queueRef[reconcile.Request]{}
	reports := &ReportReconciler{
		Watcher:   watcher,
		APIReader: mgr.GetAPIReader(),
		Writer:    mgr.GetClient(),
		Mapper:    mgr.GetRESTMapper(),
		Registry:  registry,
		Mode:      opts.PolicyReports,
	}
	rc, err := controller.NewTyped[reconcile.Request]("policyreport", mgr, controller.TypedOptions[reconcile.Request]{Reconciler: reports})
	if err != nil {
		return fmt.Errorf("set up report controller: %w", err)
	}
	if err := rc.Watch(reportQueue.source()); err != nil {
		return fmt.Errorf("watch report requests: %w", err)
	}

	workloads := &WorkloadReconciler{
		ModelsSettled: models.Settled,
		NamespaceChanged: func(ns string) {
			if ns != "" && opts.PolicyReports != ReportsOff {
				reports.Changed(ns, time.Now())
				reportQueue.addAfter(reconcile.Request{NamespacedName: types.NamespacedName{Name: ns}}, reportDelay)
			}
		},
		Reader:             mgr.GetCache(),
		Writer:             NewRESTApplier(mgr.GetConfig(), mgr.GetHTTPClient(), mgr.GetRESTMapper()),
		Registry:           registry,
		Watcher:            watcher,
		Written:            written,
		Tally:              tally,
		Events:             events,
		Metrics:            m,
		ExcludedNamespaces: sets.New(opts.ExcludedNamespaces...),
	}
	concurrency := opts.WorkloadConcurrency
	if concurrency <= 0 {
		concurrency = 16
	}
	wc, err := controller.NewTyped[WorkloadKey]("workload", mgr, controller.TypedOptions[WorkloadKey]{
		Reconciler:              workloads,
		MaxConcurrentReconciles: concurrency,
	})
	if err != nil {
		return fmt.Errorf("set up workload controller: %w", err)
	}
	if err := wc.Watch(watcher.Source()); err != nil {
		return fmt.Errorf("watch target kinds: %w", err)
	}
	ns := &unstructured.Unstructured{}
	ns.SetGroupVersionKind(namespaceGVK)
	if err := wc.Watch(source.TypedKind[*unstructured.Unstructured, WorkloadKey](mgr.GetCache(), ns,
		namespaceHandler(watcher, registry))); err != nil {
		return fmt.Errorf("watch namespaces: %w", err)
	}
	return nil
}

// namespaceHandler re-evaluates the target objects of a namespace whose
// labels or annotations change: selectors and rules may read them.
func namespaceHandler(w *Watcher, registry *Registry) handler.TypedEventHandler[*unstructured.Unstructured, WorkloadKey] {
	return handler.TypedFuncs[*unstructured.Unstructured, WorkloadKey]{
		UpdateFunc: func(ctx context.Context, e event.TypedUpdateEvent[*unstructured.Unstructured], _ workqueue.TypedRateLimitingInterface[WorkloadKey]) {
			if maps.Equal(e.ObjectOld.GetLabels(), e.ObjectNew.GetLabels()) &&
				maps.Equal(e.ObjectOld.GetAnnotations(), e.ObjectNew.GetAnnotations()) {
				return
			}
			for _, gvk := range registry.TargetKinds() {
				if err := w.EnqueueKind(gvk, e.ObjectNew.GetName()); err != nil {
					log.FromContext(ctx).Error(err, "re-evaluate namespace", "namespace", e.ObjectNew.GetName(), "gvk", gvk.String())
				}
			}
		},
	}
}

func allModels(ctx context.Context, c client.Client) []reconcile.Request {
	list := &v1alpha1.ResponsibilityModelList{}
	if err := c.List(ctx, list); err != nil {
		log.FromContext(ctx).Error(err, "list models after a CRD change")
		return nil
	}
	out := make([]reconcile.Request, len(list.Items))
	for i := range list.Items {
		out[i] = modelRequest(list.Items[i].Name)
	}
	return out
}

// queueRef captures a controller's queue when the controller starts, so that
// code outside the controller's watches can enqueue into it.
type queueRef[T comparable] struct {
	mu sync.Mutex
	q  workqueue.TypedRateLimitingInterface[T]
}

func (r *queueRef[T]) source() source.TypedSource[T] {
	return source.TypedFunc[T](func(_ context.Context, q workqueue.TypedRateLimitingInterface[T]) error {
		r.mu.Lock()
		r.q = q
		r.mu.Unlock()
		return nil
	})
}

// addAfter enqueues an item after a delay; before the controller starts it
// does nothing, since the controller's start enqueues every object anyway.
func (r *queueRef[T]) addAfter(item T, d time.Duration) {
	r.mu.Lock()
	q := r.q
	r.mu.Unlock()
	if q != nil {
		q.AddAfter(item, d)
	}
}

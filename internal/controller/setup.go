package controller

import (
	"context"
	"fmt"
	"maps"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apiserver/pkg/admission/plugin/policy/validating"
	"k8s.io/apiserver/pkg/cel/openapi/resolver"
	"k8s.io/client-go/discovery"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/workqueue"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"github.com/responsibility-operator/responsibility-operator/api/v1alpha1"
	"github.com/responsibility-operator/responsibility-operator/internal/ledger"
	"github.com/responsibility-operator/responsibility-operator/internal/metrics"
	"github.com/responsibility-operator/responsibility-operator/internal/registry"
	"github.com/responsibility-operator/responsibility-operator/internal/watch"
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
	Projections *watch.Projections
	// EventGracePeriod is how long the duty events of a newly created
	// object wait for the related objects applied with it; 0 (the zero
	// value) sends them at once. See v1alpha1.AnnotationEventsHeldUntil.
	EventGracePeriod time.Duration
}

// DefaultEventGracePeriod is the manager's --event-grace-period: long
// enough for kubectl apply -f dir/ to create a directory's objects and for
// an operator to create the objects it derives from them (a few seconds),
// short enough that a real problem is reported while its author still
// looks.
const DefaultEventGracePeriod = 20 * time.Second

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

// Setup registers the model and workload controllers with a manager.
func Setup(mgr manager.Manager, opts Options) error {
	switch opts.PolicyReports {
	case "", ReportsAuto, ReportsOpenReports, ReportsWGPolicy, ReportsOff:
	default:
		return fmt.Errorf("policy reports %q: want %s, %s, %s or %s", opts.PolicyReports, ReportsAuto, ReportsOpenReports, ReportsWGPolicy, ReportsOff)
	}
	m, err := metrics.DefaultMetrics()
	if err != nil {
		return fmt.Errorf("register metrics: %w", err)
	}
	compiled := registry.NewRegistry()
	written := ledger.NewWritten()
	watcher := watch.NewWatcher(mgr.GetCache(), compiled, written, opts.Projections)
	events := NewEventEmitter(mgr.GetEventRecorder(v1alpha1.FieldManager), mgr.GetAPIReader(), mgr.GetClient(), m)

	disco, err := discovery.NewDiscoveryClientForConfigAndClient(mgr.GetConfig(), mgr.GetHTTPClient())
	if err != nil {
		return fmt.Errorf("build a discovery client: %w", err)
	}
	writes, err := ownConnection(mgr.GetConfig())
	if err != nil {
		return err
	}
	modelQueue := &queueRef[reconcile.Request]{}
	tally := ledger.NewTally(func(model string) { modelQueue.addAfter(modelRequest(model), statusDelay) })
	tally.SetMetrics(m)
	waiverQueue := &queueRef[reconcile.Request]{}
	waived := ledger.NewWaived(func(nn types.NamespacedName) {
		waiverQueue.addAfter(reconcile.Request{NamespacedName: nn}, statusDelay)
	})
	// While the controllers run, the metrics count their objects and watches;
	// when they stop, the counts go with them.
	if err := mgr.Add(manager.RunnableFunc(func(ctx context.Context) error {
		metrics.AddWatches(watcher)
		<-ctx.Done()
		metrics.RemoveWatches(watcher)
		tally.Reset()
		waived.Reset()
		return nil
	})); err != nil {
		return fmt.Errorf("add metrics lifecycle: %w", err)
	}

	reportQueue := &queueRef[reconcile.Request]{}
	reports := &ReportReconciler{
		Watcher:   watcher,
		APIReader: mgr.GetAPIReader(),
		Writer:    mgr.GetClient(),
		Mapper:    mgr.GetRESTMapper(),
		Registry:  compiled,
		Mode:      opts.PolicyReports,
		Requeue: func(ns string) {
			reportQueue.addAfter(reconcile.Request{NamespacedName: types.NamespacedName{Name: ns}}, 0)
		},
		Backlog: watcher.Backlog,
	}
	rc, err := controller.NewTyped[reconcile.Request]("policyreport", mgr, controller.TypedOptions[reconcile.Request]{Reconciler: reports})
	if err != nil {
		return fmt.Errorf("set up report controller: %w", err)
	}
	if err := rc.Watch(reportQueue.source()); err != nil {
		return fmt.Errorf("watch report requests: %w", err)
	}

	operator, err := WhoAmI(context.Background(), mgr.GetClient())
	if err != nil {
		// The policies then also answer the operator's own writes: warnings
		// in its log, never a refusal (it only adds annotations).
		log.Log.WithName("setup").Error(err, "admission policies will evaluate the operator's own requests too")
	}
	models := &ModelReconciler{
		Admission: &AdmissionPolicies{
			Client: mgr.GetClient(), Reader: mgr.GetAPIReader(),
			Excluded: opts.ExcludedNamespaces, Operator: operator,
			TypeChecker: &validating.TypeChecker{
				SchemaResolver: &resolver.ClientDiscoveryResolver{Discovery: disco},
				RestMapper:     mgr.GetRESTMapper(),
			},
		},
		Written:            written,
		ExcludedNamespaces: sets.New(opts.ExcludedNamespaces...),
		Client:             mgr.GetClient(),
		Cache:              mgr.GetCache(),
		Resolver:           &Resolver{Discovery: disco, Client: mgr.GetClient()},
		Registry:           compiled,
		Tally:              tally,
		Watcher:            watcher,
		Events:             events,
		Metrics:            m,
	}
	if opts.PolicyReports != ReportsOff {
		models.Reports = reports
	}
	err = ctrl.NewControllerManagedBy(mgr).
		Named("responsibilitymodel").
		// Models are independent; a model's reconcile is mostly API round
		// trips (access reviews, finalizer and status patches), so several
		// at once keep a thousand models from queueing for minutes.
		WithOptions(controller.Options{MaxConcurrentReconciles: 4}).
		For(&v1alpha1.ResponsibilityModel{}).
		WatchesRawSource(modelQueue.source()).
		WatchesMetadata(&apiextensionsv1.CustomResourceDefinition{}, crdHandler(models, mgr.GetClient())).
		Complete(models)
	if err != nil {
		return fmt.Errorf("set up model controller: %w", err)
	}

	waiverSource, err := setupWaivers(mgr, compiled, waived, events, waiverQueue)
	if err != nil {
		return err
	}
	models.Changed = func(ctx context.Context, model string) {
		for _, req := range waiversOfModel(ctx, mgr.GetCache(), waiverSource, model) {
			waiverQueue.addAfter(req, 0)
		}
	}

	workloads := &WorkloadReconciler{
		NamespaceChanged: func(ns string) {
			if ns != "" && opts.PolicyReports != ReportsOff {
				reports.Changed(ns, time.Now())
				reportQueue.addAfter(reconcile.Request{NamespacedName: types.NamespacedName{Name: ns}}, reportDelay)
			}
		},
		Reader:             mgr.GetCache(),
		Writer:             NewRESTApplier(mgr.GetConfig(), writes, mgr.GetRESTMapper()),
		Registry:           compiled,
		Watcher:            watcher,
		Written:            written,
		Tally:              tally,
		Waivers:            waiverSource,
		Waived:             waived,
		Events:             events,
		EventGrace:         opts.EventGracePeriod,
		Metrics:            m,
		ExcludedNamespaces: sets.New(opts.ExcludedNamespaces...),
	}
	concurrency := opts.WorkloadConcurrency
	if concurrency <= 0 {
		concurrency = 16
	}
	wc, err := controller.NewTyped[watch.Key]("workload", mgr, controller.TypedOptions[watch.Key]{
		Reconciler:              workloads,
		MaxConcurrentReconciles: concurrency,
		RateLimiter: workqueue.NewTypedMaxOfRateLimiter(
			workqueue.NewTypedItemExponentialFailureRateLimiter[watch.Key](5*time.Millisecond, maxRetryInterval),
			&workqueue.TypedBucketRateLimiter[watch.Key]{Limiter: rate.NewLimiter(rate.Limit(10), 100)},
		),
	})
	if err != nil {
		return fmt.Errorf("set up workload controller: %w", err)
	}
	if err := wc.Watch(watcher.Source(models.Settled)); err != nil {
		return fmt.Errorf("watch target kinds: %w", err)
	}
	ns := &unstructured.Unstructured{}
	ns.SetGroupVersionKind(watch.NamespaceGVK)
	if err := wc.Watch(source.TypedKind[*unstructured.Unstructured, watch.Key](mgr.GetCache(), ns,
		namespaceHandler(watcher, compiled))); err != nil {
		return fmt.Errorf("watch namespaces: %w", err)
	}
	if !waiverSource.Disabled {
		if err := wc.Watch(source.TypedKind[*v1alpha1.DutyWaiver, watch.Key](mgr.GetCache(), &v1alpha1.DutyWaiver{},
			waiverTargetsHandler(watcher, compiled, waiverSource))); err != nil {
			return fmt.Errorf("watch DutyWaivers for workloads: %w", err)
		}
	}
	return nil
}

// namespaceHandler re-evaluates the target objects of a namespace whose
// labels or annotations change: selectors and rules may read them.
func namespaceHandler(w *watch.Watcher, compiled *registry.Registry) handler.TypedEventHandler[*unstructured.Unstructured, watch.Key] {
	return handler.TypedFuncs[*unstructured.Unstructured, watch.Key]{
		UpdateFunc: func(ctx context.Context, e event.TypedUpdateEvent[*unstructured.Unstructured], _ workqueue.TypedRateLimitingInterface[watch.Key]) {
			if maps.Equal(e.ObjectOld.GetLabels(), e.ObjectNew.GetLabels()) &&
				maps.Equal(e.ObjectOld.GetAnnotations(), e.ObjectNew.GetAnnotations()) {
				return
			}
			for _, gvk := range compiled.TargetKinds() {
				if err := w.EnqueueKind(gvk, e.ObjectNew.GetName()); err != nil {
					log.FromContext(ctx).Error(err, "re-evaluate namespace", "namespace", e.ObjectNew.GetName(), "gvk", gvk.String())
				}
			}
		},
	}
}

// crdHandler re-resolves the models that need a kind of a CRD's API group
// when the CRD is created, changed or deleted. The CRDs of the watch's
// initial list are no change: every model resolves its kinds on its first
// reconcile anyway, and counting them would hold every model in the
// CRD-settle window for its first 30 s.
func crdHandler(models *ModelReconciler, c client.Client) handler.EventHandler {
	changed := func(ctx context.Context, crd client.Object, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
		group := crdGroup(crd.GetName())
		models.CRDChanged(group)
		for _, req := range modelsNeeding(ctx, c, group) {
			q.Add(req)
		}
	}
	return handler.Funcs{
		CreateFunc: func(ctx context.Context, e event.CreateEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			if !e.IsInInitialList {
				changed(ctx, e.Object, q)
			}
		},
		UpdateFunc: func(ctx context.Context, e event.UpdateEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			changed(ctx, e.ObjectNew, q)
		},
		DeleteFunc: func(ctx context.Context, e event.DeleteEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			changed(ctx, e.Object, q)
		},
	}
}

// crdGroup is the API group of a CRD, from its name (<plural>.<group>).
func crdGroup(name string) string {
	_, group, _ := strings.Cut(name, ".")
	return group
}

// modelsNeeding returns the requests of the models that target or read a
// kind of an API group.
func modelsNeeding(ctx context.Context, c client.Client, group string) []reconcile.Request {
	list := &v1alpha1.ResponsibilityModelList{}
	if err := c.List(ctx, list); err != nil {
		log.FromContext(ctx).Error(err, "list models after a CRD change")
		return nil
	}
	var out []reconcile.Request
	for i := range list.Items {
		for _, need := range kindsOf(&list.Items[i].Spec) {
			if need.gvk.Group == group {
				out = append(out, modelRequest(list.Items[i].Name))
				break
			}
		}
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

// ownConnection returns an HTTP client with a connection pool of its own.
// The manager's client, cache and recorder share one HTTP/2 connection to
// the API server; on it, the response to each of the workload controller's
// applies queues behind the watch events of every other write, which
// carry whole objects. A dial function of its own keeps client-go from
// handing out its cached transport for the same TLS settings
// (transport.tlsConfigKey), and is the dialer client-go uses by default.
func ownConnection(cfg *rest.Config) (*http.Client, error) {
	own := rest.CopyConfig(cfg)
	if own.Dial == nil {
		own.Dial = (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	}
	hc, err := rest.HTTPClientFor(own)
	if err != nil {
		return nil, fmt.Errorf("build the workload writes' HTTP client: %w", err)
	}
	return hc, nil
}

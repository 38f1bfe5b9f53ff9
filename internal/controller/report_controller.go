package controller

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/responsibility-operator/responsibility-operator/api/v1alpha1"
	"github.com/responsibility-operator/responsibility-operator/internal/evaluate"
	"github.com/responsibility-operator/responsibility-operator/internal/registry"
	"github.com/responsibility-operator/responsibility-operator/internal/report"
	"github.com/responsibility-operator/responsibility-operator/internal/watch"
)

// +kubebuilder:rbac:groups=openreports.io,resources=reports,verbs=get;list;create;patch;delete
// +kubebuilder:rbac:groups=wgpolicyk8s.io,resources=policyreports,verbs=get;list;create;patch;delete

// Values of Options.PolicyReports.
const (
	// ReportsAuto writes openreports.io Reports when that CRD is installed,
	// else wgpolicyk8s.io PolicyReports when that one is, else nothing.
	ReportsAuto = "auto"
	// ReportsOpenReports writes openreports.io/v1alpha1 Reports.
	ReportsOpenReports = "openreports"
	// ReportsWGPolicy writes wgpolicyk8s.io/v1alpha2 PolicyReports.
	ReportsWGPolicy = "wgpolicyk8s"
	// ReportsOff writes no report.
	ReportsOff = "off"
)

const (
	// reportDelay coalesces the changes of a namespace's objects into one
	// report write. A report of a busy namespace is hundreds of KiB: while
	// thousands of objects converge, rewriting it every 2 s cost more API
	// server time than the annotations themselves (make bench).
	reportDelay = 10 * time.Second
	// reportMaxDelay bounds how long a namespace whose objects keep
	// changing waits for its report: a report is written once the namespace
	// has been quiet for reportDelay, or reportMaxDelay after the first
	// change of a burst. During a convergence of thousands of objects a
	// report every 10 s per namespace was still a tenth of the API server's
	// work. The bursts of every namespace start with the same model change
	// and come due together: at a minute, the reports of 20 namespaces of
	// 500 objects cut the rate of applies in half for the last third of a
	// 90 s convergence (make bench, its progress lines). At five minutes a
	// convergence of 10,000 objects writes them once, when it is over.
	reportMaxDelay = 5 * time.Minute
	// reportBacklog is how many workload keys may wait to be evaluated
	// before a due report waits for them: the annotations on the objects
	// come first, and a report written while its namespace's objects are
	// still being evaluated is written again once they are. At 50,000
	// objects the convergence outlasts reportMaxDelay, and the reports of
	// 20 namespaces of 2,500 objects (183 applies of up to 0.5 MiB) cut the
	// rate of applies from 118/s to 63/s for its last 250 s (make bench).
	reportBacklog = 256
	// reportBusyMaxDelay bounds how long a report waits for the backlog, so
	// that an operator that never catches up still writes its reports.
	reportBusyMaxDelay = 30 * time.Minute
	// reportKindRecheck is how long a missing report CRD is remembered.
	reportKindRecheck = 30 * time.Second
)

// ReportReconciler keeps, per namespace, policy reports with one result per
// annotated object and duty, built from the duties annotations in the
// cache. It writes a report only when its results change, and removes its
// reports from a namespace that has no results left.
type ReportReconciler struct {
	// Watcher holds the annotated objects.
	Watcher *watch.Watcher
	// APIReader reads existing reports (they are not cached: the operator
	// only needs them when its own content changes).
	APIReader client.Reader
	Writer    client.Client
	Mapper    meta.RESTMapper
	Registry  *registry.Registry
	Mode      string

	mu sync.Mutex
	// written holds, per namespace, the SHA-256 of the content last written
	// or confirmed (a busy namespace's content is hundreds of KiB).
	written map[string][sha256.Size]byte
	// kind is the report kind in use; checked is when a missing kind was seen.
	kind    *schema.GroupVersionKind
	checked time.Time
	// bursts holds, per namespace, the first and the last change not yet
	// reported.
	bursts map[string]burst
	// urgent holds the namespaces whose report is due at once (see Cleared);
	// current, when each namespace's reports were last found equal to its
	// objects.
	urgent  map[string]bool
	current map[string]time.Time
	// Requeue, when set, enqueues a namespace's reconcile at once.
	Requeue func(namespace string)
	// Backlog, when set, is how many workload keys wait to be evaluated
	// (see reportBacklog).
	Backlog func() int
}

type burst struct{ first, last time.Time }

// Changed records that an object of namespace ns was evaluated at now.
func (r *ReportReconciler) Changed(ns string, now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.bursts == nil {
		r.bursts = map[string]burst{}
	}
	b, ok := r.bursts[ns]
	if !ok {
		b.first = now
	}
	b.last = now
	r.bursts[ns] = b
}

// holdOff returns how much longer the report of ns waits for its objects
// to settle (see reportMaxDelay) or for the workloads' backlog (see
// reportBacklog), or 0 when it is due; a due burst is forgotten, and
// changes from then on start a new one.
func (r *ReportReconciler) holdOff(ns string, now time.Time) time.Duration {
	backlog := 0
	if r.Backlog != nil {
		// Read before r.mu is taken: it takes the watcher's and the queue's.
		backlog = r.Backlog()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	b, ok := r.bursts[ns]
	if r.urgent[ns] {
		delete(r.urgent, ns)
		delete(r.bursts, ns)
		return 0
	}
	if !ok {
		return 0
	}
	wait := min(b.last.Add(reportDelay).Sub(now), b.first.Add(reportMaxDelay).Sub(now))
	if busy := b.first.Add(reportBusyMaxDelay).Sub(now); wait <= 0 && busy > 0 && backlog > reportBacklog {
		// Looked at again in reportDelay: the backlog does not say
		// when it is gone.
		return min(reportDelay, busy)
	}
	if wait <= 0 {
		delete(r.bursts, ns)
		return 0
	}
	return wait
}

// Reconcile brings one namespace's reports up to date.
func (r *ReportReconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	gvk, ok := r.reportKind()
	if !ok {
		return reconcile.Result{}, nil
	}
	ns := req.Name
	if wait := r.holdOff(ns, time.Now()); wait > 0 {
		return reconcile.Result{RequeueAfter: wait}, nil
	}
	objects, complete, err := r.annotatedObjects(ns)
	if err != nil {
		return reconcile.Result{}, err
	}
	if !complete {
		// A target kind's initial list is still arriving: a report now
		// would leave out objects that are on their way.
		return reconcile.Result{RequeueAfter: relatedSyncRetry}, nil
	}
	models := map[string]*evaluate.Model{}
	for _, o := range objects {
		for name := range o.Duties {
			if m := r.Registry.Get(name); m != nil {
				models[name] = m
			}
		}
	}
	desired := report.Build(gvk, ns, objects, models, report.MaxResults)
	encoded, err := json.Marshal(contents(desired))
	if err != nil {
		return reconcile.Result{}, fmt.Errorf("encode reports of %s: %w", ns, err)
	}
	fingerprint := sha256.Sum256(encoded)
	r.mu.Lock()
	last, ok := r.written[ns]
	same := ok && last == fingerprint
	r.mu.Unlock()
	if same {
		r.markCurrent(ns)
		return reconcile.Result{}, nil
	}
	for _, want := range desired {
		if err := r.write(ctx, want); err != nil {
			return reconcile.Result{}, r.forgetKindIfGone(err)
		}
	}
	if err := r.deleteStale(ctx, gvk, ns, len(desired)); err != nil {
		return reconcile.Result{}, r.forgetKindIfGone(err)
	}
	r.mu.Lock()
	if r.written == nil {
		r.written = map[string][sha256.Size]byte{}
	}
	r.written[ns] = fingerprint
	r.mu.Unlock()
	r.markCurrent(ns)
	return reconcile.Result{}, nil
}

func (r *ReportReconciler) markCurrent(ns string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.current == nil {
		r.current = map[string]time.Time{}
	}
	r.current[ns] = time.Now()
}

// Cleared reports whether no policy report lists a model any more but those
// written from the objects as they were at or after since (a tenant's forged
// duties annotation can name a deleted model; its report then says so too).
// A namespace whose report lists the model and is older is written at once,
// without waiting for its objects to settle: a model's finalizer waits on
// this, so that deleting the last model and stopping the operator leaves no
// report behind.
func (r *ReportReconciler) Cleared(ctx context.Context, model string, since time.Time) (bool, error) {
	gvk, ok := r.reportKind()
	if !ok {
		return true, nil
	}
	list := &unstructured.UnstructuredList{}
	list.SetGroupVersionKind(gvk.GroupVersion().WithKind(gvk.Kind + "List"))
	if err := r.APIReader.List(ctx, list, client.MatchingLabels{report.LabelManagedBy: report.Source}); err != nil {
		return false, r.forgetKindIfGone(fmt.Errorf("list reports: %w", err))
	}
	cleared := true
	for i := range list.Items {
		ns := list.Items[i].GetNamespace()
		if !report.Lists(&list.Items[i], model) {
			continue
		}
		r.mu.Lock()
		current := !r.current[ns].Before(since)
		if !current {
			if r.urgent == nil {
				r.urgent = map[string]bool{}
			}
			r.urgent[ns] = true
		}
		r.mu.Unlock()
		if !current {
			cleared = false
			if r.Requeue != nil {
				r.Requeue(ns)
			}
		}
	}
	return cleared, nil
}

// reportKind returns the report kind to write, per Mode and the CRDs served.
func (r *ReportReconciler) reportKind() (schema.GroupVersionKind, bool) {
	var candidates []schema.GroupVersionKind
	switch r.Mode {
	case ReportsOff:
		return schema.GroupVersionKind{}, false
	case ReportsOpenReports:
		candidates = []schema.GroupVersionKind{report.OpenReports}
	case ReportsWGPolicy:
		candidates = []schema.GroupVersionKind{report.WGPolicy}
	default:
		candidates = []schema.GroupVersionKind{report.OpenReports, report.WGPolicy}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.kind != nil {
		return *r.kind, true
	}
	if time.Since(r.checked) < reportKindRecheck {
		return schema.GroupVersionKind{}, false
	}
	for _, gvk := range candidates {
		if _, err := r.Mapper.RESTMapping(gvk.GroupKind(), gvk.Version); err == nil {
			r.kind = &gvk
			return gvk, true
		}
	}
	r.checked = time.Now()
	return schema.GroupVersionKind{}, false
}

// forgetKindIfGone makes the next reconcile choose the report kind again
// when the chosen kind's CRD was uninstalled; the error is retried.
func (r *ReportReconciler) forgetKindIfGone(err error) error {
	if meta.IsNoMatchError(err) {
		r.mu.Lock()
		r.kind, r.written = nil, nil
		r.mu.Unlock()
	}
	return err
}

// annotatedObjects lists, from the cache, the namespace's objects of every
// target kind that carry a duties annotation. complete is false while a
// target kind's initial list is still arriving.
func (r *ReportReconciler) annotatedObjects(ns string) (out []report.Object, complete bool, err error) {
	for _, gvk := range r.Registry.TargetKinds() {
		if r.Watcher.Watched(gvk) && !r.Watcher.Listable(gvk) {
			return nil, false, nil
		}
		// Not watched (yet): no objects, and none carry annotations of ours.
		items, err := r.Watcher.Cached(gvk, ns)
		if err != nil {
			return nil, false, err
		}
		for _, o := range items {
			raw, ok, _ := unstructured.NestedString(o.Object, "metadata", "annotations", v1alpha1.AnnotationDuties)
			if !ok {
				continue
			}
			out = append(out, report.Object{
				APIVersion: o.GetAPIVersion(), Kind: o.GetKind(), Namespace: o.GetNamespace(),
				Name: o.GetName(), UID: string(o.GetUID()), Duties: evaluate.ParseDuties(raw),
			})
		}
	}
	return out, true, nil
}

// write applies a report unless the stored one has the same content.
func (r *ReportReconciler) write(ctx context.Context, want *unstructured.Unstructured) error {
	existing := &unstructured.Unstructured{}
	existing.SetGroupVersionKind(want.GroupVersionKind())
	err := r.APIReader.Get(ctx, client.ObjectKeyFromObject(want), existing)
	switch {
	case err == nil && equality.Semantic.DeepEqual(normalize(report.Content(existing)), normalize(report.Content(want))):
		return nil
	case err != nil && !apierrors.IsNotFound(err):
		return fmt.Errorf("get report %s/%s: %w", want.GetNamespace(), want.GetName(), err)
	}
	if err := r.Writer.Apply(ctx, client.ApplyConfigurationFromUnstructured(want),
		client.FieldOwner(v1alpha1.FieldManager), client.ForceOwnership); err != nil {
		return fmt.Errorf("apply report %s/%s: %w", want.GetNamespace(), want.GetName(), err)
	}
	log.FromContext(ctx).V(1).Info("wrote policy report", "namespace", want.GetNamespace(), "name", want.GetName())
	return nil
}

// deleteStale deletes the operator's reports of a namespace beyond the first
// keep chunks.
func (r *ReportReconciler) deleteStale(ctx context.Context, gvk schema.GroupVersionKind, ns string, keep int) error {
	list := &unstructured.UnstructuredList{}
	list.SetGroupVersionKind(gvk.GroupVersion().WithKind(gvk.Kind + "List"))
	if err := r.APIReader.List(ctx, list, client.InNamespace(ns), client.MatchingLabels{report.LabelManagedBy: report.Source}); err != nil {
		return fmt.Errorf("list reports in %s: %w", ns, err)
	}
	wanted := map[string]bool{}
	for i := range keep {
		wanted[report.ChunkName(i)] = true
	}
	for i := range list.Items {
		if wanted[list.Items[i].GetName()] {
			continue
		}
		if err := r.Writer.Delete(ctx, &list.Items[i]); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("delete report %s/%s: %w", ns, list.Items[i].GetName(), err)
		}
	}
	return nil
}

func contents(reports []*unstructured.Unstructured) []map[string]any {
	out := make([]map[string]any, len(reports))
	for i, u := range reports {
		out[i] = report.Content(u)
	}
	return out
}

// normalize round-trips content through JSON so that numbers compare equal
// whether they came from the server (int64) or were built here.
func normalize(v map[string]any) any {
	raw, err := json.Marshal(v)
	if err != nil {
		return v
	}
	var out any
	if err := json.Unmarshal(raw, &out); err != nil {
		return v
	}
	return out
}

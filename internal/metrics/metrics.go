// Package metrics defines the operator's Prometheus collectors, served on
// controller-runtime's metrics endpoint.
package metrics

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/runtime/schema"
	crmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
)

// The operator's metrics, served on controller-runtime's metrics endpoint
// beside its own (workqueue, reconcile, client). Counts of objects are
// labelled by model, kind, duty, state and namespace — never by object, so
// the number of series does not grow with the number of objects.
// docs/reference.md lists them.
const metricsNamespace = "responsibility"

// WatchSyncedMetric is the name of the gauge of watched kinds, collected at
// scrape time.
const WatchSyncedMetric = metricsNamespace + "_watch_synced"

// Metric label names.
const (
	labelModel     = "model"
	labelKind      = "kind"
	labelDuty      = "duty"
	labelState     = "state"
	labelNamespace = "namespace"
	labelResult    = "result"
	labelReason    = "reason"
	labelType      = "type"
)

// Label values of responsibility_applies_total's result.
const (
	ApplySuccess  = "success"
	ApplyConflict = "conflict"
	ApplyError    = "error"
)

// Label values of responsibility_requeues_total's reason: why a workload
// reconcile put its object back without evaluating it.
const (
	// RequeueOwnWrite: the cache does not hold the operator's last write of
	// the object yet.
	RequeueOwnWrite = "own_write_pending"
	// RequeueRelatedListing: a related kind's initial list is still arriving.
	RequeueRelatedListing = "related_listing"
	// RequeueCacheWidened: a kind was listed again, with more fields, while
	// the object was read.
	RequeueCacheWidened = "cache_widened"
)

// Metrics are the operator's Prometheus collectors.
type Metrics struct {
	MatchedObjects     *prometheus.GaugeVec
	DutyObjects        *prometheus.GaugeVec
	EvaluationDuration prometheus.Histogram
	ApplyDuration      prometheus.Histogram
	Applies            *prometheus.CounterVec
	Events             *prometheus.CounterVec
	ModelReady         *prometheus.GaugeVec
	Rechecks           prometheus.Counter
	Requeues           *prometheus.CounterVec
}

// NewMetrics returns unregistered collectors.
func NewMetrics() *Metrics {
	return &Metrics{
		MatchedObjects: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: metricsNamespace, Name: "matched_objects",
			Help: "Objects a model currently applies to, by model and kind.",
		}, []string{labelModel, labelKind}),
		DutyObjects: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: metricsNamespace, Name: "duty_objects",
			Help: "Objects by the state of one duty (Met, Unmet, Unknown, Waived), by model, duty and namespace.",
		}, []string{labelModel, labelDuty, labelState, labelNamespace}),
		EvaluationDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: metricsNamespace, Name: "evaluation_duration_seconds",
			Help:    "Time to evaluate every matching model's rules on one object and compute its annotations.",
			Buckets: prometheus.ExponentialBuckets(5e-6, 2.5, 12), // 5µs .. ~1.2s
		}),
		ApplyDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: metricsNamespace, Name: "apply_duration_seconds",
			Help:    "Latency of one server-side apply of an object's annotations.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14), // 1ms .. ~8s
		}),
		Applies: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: metricsNamespace, Name: "applies_total",
			Help: "Server-side applies of an object's annotations, by kind and result (success, conflict, error).",
		}, []string{labelKind, labelResult}),
		Events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: metricsNamespace, Name: "events_total",
			Help: "Events emitted, by reason and type.",
		}, []string{labelReason, labelType}),
		ModelReady: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: metricsNamespace, Name: "model_ready",
			Help: "1 when a model's Ready condition is True, 0 otherwise.",
		}, []string{labelModel}),
		Rechecks: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: metricsNamespace, Name: "rechecks_total",
			Help: "Evaluations of an object at its re-check time: a duty reads now, or a waiver's expiry changes its result.",
		}),
		Requeues: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: metricsNamespace, Name: "requeues_total",
			Help: "Workload reconciles that put the object back without evaluating it, by reason (own_write_pending, related_listing, cache_widened).",
		}, []string{labelReason}),
	}
}

func (m *Metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.MatchedObjects, m.DutyObjects, m.EvaluationDuration, m.ApplyDuration, m.Applies, m.Events, m.ModelReady, m.Rechecks, m.Requeues, watches}
}

var (
	defaultMetrics     *Metrics
	defaultMetricsOnce sync.Once
	defaultMetricsErr  error
)

// DefaultMetrics returns the collectors registered with controller-runtime's
// registry, registering them on first use.
func DefaultMetrics() (*Metrics, error) {
	defaultMetricsOnce.Do(func() {
		m := NewMetrics()
		for _, c := range m.collectors() {
			if err := crmetrics.Registry.Register(c); err != nil {
				defaultMetricsErr = err
				return
			}
		}
		defaultMetrics = m
	})
	return defaultMetrics, defaultMetricsErr
}

// Watches is what the gauge of watched kinds reads from a running watcher.
type Watches interface {
	WatchedKinds() []schema.GroupVersionKind
	Synced(gvk schema.GroupVersionKind) bool
}

// AddWatches makes the gauge of watched kinds report w's kinds until
// RemoveWatches.
func AddWatches(w Watches) { watches.add(w) }

// RemoveWatches stops reporting w's kinds.
func RemoveWatches(w Watches) { watches.remove(w) }

// watches reports, at scrape time, every kind the running watchers watch and
// whether its cache has synced. A process runs one manager; tests run
// several in turn, each adding its watcher while it runs.
var watches = &watchCollector{
	watchers: map[Watches]bool{},
	desc: prometheus.NewDesc(
		WatchSyncedMetric,
		"1 for a watched kind whose cache has synced, 0 while it syncs.",
		[]string{"group", "version", labelKind}, nil),
}

type watchCollector struct {
	mu       sync.Mutex
	watchers map[Watches]bool
	desc     *prometheus.Desc
}

func (c *watchCollector) add(w Watches) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.watchers[w] = true
}

func (c *watchCollector) remove(w Watches) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.watchers, w)
}

func (c *watchCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *watchCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for w := range c.watchers {
		for _, gvk := range w.WatchedKinds() {
			v := 0.0
			if w.Synced(gvk) {
				v = 1
			}
			ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, v, gvk.Group, gvk.Version, gvk.Kind)
		}
	}
}

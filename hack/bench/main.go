// Command bench is `make bench`: it measures the operator against the write
// limit of the API server it runs on, in one run on one local control plane.
//
// It creates N workloads (three kinds, 20 namespaces; one in ten neglects a
// duty), times a plain client writing the same annotations to all of them
// (the baseline), then runs the operator binary and measures convergence,
// API writes per object on first convergence, on a forced re-evaluation, on
// a restart and after model edits, update-to-annotation latency under a
// steady stream of updates, memory, and events against duty transitions.
// Every time is reported as a ratio to the baseline, so that runs on
// different machines compare.
package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/responsibility-operator/responsibility-operator/api/v1alpha1"
	"github.com/responsibility-operator/responsibility-operator/internal/devcluster"
)

type options struct {
	root, manager, assets, dir, out string
	n, namespaces, concurrency      int
	rate                            float64
	streamFor                       time.Duration
	operatorArgs, operatorEnv       stringList
	operatorNice                    int
	heapProfile, cpuProfile         string
	serverProfile                   string
}

type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, " ") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run() error {
	root, err := os.Getwd()
	if err != nil {
		return err
	}
	o := options{root: root}
	flag.IntVar(&o.n, "n", 10000, "number of workloads")
	flag.IntVar(&o.namespaces, "namespaces", 20, "number of namespaces")
	flag.IntVar(&o.concurrency, "concurrency", 16, "concurrent writes of the baseline client (the operator's --workload-concurrency default)")
	flag.Float64Var(&o.rate, "rate", 50, "updates per second of the latency stream")
	flag.DurationVar(&o.streamFor, "stream", 20*time.Second, "duration of the latency stream")
	flag.StringVar(&o.manager, "manager", filepath.Join(root, "bin", "manager"), "the operator binary (make build)")
	flag.StringVar(&o.assets, "assets", filepath.Join(root, "bin", "k8s"), "directory with kube-apiserver and etcd (make controlplane)")
	flag.StringVar(&o.dir, "dir", filepath.Join(root, "tmp", "bench"), "directory for the kubeconfig and the operator's log")
	flag.StringVar(&o.out, "out", "", "write the results as JSON to this file (default bench/results-<n>.json; - for stdout)")
	flag.StringVar(&o.heapProfile, "heap-profile", "", "save the operator's heap profile after first convergence to this file (go tool pprof)")
	flag.StringVar(&o.cpuProfile, "cpu-profile", "", "save a 10s CPU profile of the operator during first convergence to this file")
	flag.StringVar(&o.serverProfile, "server-cpu-profile", "", "save 20s CPU profiles of the API server during the baseline's first pass and first convergence to PREFIX-baseline.pprof and PREFIX-converge.pprof (compare with go tool pprof -diff_base)")
	flag.IntVar(&o.operatorNice, "operator-nice", 0, "run the operator at this nice(1) priority (1-19), so that it yields the CPU it shares with the API server")
	flag.Var(&o.operatorEnv, "operator-env", "extra operator environment variable (repeatable), e.g. -operator-env=GOMEMLIMIT=180MiB")
	flag.Var(&o.operatorArgs, "operator-arg", "extra operator flag (repeatable), e.g. -operator-arg=--workload-concurrency=32")
	flag.Parse()
	if o.out == "" {
		o.out = filepath.Join(root, "bench", fmt.Sprintf("results-%d.json", o.n))
	}
	if _, err := os.Stat(o.manager); err != nil {
		return fmt.Errorf("%s is missing: run `make bench`, which builds it", o.manager)
	}
	if err := os.MkdirAll(o.dir, 0o755); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	res, err := measure(ctx, o)
	if err != nil {
		return err
	}
	printTable(res)
	raw, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return err
	}
	if o.out == "-" {
		fmt.Println(string(raw))
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(o.out), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(o.out, append(raw, '\n'), 0o644); err != nil {
		return err
	}
	fmt.Println("\nwrote", o.out)
	return nil
}

// bench holds what every phase needs.
type bench struct {
	o         options
	cluster   *devcluster.Cluster
	c         client.Client
	dyn       dynamic.Interface
	raw       rest.Interface
	workloads []*workload
	models    []*v1alpha1.ResponsibilityModel
	oracle    *oracle
	tracker   *tracker
	gvrs      map[schema.GroupVersionResource]schema.GroupVersionKind
	operator  *devcluster.Operator
	peakRSS   int64
	peakHeap  float64
	heapMu    sync.Mutex
	// events counted by the operators that ran (counters restart with them)
	operatorEvents float64
	pprofPort      int
}

func step(format string, args ...any) {
	fmt.Printf("==> %s %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

func measure(ctx context.Context, o options) (*Results, error) {
	b := &bench{o: o, tracker: newTracker()}
	step("starting a local control plane")
	cluster, err := devcluster.StartCluster(devcluster.ClusterOptions{Root: o.root, Assets: o.assets, Dir: o.dir})
	if err != nil {
		return nil, err
	}
	defer func() { _ = cluster.Stop() }()
	b.cluster = cluster
	cfg := rest.CopyConfig(cluster.Config)
	cfg.QPS, cfg.Burst = -1, 0 // the baseline measures the server, not a client-side limit
	scheme := k8sruntime.NewScheme()
	if err := v1alpha1.AddToScheme(scheme); err != nil {
		return nil, err
	}
	if b.c, err = client.New(cfg, client.Options{Scheme: scheme}); err != nil {
		return nil, err
	}
	if b.dyn, err = dynamic.NewForConfig(cfg); err != nil {
		return nil, err
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	b.raw = cs.CoreV1().RESTClient()

	r := &Results{N: o.n, Namespaces: o.namespaces, Concurrency: o.concurrency, CPUs: runtime.NumCPU(), Started: time.Now().UTC().Format(time.RFC3339)}
	if err := b.setUp(ctx); err != nil {
		return nil, err
	}
	if err := b.baseline(ctx, r); err != nil {
		return nil, err
	}
	defer func() {
		if b.operator != nil {
			_ = b.operator.Stop()
		}
	}()
	phases := []func(context.Context, *Results) error{
		b.converge, b.resync, b.restart, b.smallEdit, b.fanOut, b.latency,
	}
	for _, phase := range phases {
		if err := phase(ctx, r); err != nil {
			return nil, fmt.Errorf("%w (operator log: %s)", err, filepath.Join(o.dir, "manager.log"))
		}
	}
	if err := b.finish(ctx, r); err != nil {
		return nil, err
	}
	if err := b.closingBaseline(ctx, r); err != nil {
		return nil, err
	}
	r.Goals = goals(r)
	return r, nil
}

// setUp creates the namespaces, the workloads and their related objects,
// and starts watching the workloads.
func (b *bench) setUp(ctx context.Context) error {
	var err error
	if b.workloads, err = generate(b.o.root, b.o.n, b.o.namespaces); err != nil {
		return err
	}
	if b.models, err = benchModels(b.o.root); err != nil {
		return err
	}
	namespaces := map[string]map[string]any{}
	for i := range b.o.namespaces {
		ns := &unstructured.Unstructured{}
		ns.SetAPIVersion("v1")
		ns.SetKind("Namespace")
		ns.SetName(namespaceName(i))
		if err := b.c.Create(ctx, ns); err != nil {
			return fmt.Errorf("create namespace: %w", err)
		}
		namespaces[ns.GetName()] = ns.Object
	}
	var objs []*unstructured.Unstructured
	for _, w := range b.workloads {
		if w.related != nil {
			objs = append(objs, w.related)
		}
		objs = append(objs, w.obj)
	}
	step("creating %d workloads and %d related objects in %d namespaces", len(b.workloads), len(objs)-len(b.workloads), b.o.namespaces)
	start := time.Now()
	if err := parallel(ctx, b.o.concurrency, len(objs), func(i int) error {
		if err := devcluster.Create(ctx, b.c, objs[i]); err != nil {
			return fmt.Errorf("create %s %s/%s: %w", objs[i].GetKind(), objs[i].GetNamespace(), objs[i].GetName(), err)
		}
		return nil
	}); err != nil {
		return err
	}
	step("created in %.1fs (%.0f/s)", time.Since(start).Seconds(), float64(len(objs))/time.Since(start).Seconds())
	if b.oracle, err = newOracle(b.models, namespaces, b.workloads); err != nil {
		return err
	}
	b.gvrs = map[schema.GroupVersionResource]schema.GroupVersionKind{}
	for i := range kinds {
		gvk := b.workloads[i].obj.GroupVersionKind()
		m, err := b.c.RESTMapper().RESTMapping(gvk.GroupKind(), gvk.Version)
		if err != nil {
			return fmt.Errorf("map %s: %w", gvk, err)
		}
		b.gvrs[m.Resource] = gvk
	}
	return b.tracker.start(ctx, b.dyn, b.gvrs)
}

// baseline times a plain client applying, with the same concurrency, the
// same annotations the operator will write (under keys of its own), with
// server-side apply and a UID precondition like the operator's.
func (b *bench) baseline(ctx context.Context, r *Results) error {
	step("baseline: a plain client applies the same annotations to %d objects, %d at a time", len(b.workloads), b.o.concurrency)
	clientBefore := processCPUSeconds()
	profiled := b.profileServer(ctx, "baseline")
	seconds, writes, err := b.measuredPass(ctx, b.oracle)
	if err != nil {
		return fmt.Errorf("baseline: %w", err)
	}
	if err := <-profiled; err != nil {
		return err
	}
	r.Baseline.ClientCPUSeconds = processCPUSeconds() - clientBefore
	r.Baseline.Seconds = seconds
	r.Baseline.WritesPerSecond = float64(len(b.workloads)) / seconds
	r.Baseline.ServerApplyMs = writes.meanApplyMs()
	r.Baseline.ServerCPUSeconds = writes.cpuSeconds
	r.Baseline.EtcdCPUSeconds = writes.etcdCPUSeconds
	step("baseline: %.2fs, %.0f writes/s, the server's mean apply %.1fms; CPU: API server %.1fs, etcd %.1fs, client %.1fs",
		r.Baseline.Seconds, r.Baseline.WritesPerSecond, r.Baseline.ServerApplyMs, r.Baseline.ServerCPUSeconds, r.Baseline.EtcdCPUSeconds, r.Baseline.ClientCPUSeconds)

	// Rewriting annotations an object carries costs the server more than
	// adding them (the old values and managed fields are read and
	// compared): the fan-out after a full model edit is compared with the
	// plain client doing that rewrite too.
	edited := make([]*v1alpha1.ResponsibilityModel, len(b.models))
	for i, m := range b.models {
		edited[i] = m.DeepCopy()
		fullEdit(edited[i])
	}
	rewrite, err := b.oracle.with(edited)
	if err != nil {
		return err
	}
	if r.Baseline.RewriteSeconds, writes, err = b.measuredPass(ctx, rewrite); err != nil {
		return fmt.Errorf("rewrite baseline: %w", err)
	}
	r.Baseline.RewriteServerCPUSeconds = writes.cpuSeconds
	r.Baseline.RewriteEtcdCPUSeconds = writes.etcdCPUSeconds
	step("baseline rewrite with the values of a full model edit: %.2fs; CPU: API server %.1fs, etcd %.1fs",
		r.Baseline.RewriteSeconds, r.Baseline.RewriteServerCPUSeconds, r.Baseline.RewriteEtcdCPUSeconds)
	// The baseline's keys go again, so that the operator's cache holds
	// objects of the size they have in a cluster.
	if r.Baseline.RemoveSeconds, err = b.applyAll(ctx, b.oracle, false); err != nil {
		return fmt.Errorf("remove the baseline's annotations: %w", err)
	}
	step("baseline removal of its annotations: %.2fs", r.Baseline.RemoveSeconds)
	// The first pass wrote to objects never written before; the operator
	// writes to objects written three times. The same pass again, on
	// objects in that state, shows how much that alone costs.
	if r.Baseline.AgainSeconds, writes, err = b.measuredPass(ctx, b.oracle); err != nil {
		return fmt.Errorf("baseline again: %w", err)
	}
	r.Baseline.AgainServerApplyMs = writes.meanApplyMs()
	r.Baseline.AgainServerCPUSeconds = writes.cpuSeconds
	r.Baseline.AgainEtcdCPUSeconds = writes.etcdCPUSeconds
	step("baseline again, on objects as the operator finds them: %.2fs, the server's mean apply %.1fms; CPU: API server %.1fs, etcd %.1fs",
		r.Baseline.AgainSeconds, r.Baseline.AgainServerApplyMs, r.Baseline.AgainServerCPUSeconds, r.Baseline.AgainEtcdCPUSeconds)
	if _, err := b.applyAll(ctx, b.oracle, false); err != nil {
		return fmt.Errorf("remove the baseline's annotations again: %w", err)
	}
	return nil
}

// measuredPass applies, as the baseline client, the annotations an oracle
// wants, and returns how long it took and what the API server counted
// meanwhile.
func (b *bench) measuredPass(ctx context.Context, o *oracle) (float64, apiWrites, error) {
	before, err := b.apiWrites(ctx)
	if err != nil {
		return 0, apiWrites{}, err
	}
	seconds, err := b.applyAll(ctx, o, true)
	if err != nil {
		return 0, apiWrites{}, err
	}
	after, err := b.apiWrites(ctx)
	if err != nil {
		return 0, apiWrites{}, err
	}
	return seconds, after.sub(before), nil
}

// applyAll applies, as the baseline client, the annotations an oracle wants
// (or, without keep, none, which removes the client's keys), and returns
// how long it took.
func (b *bench) applyAll(ctx context.Context, o *oracle, keep bool) (float64, error) {
	patches := make([]*unstructured.Unstructured, len(b.workloads))
	for i, w := range b.workloads {
		annotations, labels := map[string]any{}, map[string]any{}
		if keep {
			a, l := o.desired(w.obj)
			annotations, labels = rekey(a), rekey(l)
		}
		patches[i] = metadataPatch(w.obj, annotations, labels)
	}
	start := time.Now()
	err := parallel(ctx, b.o.concurrency, len(patches), func(i int) error {
		return b.c.Apply(ctx, client.ApplyConfigurationFromUnstructured(patches[i]), client.FieldOwner("bench-baseline"), client.ForceOwnership)
	})
	return time.Since(start).Seconds(), err
}

// rekey moves the operator's keys under the benchmark's own prefix.
func rekey(m map[string]string) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out["bench."+k] = v
	}
	return out
}

func metadataPatch(obj *unstructured.Unstructured, annotations, labels map[string]any) *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": obj.GetAPIVersion(),
		"kind":       obj.GetKind(),
		"metadata": map[string]any{
			"name": obj.GetName(), "namespace": obj.GetNamespace(), "uid": string(obj.GetUID()),
			"annotations": annotations, "labels": labels,
		},
	}}
}

func (b *bench) startOperator(ctx context.Context) error {
	args := b.o.operatorArgs
	if b.o.heapProfile != "" || b.o.cpuProfile != "" {
		port, err := devcluster.FreePort()
		if err != nil {
			return err
		}
		b.pprofPort = port
		args = append([]string{fmt.Sprintf("--pprof-bind-address=127.0.0.1:%d", port)}, args...)
	}
	op, err := devcluster.StartOperator(devcluster.OperatorOptions{
		Binary: b.o.manager, Kubeconfig: b.cluster.Kubeconfig, LogPath: filepath.Join(b.o.dir, "manager.log"),
		Args: args, Env: b.o.operatorEnv, Nice: b.o.operatorNice,
	})
	if err != nil {
		return err
	}
	b.operator = op
	go b.sampleHeap(ctx, op)
	return op.WaitReady(ctx, 30*time.Second)
}

// stopOperator stops the operator and keeps its peak RSS and event count.
func (b *bench) stopOperator(ctx context.Context) error {
	if err := b.recordOperator(ctx); err != nil {
		return err
	}
	err := b.operator.Stop()
	b.operator = nil
	return err
}

func (b *bench) recordOperator(ctx context.Context) error {
	rss, err := b.operator.PeakRSS()
	if err != nil {
		return err
	}
	b.peakRSS = max(b.peakRSS, rss)
	f, err := b.operator.Metrics(ctx)
	if err != nil {
		return err
	}
	b.operatorEvents += dutyEvents(f)
	return nil
}

func dutyEvents(f devcluster.Families) float64 {
	return f.Sum("responsibility_events_total", map[string]string{"reason": v1alpha1.EventCustomerDutyUnmet}) +
		f.Sum("responsibility_events_total", map[string]string{"reason": v1alpha1.EventCustomerDutyMet})
}

// sampleHeap records the operator's largest in-use heap while it runs.
func (b *bench) sampleHeap(ctx context.Context, op *devcluster.Operator) {
	for {
		if exited, _ := op.Exited(); exited {
			return
		}
		if f, err := op.Metrics(ctx); err == nil {
			h := f.Sum("go_memstats_heap_inuse_bytes", nil)
			b.heapMu.Lock()
			b.peakHeap = max(b.peakHeap, h)
			b.heapMu.Unlock()
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// converge starts the operator, applies the models and waits until every
// workload carries its final annotations.
func (b *bench) converge(ctx context.Context, r *Results) error {
	step("starting the operator")
	if err := b.startOperator(ctx); err != nil {
		return err
	}
	for _, w := range b.workloads {
		b.tracker.expect(w.key(), b.oracle.want(w.obj), time.Time{})
	}
	before, err := b.apiWrites(ctx)
	if err != nil {
		return err
	}
	transitions := b.tracker.transitionCount()
	step("applying %d models with 5 duties each", len(b.models))
	b.tracker.first()
	start := time.Now()
	for _, m := range b.models {
		if err := b.c.Create(ctx, m.DeepCopy()); err != nil {
			return fmt.Errorf("create model %s: %w", m.Name, err)
		}
	}
	serverProfiled := b.profileServer(ctx, "converge")
	profiled := make(chan error, 1)
	if b.o.cpuProfile != "" {
		go func() {
			profiled <- saveProfile(ctx, b.pprofPort, "profile?seconds=10", b.o.cpuProfile)
		}()
	} else {
		profiled <- nil
	}
	last, err := b.tracker.wait(ctx, b.timeout())
	if err != nil {
		return err
	}
	if err := <-profiled; err != nil {
		return err
	}
	if err := <-serverProfiled; err != nil {
		return err
	}
	r.Converge.Seconds = last.Sub(start).Seconds()
	r.Converge.Ratio = r.Converge.Seconds / r.Baseline.Seconds
	r.Converge.RatioToAgain = r.Converge.Seconds / r.Baseline.AgainSeconds
	r.Converge.FirstWriteSeconds = b.tracker.first().Sub(start).Seconds()
	step("converged in %.2fs (%.2f × baseline, %.2f × baseline again); the first object was done after %.2fs", r.Converge.Seconds, r.Converge.Ratio, r.Converge.RatioToAgain, r.Converge.FirstWriteSeconds)
	if err := b.settle(ctx, 0); err != nil {
		return err
	}
	after, err := b.apiWrites(ctx)
	if err != nil {
		return err
	}
	if b.o.heapProfile != "" {
		if err := saveProfile(ctx, b.pprofPort, "heap?gc=1", b.o.heapProfile); err != nil {
			return err
		}
	}
	if f, err := b.operator.Metrics(ctx); err == nil {
		r.Converge.OperatorCPUSeconds = f.Sum("process_cpu_seconds_total", nil)
		r.Converge.Reconciles = int(f.Sum("controller_runtime_reconcile_total", map[string]string{"controller": "workload"}))
		r.Converge.MeanReconcileMs = 1000 * f.Mean("controller_runtime_reconcile_time_seconds", map[string]string{"controller": "workload"})
		r.Converge.MeanApplyMs = 1000 * f.Mean("responsibility_apply_duration_seconds", nil)
		r.Converge.MeanEvaluationMs = 1000 * f.Mean("responsibility_evaluation_duration_seconds", nil)
		step("mean reconcile %.1fms, of which apply %.1fms and evaluation %.2fms",
			r.Converge.MeanReconcileMs, r.Converge.MeanApplyMs, r.Converge.MeanEvaluationMs)
	}
	r.Converge.WritesPerObject = after.sub(before).targets / float64(len(b.workloads))
	r.Converge.ServerApplyMs = after.sub(before).meanApplyMs()
	r.Converge.ServerCPUSeconds = after.sub(before).cpuSeconds
	r.Converge.EtcdCPUSeconds = after.sub(before).etcdCPUSeconds
	step("the server's mean apply %.1fms; CPU: API server %.1fs, etcd %.1fs, operator %.1fs (from its start)",
		r.Converge.ServerApplyMs, r.Converge.ServerCPUSeconds, r.Converge.EtcdCPUSeconds, r.Converge.OperatorCPUSeconds)
	r.Converge.EventsCreated = after.sub(before).events
	r.Converge.OtherWrites = after.sub(before).all - after.sub(before).targets - after.sub(before).events
	r.Converge.Transitions = b.tracker.transitionCount() - transitions
	step("first convergence: %.3f writes per object, %d reconciles, %d events for %d transitions, %d other writes (models, reports, leases), %d reads",
		r.Converge.WritesPerObject, r.Converge.Reconciles, int(r.Converge.EventsCreated), r.Converge.Transitions, int(r.Converge.OtherWrites), int(after.sub(before).reads))
	step("other writes: %s", after.sub(before).others(b.gvrs))
	return nil
}

func (b *bench) timeout() time.Duration {
	return 2*time.Minute + time.Duration(b.o.n)*10*time.Millisecond
}

// resync makes the operator re-evaluate every workload without a change to
// any input (an annotation on every namespace), and counts the writes.
func (b *bench) resync(ctx context.Context, r *Results) error {
	step("forced re-evaluation: touching an annotation of every namespace")
	before, err := b.apiWrites(ctx)
	if err != nil {
		return err
	}
	reconciles, err := b.reconciles(ctx)
	if err != nil {
		return err
	}
	for i := range b.o.namespaces {
		ns := &unstructured.Unstructured{}
		ns.SetAPIVersion("v1")
		ns.SetKind("Namespace")
		ns.SetName(namespaceName(i))
		patch := client.RawPatch("application/merge-patch+json", []byte(`{"metadata":{"annotations":{"bench.responsibility.io/touched":"`+time.Now().Format(time.RFC3339Nano)+`"}}}`))
		if err := b.c.Patch(ctx, ns, patch); err != nil {
			return fmt.Errorf("touch namespace: %w", err)
		}
	}
	if err := b.settle(ctx, reconciles+float64(len(b.workloads))); err != nil {
		return err
	}
	after, err := b.apiWrites(ctx)
	if err != nil {
		return err
	}
	now, err := b.reconciles(ctx)
	if err != nil {
		return err
	}
	r.Resync.Reconciles = int(now - reconciles)
	r.Resync.Writes = int(after.sub(before).targets)
	r.Resync.WritesPerObject = after.sub(before).targets / float64(len(b.workloads))
	step("re-evaluated %d times, %d writes", r.Resync.Reconciles, r.Resync.Writes)
	return nil
}

// restart stops the operator and starts it again.
func (b *bench) restart(ctx context.Context, r *Results) error {
	step("restarting the operator")
	before, err := b.apiWrites(ctx)
	if err != nil {
		return err
	}
	if err := b.stopOperator(ctx); err != nil {
		return err
	}
	start := time.Now()
	if err := b.startOperator(ctx); err != nil {
		return err
	}
	if err := b.settle(ctx, float64(len(b.workloads))); err != nil {
		return err
	}
	r.Restart.Seconds = time.Since(start).Seconds()
	after, err := b.apiWrites(ctx)
	if err != nil {
		return err
	}
	rec, err := b.reconciles(ctx)
	if err != nil {
		return err
	}
	r.Restart.Reconciles = int(rec)
	r.Restart.Writes = int(after.sub(before).targets)
	r.Restart.WritesPerObject = after.sub(before).targets / float64(len(b.workloads))
	r.Restart.EventsCreated = after.sub(before).events
	step("restarted and re-evaluated everything in %.2fs: %d reconciles, %d writes, %d events",
		r.Restart.Seconds, r.Restart.Reconciles, r.Restart.Writes, int(r.Restart.EventsCreated))
	return nil
}

// editModels changes the models and waits for the workloads to follow.
func (b *bench) editModels(ctx context.Context, edit func(*v1alpha1.ResponsibilityModel)) (changed int, seconds float64, writes apiWrites, err error) {
	edited := map[*kindSpec]bool{}
	for i, m := range b.models {
		before := m.Spec.DeepCopy()
		edit(m)
		edited[&kinds[i]] = !equality.Semantic.DeepEqual(before, &m.Spec)
	}
	reevaluated := 0
	for _, w := range b.workloads {
		if edited[w.kind] {
			reevaluated++
		}
	}
	if err := b.oracle.setModels(b.models); err != nil {
		return 0, 0, apiWrites{}, err
	}
	for _, w := range b.workloads {
		want := b.oracle.want(w.obj)
		b.tracker.mu.Lock()
		if b.tracker.want[w.key()] != want {
			changed++
		}
		b.tracker.mu.Unlock()
		b.tracker.expect(w.key(), want, time.Time{})
	}
	before, err := b.apiWrites(ctx)
	if err != nil {
		return 0, 0, apiWrites{}, err
	}
	rec, err := b.reconciles(ctx)
	if err != nil {
		return 0, 0, apiWrites{}, err
	}
	b.tracker.first()
	start := time.Now()
	for _, m := range b.models {
		cur := &v1alpha1.ResponsibilityModel{}
		if err := b.c.Get(ctx, client.ObjectKeyFromObject(m), cur); err != nil {
			return 0, 0, apiWrites{}, err
		}
		cur.Spec = m.Spec
		if err := b.c.Update(ctx, cur); err != nil {
			return 0, 0, apiWrites{}, fmt.Errorf("update model %s: %w", m.Name, err)
		}
	}
	last, err := b.tracker.wait(ctx, b.timeout())
	if err != nil {
		return 0, 0, apiWrites{}, err
	}
	if changed > 0 {
		seconds = last.Sub(start).Seconds()
		step("the first object was done after %.2fs", b.tracker.first().Sub(start).Seconds())
	}
	// Every workload of an edited model is re-evaluated.
	if err := b.settle(ctx, rec+float64(reevaluated)); err != nil {
		return 0, 0, apiWrites{}, err
	}
	after, err := b.apiWrites(ctx)
	if err != nil {
		return 0, 0, apiWrites{}, err
	}
	return changed, seconds, after.sub(before), nil
}

// smallEdit rewords the message of one duty: only the workloads on which
// that duty is unmet change.
func (b *bench) smallEdit(ctx context.Context, r *Results) error {
	step("model edit that changes few workloads: rewording one unmet message")
	changed, seconds, writes, err := b.editModels(ctx, func(m *v1alpha1.ResponsibilityModel) {
		for a := range m.Spec.Areas {
			for d := range m.Spec.Areas[a].Duties {
				if m.Spec.Areas[a].Duties[d].Name == "image-pinned" {
					m.Spec.Areas[a].Duties[d].Message += " (see the image policy)"
				}
			}
		}
	})
	if err != nil {
		return err
	}
	r.SmallEdit = EditResult{ChangedObjects: changed, Writes: int(writes.targets), Seconds: seconds, EventsCreated: writes.events}
	step("%d workloads changed, %d writes, %.2fs", changed, r.SmallEdit.Writes, seconds)
	return nil
}

// fanOut changes the matrix of every model: every workload changes.
func (b *bench) fanOut(ctx context.Context, r *Results) error {
	step("model edit that changes every workload: rewording every model's first area")
	changed, seconds, writes, err := b.editModels(ctx, fullEdit)
	if err != nil {
		return err
	}
	r.FanOut = EditResult{ChangedObjects: changed, Writes: int(writes.targets), Seconds: seconds, EventsCreated: writes.events,
		ServerApplyMs: writes.meanApplyMs(), ServerCPUSeconds: writes.cpuSeconds, EtcdCPUSeconds: writes.etcdCPUSeconds, OperatorCPUSeconds: writes.operatorCPUSeconds}
	r.FanOut.Ratio = b.fanOutRatio(r, r.Baseline.Seconds)
	r.FanOut.RatioToRewrite = b.fanOutRatio(r, r.Baseline.RewriteSeconds)
	step("%d workloads changed, %d writes, %.2fs (%.2f × baseline, %.2f × a plain rewrite); CPU: API server %.1fs, etcd %.1fs, operator %.1fs",
		changed, r.FanOut.Writes, seconds, r.FanOut.Ratio, r.FanOut.RatioToRewrite, r.FanOut.ServerCPUSeconds, r.FanOut.EtcdCPUSeconds, r.FanOut.OperatorCPUSeconds)
	return nil
}

// fanOutRatio is the fan-out's time over a plain pass's, scaled to every
// workload when the edit changed fewer.
func (b *bench) fanOutRatio(r *Results, pass float64) float64 {
	return r.FanOut.Seconds / pass * float64(len(b.workloads)) / float64(max(r.FanOut.ChangedObjects, 1))
}

// fullEdit rewords the first area of a model: every object it matches changes.
func fullEdit(m *v1alpha1.ResponsibilityModel) {
	m.Spec.Areas[0].Customer += " (reviewed)"
}

// latency updates compliant workloads at a steady rate so that one duty
// becomes unmet, and measures until each carries its new annotations.
func (b *bench) latency(ctx context.Context, r *Results) error {
	var candidates []*workload
	for _, w := range b.workloads {
		if w.compliant && w.kind.drift != nil {
			candidates = append(candidates, w)
		}
	}
	count := min(int(b.o.rate*b.o.streamFor.Seconds()), len(candidates))
	step("latency: %d updates at %.0f/s", count, b.o.rate)
	before, err := b.apiWrites(ctx)
	if err != nil {
		return err
	}
	transitions := b.tracker.transitionCount()
	tick := time.NewTicker(time.Duration(float64(time.Second) / b.o.rate))
	defer tick.Stop()
	var failed atomic.Int32
	var wg sync.WaitGroup
	for i := range count {
		<-tick.C
		w := candidates[i]
		cur := &unstructured.Unstructured{}
		cur.SetGroupVersionKind(w.obj.GroupVersionKind())
		if err := b.c.Get(ctx, client.ObjectKeyFromObject(w.obj), cur); err != nil {
			return err
		}
		w.kind.drift(cur)
		w.kind.drift(w.obj)
		wg.Add(1)
		go func() {
			defer wg.Done()
			b.tracker.expect(w.key(), b.oracle.want(w.obj), time.Now())
			if err := b.c.Update(ctx, cur); err != nil {
				failed.Add(1)
			}
		}()
	}
	wg.Wait()
	if n := failed.Load(); n > 0 {
		return fmt.Errorf("latency: %d updates failed", n)
	}
	if _, err := b.tracker.wait(ctx, b.timeout()); err != nil {
		return err
	}
	if err := b.settle(ctx, 0); err != nil {
		return err
	}
	after, err := b.apiWrites(ctx)
	if err != nil {
		return err
	}
	lat := b.tracker.takeLatencies()
	r.Latency = LatencyResult{
		Updates: count, RatePerSecond: b.o.rate,
		P50Ms: ms(percentile(lat, 0.50)), P99Ms: ms(percentile(lat, 0.99)), MaxMs: ms(percentile(lat, 1)),
		EventsCreated: after.sub(before).events, Transitions: b.tracker.transitionCount() - transitions,
		WritesPerUpdate: (after.sub(before).targets - float64(count)) / float64(max(count, 1)),
	}
	step("latency p50 %.0fms, p99 %.0fms, max %.0fms", r.Latency.P50Ms, r.Latency.P99Ms, r.Latency.MaxMs)
	return nil
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(p*float64(len(sorted))+0.5) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// finish records memory and the event totals.
func (b *bench) finish(ctx context.Context, r *Results) error {
	if err := b.stopOperator(ctx); err != nil {
		return err
	}
	b.heapMu.Lock()
	r.Memory.PeakRSSMiB = float64(b.peakRSS) / (1 << 20)
	r.Memory.PeakHeapInuseMiB = b.peakHeap / (1 << 20)
	b.heapMu.Unlock()
	r.Events.Transitions = r.Converge.Transitions + r.Latency.Transitions
	r.Events.Created = int(r.Converge.EventsCreated + r.Restart.EventsCreated + r.SmallEdit.EventsCreated + r.FanOut.EventsCreated + r.Latency.EventsCreated)
	r.Events.CountedByOperator = int(b.operatorEvents)
	return nil
}

// closingBaseline runs the plain client's pass once more, the operator
// stopped, on the objects as the operator left them. The same pass differs by
// a fifth and more between runs and within one (the server's heap grows with
// its watch cache, the machine is shared), and the first pass runs on the
// freshest server: the ratios the goals use are to the median of the three
// passes, which bracket the operator's phases.
func (b *bench) closingBaseline(ctx context.Context, r *Results) error {
	step("baseline once more, the operator stopped: %d objects, %d at a time", len(b.workloads), b.o.concurrency)
	seconds, writes, err := b.measuredPass(ctx, b.oracle)
	if err != nil {
		return fmt.Errorf("closing baseline: %w", err)
	}
	r.Baseline.AfterSeconds = seconds
	r.Baseline.AfterServerApplyMs = writes.meanApplyMs()
	r.Baseline.AfterServerCPUSeconds = writes.cpuSeconds
	r.Baseline.AfterEtcdCPUSeconds = writes.etcdCPUSeconds
	passes := []float64{r.Baseline.Seconds, r.Baseline.AgainSeconds, r.Baseline.AfterSeconds}
	slices.Sort(passes)
	r.Baseline.MedianSeconds = passes[1]
	r.Converge.RatioToMedian = r.Converge.Seconds / r.Baseline.MedianSeconds
	r.FanOut.RatioToMedian = b.fanOutRatio(r, r.Baseline.MedianSeconds)
	step("baseline once more: %.2fs, the server's mean apply %.1fms; CPU: API server %.1fs, etcd %.1fs",
		r.Baseline.AfterSeconds, r.Baseline.AfterServerApplyMs, r.Baseline.AfterServerCPUSeconds, r.Baseline.AfterEtcdCPUSeconds)
	step("the plain client's passes: %.2fs, %.2fs, %.2fs, median %.2fs; converge %.2f × and fan-out %.2f × the median",
		r.Baseline.Seconds, r.Baseline.AgainSeconds, r.Baseline.AfterSeconds, r.Baseline.MedianSeconds, r.Converge.RatioToMedian, r.FanOut.RatioToMedian)
	return nil
}

// settle waits until the operator's workload queue is empty and idle and it
// has reconciled at least minReconciles times since it started.
func (b *bench) settle(ctx context.Context, minReconciles float64) error {
	deadline := time.Now().Add(b.timeout())
	stable, last := 0, -1.0
	for {
		f, err := b.operator.Metrics(ctx)
		if err != nil {
			return err
		}
		depth := f.Sum("workqueue_depth", map[string]string{"name": "workload"})
		active := f.Sum("controller_runtime_active_workers", map[string]string{"controller": "workload"})
		total := f.Sum("controller_runtime_reconcile_total", map[string]string{"controller": "workload"})
		if depth == 0 && active == 0 && total >= minReconciles && total == last {
			stable++
			if stable >= 3 {
				return nil
			}
		} else {
			stable = 0
		}
		last = total
		if time.Now().After(deadline) {
			return fmt.Errorf("the operator did not settle: queue depth %v, active %v, %v of %v reconciles", depth, active, total, minReconciles)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func (b *bench) reconciles(ctx context.Context) (float64, error) {
	f, err := b.operator.Metrics(ctx)
	if err != nil {
		return 0, err
	}
	return f.Sum("controller_runtime_reconcile_total", map[string]string{"controller": "workload"}), nil
}

// apiWrites are write requests the API server counted.
type apiWrites struct {
	// targets are writes to the workloads' resources, events creations of
	// Events, all every write request (models, reports, leases too).
	targets, events, all float64
	// applies and applySeconds are the number and the total server-side
	// duration of the applies to the workloads' resources.
	applies, applySeconds float64
	// cpuSeconds is the CPU time the API server process has used,
	// etcdCPUSeconds etcd's, operatorCPUSeconds the operator's (0 when it
	// does not run).
	cpuSeconds, etcdCPUSeconds, operatorCPUSeconds float64
	// reads are GET, LIST and WATCH requests of any resource.
	reads float64
	// byResource counts write requests by verb and resource ("PATCH
	// responsibilitymodels").
	byResource map[string]float64
}

func (a apiWrites) sub(o apiWrites) apiWrites {
	out := apiWrites{targets: a.targets - o.targets, events: a.events - o.events, all: a.all - o.all,
		applies: a.applies - o.applies, applySeconds: a.applySeconds - o.applySeconds, cpuSeconds: a.cpuSeconds - o.cpuSeconds, etcdCPUSeconds: a.etcdCPUSeconds - o.etcdCPUSeconds, operatorCPUSeconds: a.operatorCPUSeconds - o.operatorCPUSeconds, reads: a.reads - o.reads,
		byResource: map[string]float64{}}
	for k, v := range a.byResource {
		if d := v - o.byResource[k]; d != 0 {
			out.byResource[k] = d
		}
	}
	return out
}

// others are the write counts by verb and resource other than the
// workloads' and Events, most first.
func (a apiWrites) others(targets map[schema.GroupVersionResource]schema.GroupVersionKind) string {
	skip := map[string]bool{"events": true}
	for gvr := range targets {
		skip[gvr.Resource] = true
	}
	var keys []string
	for k := range a.byResource {
		if _, resource, _ := strings.Cut(k, " "); !skip[resource] {
			keys = append(keys, k)
		}
	}
	slices.SortFunc(keys, func(x, y string) int { return cmp.Compare(a.byResource[y], a.byResource[x]) })
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s %.0f", k, a.byResource[k]))
	}
	return strings.Join(parts, ", ")
}

// meanApplyMs is the API server's mean time to serve an apply to a workload.
func (a apiWrites) meanApplyMs() float64 {
	if a.applies == 0 {
		return 0
	}
	return 1000 * a.applySeconds / a.applies
}

var writeVerbs = []string{"POST", "PUT", "PATCH", "APPLY", "DELETE"}

// apiWrites reads the API server's own request counters.
func (b *bench) apiWrites(ctx context.Context) (apiWrites, error) {
	raw, err := b.raw.Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		return apiWrites{}, fmt.Errorf("scrape the API server's metrics: %w", err)
	}
	f, err := devcluster.ParseMetrics(raw)
	if err != nil {
		return apiWrites{}, err
	}
	out := apiWrites{byResource: map[string]float64{}}
	for _, verb := range writeVerbs {
		out.all += f.Sum("apiserver_request_total", map[string]string{"verb": verb})
		maps.Copy(out.byResource, f.SumBy("apiserver_request_total", map[string]string{"verb": verb}, "verb", "resource"))
	}
	for gvr := range b.gvrs {
		for _, verb := range writeVerbs {
			out.targets += f.Sum("apiserver_request_total", map[string]string{"group": gvr.Group, "resource": gvr.Resource, "verb": verb})
		}
		sum, count := f.Observed("apiserver_request_duration_seconds", map[string]string{"group": gvr.Group, "resource": gvr.Resource, "verb": "APPLY"})
		out.applySeconds += sum
		out.applies += count
	}
	out.cpuSeconds = f.Sum("process_cpu_seconds_total", nil)
	if out.etcdCPUSeconds, err = b.etcdCPUSeconds(ctx); err != nil {
		return apiWrites{}, err
	}
	if b.operator != nil {
		if of, err := b.operator.Metrics(ctx); err == nil {
			out.operatorCPUSeconds = of.Sum("process_cpu_seconds_total", nil)
		}
	}
	for _, verb := range []string{"GET", "LIST", "WATCH"} {
		out.reads += f.Sum("apiserver_request_total", map[string]string{"verb": verb})
	}
	out.events = f.Sum("apiserver_request_total", map[string]string{"group": "events.k8s.io", "resource": "events", "verb": "POST"}) +
		f.Sum("apiserver_request_total", map[string]string{"group": "", "resource": "events", "verb": "POST"})
	return out, nil
}

// etcdCPUSeconds is the CPU time etcd has used, from its metrics on its client
// URL.
func (b *bench) etcdCPUSeconds(ctx context.Context) (float64, error) {
	u := b.cluster.Env.ControlPlane.Etcd.URL
	if u == nil {
		return 0, errors.New("etcd's URL is not known")
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.JoinPath("metrics").String(), nil)
	if err != nil {
		return 0, fmt.Errorf("scrape etcd's metrics: %w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, fmt.Errorf("scrape etcd's metrics: %w", err)
	}
	defer func() { _ = resp.Body.Close() }()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, fmt.Errorf("read etcd's metrics: %w", err)
	}
	f, err := devcluster.ParseMetrics(raw)
	if err != nil {
		return 0, err
	}
	return f.Sum("process_cpu_seconds_total", nil), nil
}

// processCPUSeconds is the CPU time this process has used, user and system.
func processCPUSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

// parallel runs f(0..n-1) on workers goroutines and returns the first error.
func parallel(ctx context.Context, workers, n int, f func(int) error) error {
	var next atomic.Int64
	var first error
	var once sync.Once
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n || ctx.Err() != nil {
					return
				}
				if err := f(i); err != nil {
					once.Do(func() { first = err })
					return
				}
			}
		}()
	}
	wg.Wait()
	if first == nil && ctx.Err() != nil {
		return errors.New("interrupted")
	}
	return first
}

// saveProfile saves one of the operator's pprof profiles.
// profileServer saves, with -server-cpu-profile, a 20 s CPU profile of the
// API server taken 10 s from now, as PREFIX-phase.pprof. The channel gets
// its error once it is done (at once without the flag).
func (b *bench) profileServer(ctx context.Context, phase string) <-chan error {
	done := make(chan error, 1)
	if b.o.serverProfile == "" {
		done <- nil
		return done
	}
	go func() {
		select {
		case <-ctx.Done():
			done <- ctx.Err()
			return
		case <-time.After(10 * time.Second):
		}
		raw, err := b.raw.Get().AbsPath("/debug/pprof/profile").Param("seconds", "20").DoRaw(ctx)
		if err != nil {
			done <- fmt.Errorf("profile the API server: %w", err)
			return
		}
		path := b.o.serverProfile + "-" + phase + ".pprof"
		step("saved the API server's CPU profile of the %s to %s", phase, path)
		done <- os.WriteFile(path, raw, 0o644)
	}()
	return done
}

func saveProfile(ctx context.Context, port int, profile, path string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d/debug/pprof/%s", port, profile), nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("profile: %w", err)
	}
	defer func() { _ = resp.Body.Close() }()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("profile: %w", err)
	}
	step("saved the operator's %s profile to %s", profile, path)
	return os.WriteFile(path, raw, 0o644)
}

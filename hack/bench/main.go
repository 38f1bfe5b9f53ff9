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
//
// measure runs the phases in this order, each in a file of its own:
//
//   - setup.go: the namespaces, workloads and related objects (setUp)
//   - baseline.go: the plain client's timed passes, before the operator
//     starts and once more after it stopped (baseline, closingBaseline)
//   - converge.go: the operator's start and first convergence (converge)
//   - resync.go: a re-evaluation of every workload without a change
//     (resync)
//   - restart.go: the operator's restart (restart)
//   - edits.go: model edits that change few and every workload
//     (smallEdit, fanOut)
//   - latency.go: a steady stream of updates (latency)
//   - recheck.go: a duty that reads `now` on every database: idle recheck
//     cycles and backups completing (recheck)
//   - operator.go: starting, stopping and waiting for the operator, and its
//     memory and event totals at the end (finish)
//
// The phases share:
//
//   - apiwrites.go: the API server's, etcd's and this process's counters a
//     phase reads before and after it runs
//   - profile.go: the optional CPU and heap profiles
//   - benchkit (shared with hack/bench-peers): the generated workloads, the
//     models and the oracle of the metadata each workload should carry
//     (workload.go, oracle.go), the watch that sees when the workloads carry
//     it (tracker.go), and a fixed number of workers over n items
//     (parallel.go)
//   - results.go: the results, the goals and the printed table
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"
	"time"

	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/responsibility-operator/responsibility-operator/api/v1alpha1"
	"github.com/responsibility-operator/responsibility-operator/hack/bench/benchkit"
	"github.com/responsibility-operator/responsibility-operator/internal/devcluster"
)

type options struct {
	root, manager, assets, dir, out string
	n, namespaces, concurrency      int
	rate                            float64
	streamFor, recheck              time.Duration
	operatorArgs, operatorEnv       benchkit.StringList
	operatorNice                    int
	heapProfile, cpuProfile         string
	recheckProfile                  string
	serverProfile                   string
}

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
	flag.DurationVar(&o.streamFor, "stream", 20*time.Second, "duration of the latency stream (and of the recheck phase's stream of completed backups)")
	flag.DurationVar(&o.recheck, "recheck-interval", 30*time.Second, "the recheck phase's spec.recheckInterval (at least 10s)")
	flag.StringVar(&o.manager, "manager", filepath.Join(root, "bin", "manager"), "the operator binary (make build)")
	flag.StringVar(&o.assets, "assets", filepath.Join(root, "bin", "k8s"), "directory with kube-apiserver and etcd (make controlplane)")
	flag.StringVar(&o.dir, "dir", filepath.Join(root, "tmp", "bench"), "directory for the kubeconfig and the operator's log")
	flag.StringVar(&o.out, "out", "", "write the results as JSON to this file (default bench/results-<n>.json; - for stdout)")
	flag.StringVar(&o.heapProfile, "heap-profile", "", "save the operator's heap profile after first convergence to this file (go tool pprof)")
	flag.StringVar(&o.cpuProfile, "cpu-profile", "", "save a 10s CPU profile of the operator during first convergence to this file")
	flag.StringVar(&o.recheckProfile, "recheck-cpu-profile", "", "save CPU profiles of the operator during the idle recheck cycles and the stream of completed backups to PREFIX-idle.pprof and PREFIX-stream.pprof")
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
	workloads []*benchkit.Workload
	models    []*v1alpha1.ResponsibilityModel
	oracle    *benchkit.Oracle
	tracker   *benchkit.Tracker
	gvrs      map[schema.GroupVersionResource]schema.GroupVersionKind
	operator  *devcluster.Operator
	// rechecking is set once a model reads `now`: its objects are
	// reconciled again every interval from then on.
	rechecking bool
	peakRSS    int64
	peakHeap   float64
	heapMu     sync.Mutex
	// events counted by the operators that ran (counters restart with them)
	operatorEvents float64
	pprofPort      int
}

func step(format string, args ...any) {
	fmt.Printf("==> %s %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

func measure(ctx context.Context, o options) (*Results, error) {
	b := &bench{o: o, tracker: benchkit.NewTracker()}
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
		b.converge, b.resync, b.restart, b.smallEdit, b.fanOut, b.latency, b.recheck,
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

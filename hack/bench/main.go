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
	"slices"
	"sync"
	"syscall"
	"time"

	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
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
	series                          int
	rate                            float64
	streamFor, recheck              time.Duration
	operatorArgs, operatorEnv       benchkit.StringList
	skip                            benchkit.StringList
	operatorNice                    int
	heapProfile, cpuProfile         string
	recheckProfile                  string
	serverProfile                   string
	cpusApart                       bool
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
	flag.IntVar(&o.series, "series", 0, "instead of the phases, measure first convergence this many times, each between two plain passes on the same control plane (writes bench/series-<n>.json)")
	flag.IntVar(&o.namespaces, "namespaces", 20, "number of namespaces")
	flag.IntVar(&o.concurrency, "concurrency", 16, "concurrent writes of the baseline client (the operator's --workload-concurrency default)")
	flag.Float64Var(&o.rate, "rate", 50, "updates per second of the latency stream")
	flag.DurationVar(&o.streamFor, "stream", 20*time.Second, "duration of the latency stream (and of the recheck phase's stream of completed backups)")
	flag.DurationVar(&o.recheck, "recheck-interval", 30*time.Second, "the recheck phase's spec.recheckInterval (at least 10s)")
	flag.StringVar(&o.manager, "manager", filepath.Join(root, "bin", "manager"), "the operator binary (make build)")
	flag.StringVar(&o.assets, "assets", filepath.Join(root, "bin", "k8s"), "directory with kube-apiserver and etcd (make controlplane)")
	flag.StringVar(&o.dir, "dir", filepath.Join(root, "tmp", "bench"), "directory for the kubeconfig and the operator's log")
	flag.StringVar(&o.out, "out", "", "write the results as JSON to this file (default bench/results-<n>.json, or series-<n>.json with -series, with -apart before -<n> under -cpus-apart; - for stdout)")
	flag.StringVar(&o.heapProfile, "heap-profile", "", "save the operator's heap profile after first convergence to this file (go tool pprof)")
	flag.StringVar(&o.cpuProfile, "cpu-profile", "", "save a CPU profile of the operator during first convergence to this file, as long as a plain pass (10 s to 5 min)")
	flag.StringVar(&o.recheckProfile, "recheck-cpu-profile", "", "save CPU profiles of the operator during the idle recheck cycles and the stream of completed backups to PREFIX-idle.pprof and PREFIX-stream.pprof")
	flag.StringVar(&o.serverProfile, "server-cpu-profile", "", "save 20s CPU profiles of the API server during the baseline's first pass and first convergence to PREFIX-baseline.pprof and PREFIX-converge.pprof (compare with go tool pprof -diff_base)")
	flag.BoolVar(&o.cpusApart, "cpus-apart", false, "run kube-apiserver and etcd on the first half of the CPUs and the benchmark and the operator on the rest (cpuset cgroups, root), as a cluster runs a controller on another node than its API server")
	flag.IntVar(&o.operatorNice, "operator-nice", 0, "run the operator at this nice(1) priority: 1-19 to yield the CPU it shares with the API server, below 0 (as root) to take it first")
	flag.Var(&o.operatorEnv, "operator-env", "extra operator environment variable (repeatable), e.g. -operator-env=GOMEMLIMIT=180MiB")
	flag.Var(&o.skip, "skip", "leave out a phase (repeatable): "+phaseSmallEdit+", "+phaseFanOut+" (and the plain rewrite pass it is compared with), "+phaseLatency+", "+phaseRecheck)
	flag.Var(&o.operatorArgs, "operator-arg", "extra operator flag (repeatable), e.g. -operator-arg=--workload-concurrency=32")
	flag.Parse()
	for _, p := range o.skip {
		if !slices.Contains([]string{phaseSmallEdit, phaseFanOut, phaseLatency, phaseRecheck}, p) {
			return fmt.Errorf("-skip %s: not a phase that can be left out (%s, %s, %s, %s)", p, phaseSmallEdit, phaseFanOut, phaseLatency, phaseRecheck)
		}
	}
	if o.out == "" {
		kind := "results"
		if o.series > 0 {
			kind = "series"
		}
		if o.cpusApart {
			// A different measurement: it does not replace the shared one.
			kind += "-apart"
		}
		name := fmt.Sprintf("%s-%d.json", kind, o.n)
		o.out = filepath.Join(root, "bench", name)
	}
	if _, err := os.Stat(o.manager); err != nil {
		return fmt.Errorf("%s is missing: run `make bench`, which builds it", o.manager)
	}
	if err := os.MkdirAll(o.dir, 0o755); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	var res any
	if o.series > 0 {
		s, err := measureSeries(ctx, o)
		if err != nil {
			return err
		}
		printSeries(s)
		res = s
	} else {
		r, err := measure(ctx, o)
		if err != nil {
			return err
		}
		printTable(r)
		res = r
	}
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
	disc      discovery.DiscoveryInterface
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
	// split is -cpus-apart's placement, nil without it.
	split *cpuSplit
}

// The phases -skip can leave out.
const (
	phaseSmallEdit = "small-edit"
	phaseFanOut    = "fan-out"
	phaseLatency   = "latency"
	phaseRecheck   = "recheck"
)

func step(format string, args ...any) {
	fmt.Printf("==> %s %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

// start starts a local control plane and the benchmark's clients; the
// caller stops b.cluster.
func start(o options) (*bench, error) {
	b := &bench{o: o, tracker: benchkit.NewTracker()}
	if o.cpusApart {
		split, err := newCPUSplit()
		if err != nil {
			return nil, err
		}
		// The control plane's processes start in the group this process
		// is in when it starts them.
		if err := split.enter(split.controlPlane); err != nil {
			split.remove()
			return nil, err
		}
		b.split = split
		step("-cpus-apart: %s", split)
	}
	step("starting a local control plane")
	opts := devcluster.ClusterOptions{Root: o.root, Assets: o.assets, Dir: o.dir}
	if o.series > 0 {
		// The API server compacts etcd every five minutes, inside whichever
		// pass runs then; a series compacts between them (bench.compact).
		opts.APIServerArgs = map[string]string{"etcd-compaction-interval": "0"}
	}
	cluster, err := devcluster.StartCluster(opts)
	if err != nil {
		b.stop()
		return nil, err
	}
	b.cluster = cluster
	if b.split != nil {
		if err := b.split.enter(b.split.clients); err != nil {
			b.stop()
			return nil, err
		}
	}
	if err := b.clients(); err != nil {
		b.stop()
		return nil, err
	}
	return b, nil
}

// stop stops the control plane and removes -cpus-apart's groups.
func (b *bench) stop() {
	if b.cluster != nil {
		_ = b.cluster.Stop()
	}
	if b.split != nil {
		b.split.remove()
	}
}

// run is the head of the results: the run's size, this machine, now.
func (b *bench) run() Run {
	r := Run{N: b.o.n, Namespaces: b.o.namespaces, Concurrency: b.o.concurrency, CPUs: runtime.NumCPU(), Started: time.Now().UTC().Format(time.RFC3339)}
	if b.split != nil {
		r.CPUSplit = b.split.String()
	}
	return r
}

func (b *bench) clients() error {
	cfg := rest.CopyConfig(b.cluster.Config)
	cfg.QPS, cfg.Burst = -1, 0             // the baseline measures the server, not a client-side limit
	cfg.WarningHandler = rest.NoWarnings{} // WarmServer lists deprecated resources too
	scheme := k8sruntime.NewScheme()
	if err := v1alpha1.AddToScheme(scheme); err != nil {
		return err
	}
	var err error
	if b.c, err = client.New(cfg, client.Options{Scheme: scheme}); err != nil {
		return err
	}
	if b.dyn, err = dynamic.NewForConfig(cfg); err != nil {
		return err
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	b.raw = cs.CoreV1().RESTClient()
	b.disc = cs.Discovery()
	return nil
}

// measureSeries is -series: set-up, then the rounds of series.go.
func measureSeries(ctx context.Context, o options) (*Series, error) {
	b, err := start(o)
	if err != nil {
		return nil, err
	}
	defer b.stop()
	defer func() {
		if b.operator != nil {
			_ = b.operator.Stop()
		}
	}()
	if err := b.setUp(ctx); err != nil {
		return nil, err
	}
	return b.series(ctx, o.series)
}

func measure(ctx context.Context, o options) (*Results, error) {
	b, err := start(o)
	if err != nil {
		return nil, err
	}
	defer b.stop()
	r := &Results{Run: b.run(), Skipped: o.skip}
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
	phases := []struct {
		name string
		run  func(context.Context, *Results) error
	}{
		{"converge", b.converge}, {"resync", b.resync}, {"restart", b.restart}, {phaseSmallEdit, b.smallEdit},
		{phaseFanOut, b.fanOut}, {phaseLatency, b.latency}, {phaseRecheck, b.recheck},
	}
	for _, phase := range phases {
		if slices.Contains(o.skip, phase.name) {
			step("skipping %s (-skip)", phase.name)
			continue
		}
		if err := phase.run(ctx, r); err != nil {
			return nil, fmt.Errorf("%w (operator log: %s)", err, filepath.Join(o.dir, "manager.log"))
		}
	}
	if err := b.finish(ctx, r); err != nil {
		return nil, err
	}
	if err := b.closingBaseline(ctx, r); err != nil {
		return nil, err
	}
	r.Goals = goals(r, o.skip)
	return r, nil
}

// Command bench-peers is `make bench-peers`: the operator side by side with
// its nearest peer, Kyverno's mutate-existing path, and with a plain client,
// each on a fresh local control plane with the same workloads.
//
// For every contender it starts a local kube-apiserver and etcd (the same as
// `make bench`, with Kyverno's CRDs installed for every contender alike),
// creates N workloads of three kinds with their related objects
// (hack/bench/benchkit, as `make bench` does), starts the contender and waits
// until every workload carries the annotations and the label the operator's
// own evaluation library says it must (the oracle and watch of `make bench`).
// The contenders:
//
//   - plain: a plain client server-side applies those annotations, 16 at a
//     time (the operator's --workload-concurrency), no client-side limit;
//   - operator: bin/manager with the benchmark's three models;
//   - kyverno-cpol: Kyverno's background controller (built at a pinned version
//     by hack/bench-peers/kyverno.sh), run out of cluster, with a ClusterPolicy
//     per model with mutateExistingOnPolicyUpdate;
//   - kyverno-mpol: the same with a CEL MutatingPolicy per model with
//     mutate-existing;
//   - kyverno-mpol-tuned, kyverno-cpol-tuned: the same with the flags of
//     -tuned (Kyverno's documented client rate limits).
//
// It reports, per contender: the seconds from the models or policies being
// created to the last workload being right, the ratio to the plain client,
// the API writes per workload by verb and resource and the reads (the API
// server's apiserver_request_total), the objects left behind (every
// resource's object count after convergence and a settling period, minus the
// count before the contender started), the controller's peak RSS (VmHWM) and
// CPU time (/proc), and the API server's and etcd's CPU time.
//
// The policies are in hack/bench-peers/policies (policies.go says what they
// evaluate); the files:
//
//   - main.go: flags, the run, the table and the JSON
//   - contender.go: one contender on a fresh control plane
//   - kyverno.go: Kyverno's background controller as a process
//   - counts.go: the API server's counters and the objects it holds
//   - policies.go: the policies, rendered from the models and the oracle
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
	"strings"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/responsibility-operator/responsibility-operator/hack/bench/benchkit"
)

type options struct {
	root, manager, kyverno, assets, dir, out string
	n, namespaces, concurrency               int
	contenders                               string
	timeout, settle                          time.Duration
	tuned, kyvernoArgs                       benchkit.StringList
	writePolicies                            bool
}

// allContenders are the contenders in the order they run.
var allContenders = []string{"plain", "operator", "kyverno-cpol", "kyverno-mpol", "kyverno-mpol-tuned", "kyverno-cpol-tuned"}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench-peers:", err)
		os.Exit(1)
	}
}

func run() error {
	root, err := os.Getwd()
	if err != nil {
		return fmt.Errorf("working directory: %w", err)
	}
	o := options{root: root}
	flag.IntVar(&o.n, "n", 3000, "number of workloads")
	flag.IntVar(&o.namespaces, "namespaces", 20, "number of namespaces")
	flag.IntVar(&o.concurrency, "concurrency", 16, "concurrent writes of the plain client (the operator's --workload-concurrency default)")
	flag.StringVar(&o.contenders, "contenders", "plain,operator,kyverno-cpol,kyverno-mpol,kyverno-mpol-tuned", "comma-separated contenders, of "+strings.Join(allContenders, ", "))
	flag.DurationVar(&o.timeout, "timeout", 20*time.Minute, "how long a contender may take to converge")
	flag.DurationVar(&o.settle, "settle", 15*time.Second, "how long to wait after convergence before counting writes and objects (trailing writes: reports, update requests)")
	flag.Var(&o.tuned, "tuned", "a flag of the *-tuned Kyverno contenders (repeatable; default --clientRateLimitQPS=1000 --clientRateLimitBurst=2000, the operator's own client limits)")
	flag.Var(&o.kyvernoArgs, "kyverno-arg", "an extra flag of every Kyverno contender (repeatable)")
	flag.StringVar(&o.manager, "manager", filepath.Join(root, "bin", "manager"), "the operator binary (make build)")
	flag.StringVar(&o.kyverno, "kyverno", filepath.Join(root, "bin", "kyverno-background-controller"), "Kyverno's background controller (hack/bench-peers/kyverno.sh)")
	flag.StringVar(&o.assets, "assets", filepath.Join(root, "bin", "k8s"), "directory with kube-apiserver and etcd (make controlplane)")
	flag.StringVar(&o.dir, "dir", filepath.Join(root, "tmp", "bench-peers"), "directory for the kubeconfigs and the controllers' logs")
	flag.StringVar(&o.out, "out", "", "write the results as JSON to this file (default bench/peers-<n>.json; - for stdout)")
	flag.BoolVar(&o.writePolicies, "write-policies", false, "render the Kyverno policies into hack/bench-peers/policies and exit")
	flag.Parse()
	if len(o.tuned) == 0 {
		o.tuned = benchkit.StringList{"--clientRateLimitQPS=1000", "--clientRateLimitBurst=2000"}
	}
	if o.out == "" {
		o.out = filepath.Join(root, "bench", fmt.Sprintf("peers-%d.json", o.n))
	}
	if err := readKyvernoVersion(root); err != nil {
		return err
	}
	contenders := strings.Split(o.contenders, ",")
	for _, c := range contenders {
		if !contains(allContenders, c) {
			return fmt.Errorf("unknown contender %q (known: %s)", c, strings.Join(allContenders, ", "))
		}
	}

	if err := policies(o); err != nil || o.writePolicies {
		return err
	}
	for _, c := range contenders {
		if c == "operator" {
			if _, err := os.Stat(o.manager); err != nil {
				return fmt.Errorf("%s is missing: run `make bench-peers`, which builds it", o.manager)
			}
		}
		if strings.HasPrefix(c, "kyverno") {
			if _, err := os.Stat(o.kyverno); err != nil {
				return fmt.Errorf("%s is missing: run `make bench-peers`, which builds it", o.kyverno)
			}
		}
	}
	// envtest logs through controller-runtime's logger; this program prints
	// its own steps.
	ctrllog.SetLogger(logr.Discard())
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	res := &Results{N: o.n, Namespaces: o.namespaces, Concurrency: o.concurrency, CPUs: runtime.NumCPU(),
		Started: time.Now().UTC().Format(time.RFC3339), KyvernoVersion: kyvernoVersion, LoadAvgBefore: loadAvg()}
	for _, c := range contenders {
		r, err := runContender(ctx, o, c)
		if err != nil {
			if ctx.Err() != nil {
				return err
			}
			benchkit.Step("%s failed: %v", c, err)
			r.Error = err.Error()
		}
		res.Contenders = append(res.Contenders, r)
	}
	res.LoadAvgAfter = loadAvg()
	for i := range res.Contenders {
		if base := plainSeconds(res); base > 0 && res.Contenders[i].Converged {
			res.Contenders[i].Ratio = res.Contenders[i].Seconds / base
		}
	}
	printTable(res)
	raw, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return fmt.Errorf("encode results: %w", err)
	}
	if o.out == "-" {
		fmt.Println(string(raw))
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(o.out), 0o755); err != nil {
		return fmt.Errorf("create %s: %w", filepath.Dir(o.out), err)
	}
	if err := os.WriteFile(o.out, append(raw, '\n'), 0o644); err != nil {
		return fmt.Errorf("write results: %w", err)
	}
	fmt.Println("\nwrote", o.out)
	return nil
}

// policies renders the Kyverno policies from the oracle's verdicts on the
// same workloads the runs create, and checks the committed ones against them
// (or writes them, with -write-policies).
func policies(o options) error {
	workloads, err := benchkit.Generate(o.root, o.n, o.namespaces)
	if err != nil {
		return fmt.Errorf("generate workloads: %w", err)
	}
	models, err := benchkit.BenchModels(o.root)
	if err != nil {
		return fmt.Errorf("models: %w", err)
	}
	namespaces := map[string]map[string]any{}
	for i := range o.namespaces {
		name := benchkit.NamespaceName(i)
		namespaces[name] = map[string]any{"apiVersion": "v1", "kind": "Namespace", "metadata": map[string]any{"name": name}}
	}
	oracle, err := benchkit.NewOracle(models, namespaces, workloads)
	if err != nil {
		return fmt.Errorf("oracle: %w", err)
	}
	kps, err := kindPolicies(models, oracle, workloads)
	if err != nil {
		return err
	}
	rendered, err := renderPolicies(kps)
	if err != nil {
		return err
	}
	return checkPolicies(o.root, rendered, o.writePolicies)

}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func plainSeconds(r *Results) float64 {
	for _, c := range r.Contenders {
		if c.Name == "plain" && c.Converged {
			return c.Seconds
		}
	}
	return 0
}

// loadAvg is the first three fields of /proc/loadavg.
func loadAvg() string {
	raw, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(raw))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

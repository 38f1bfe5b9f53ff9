// Command manager runs the responsibility-operator: it annotates every object
// a ResponsibilityModel targets with the model's shared responsibility matrix
// and reports unmet customer duties as events.
package main

import (
	"crypto/tls"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"k8s.io/client-go/tools/clientcmd"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/controller-runtime/pkg/metrics/filters"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	ctrlwebhook "sigs.k8s.io/controller-runtime/pkg/webhook"

	"github.com/responsibility-operator/responsibility-operator/internal/controller"
	"github.com/responsibility-operator/responsibility-operator/internal/memlimit"
	"github.com/responsibility-operator/responsibility-operator/internal/version"
	"github.com/responsibility-operator/responsibility-operator/internal/watch"
	"github.com/responsibility-operator/responsibility-operator/internal/webhook"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}

func run() error {
	var (
		metricsAddr, probeAddr, excluded string
		pprofAddr                        string
		webhookHost, webhookCertDir      string
		policyReports                    string
		leaderElectNamespace             string
		leaseDuration, renewDeadline     time.Duration
		retryPeriod                      time.Duration
		eventGrace                       time.Duration
		leaderElect, secureMetrics       bool
		enableWebhook                    bool
		webhookPort                      int
		concurrency                      int
		qps                              float64
		burst                            int
		memoryLimitRatio                 float64
		gcPercent                        int
		watchCompression                 bool
	)
	flag.StringVar(&metricsAddr, "metrics-bind-address", "0", "Address of the metrics endpoint, e.g. :8443 (secure) or :8080; 0 disables it.")
	flag.BoolVar(&secureMetrics, "metrics-secure", true, "Serve metrics over HTTPS, authenticated and authorized through the API server.")
	flag.StringVar(&probeAddr, "health-probe-bind-address", ":8081", "Address of the health and readiness probes.")
	flag.StringVar(&pprofAddr, "pprof-bind-address", "0", "Address of the Go pprof endpoint for profiling, e.g. 127.0.0.1:6060 (unauthenticated: bind it to loopback); 0 disables it.")
	flag.BoolVar(&leaderElect, "leader-elect", false, "Elect a leader so that only one replica writes (the deployment manifests turn it on).")
	flag.StringVar(&leaderElectNamespace, "leader-elect-namespace", "", "Namespace of the leader election Lease (default: the pod's own namespace; outside a cluster, the kubeconfig context's namespace).")
	flag.DurationVar(&leaseDuration, "leader-elect-lease-duration", 15*time.Second, "How long a follower waits after the leader's last renewal before it takes the lease over (a killed leader's downtime).")
	flag.DurationVar(&renewDeadline, "leader-elect-renew-deadline", 10*time.Second, "How long the leader keeps trying to renew before it gives up leadership and exits; less than the lease duration.")
	flag.DurationVar(&retryPeriod, "leader-elect-retry-period", 2*time.Second, "How often candidates try to acquire or renew the lease.")
	flag.StringVar(&excluded, "exclude-namespaces", "kube-system", "Comma-separated namespaces whose objects are never written.")
	flag.IntVar(&concurrency, "workload-concurrency", 16, "Objects evaluated and written at once.")
	flag.DurationVar(&eventGrace, "event-grace-period", controller.DefaultEventGracePeriod,
		"How long the duty events of a newly created object wait, so that the related objects applied with it (kubectl apply -f dir/) can meet its duties first; its annotations are written at once. 0 sends them at once.")
	flag.Float64Var(&qps, "kube-api-qps", 1000, "Client-side limit of API requests per second; API Priority and Fairness on the server is the real limit (measured: make bench).")
	flag.IntVar(&burst, "kube-api-burst", 2000, "Client-side burst of API requests.")
	flag.StringVar(&policyReports, "policy-reports", controller.ReportsAuto,
		"Policy reports to write per namespace: auto (openreports.io Report if installed, else wgpolicyk8s.io PolicyReport if installed), openreports, wgpolicyk8s or off.")
	flag.BoolVar(&enableWebhook, "enable-webhook", true, "Serve the validating admission webhook that compiles every model's rules.")
	flag.StringVar(&webhookHost, "webhook-host", "", "Address the webhook server listens on (empty: all).")
	flag.IntVar(&webhookPort, "webhook-port", 9443, "Port of the webhook server.")
	flag.StringVar(&webhookCertDir, "webhook-cert-dir", "", "Directory with the webhook's tls.crt and tls.key (default: <tmp>/k8s-webhook-server/serving-certs).")
	flag.Float64Var(&memoryLimitRatio, "memory-limit-ratio", 0.8, "Soft limit of the Go heap as a fraction of the container's memory limit (cgroup memory.max), so that the heap is collected harder before the container is killed; 0 disables it. GOMEMLIMIT, when set, wins.")
	flag.IntVar(&gcPercent, "gc-percent", 35, "Garbage collector target: the heap may grow by this percentage of the live heap between collections. The operator's heap is mostly its long-lived cache, so below Go's default of 100 its peak memory stays closer to the cache, for some CPU (measured: make bench). GOGC, when set, wins.")
	flag.BoolVar(&watchCompression, "watch-compression", false, "Let the API server gzip the list and watch responses of the kinds models target or read. It gzips every event of a watch on its own, about 1% of its CPU per watcher (make bench -server-cpu-profile); turn it on only where the link to the API server is slow.")
	opts := zap.Options{}
	opts.BindFlags(flag.CommandLine)
	flag.Parse()
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&opts)))
	setupLog := ctrl.Log.WithName("setup")

	if err := memlimit.CheckRatio(memoryLimitRatio); err != nil {
		return fmt.Errorf("--memory-limit-ratio: %w", err)
	}
	gc, err := memlimit.SetGCPercent(gcPercent)
	if err != nil {
		return fmt.Errorf("--gc-percent: %w", err)
	}
	setupLog.Info("garbage collector", "source", gc.Source, "percent", gc.Percent)
	if mem, err := memlimit.Set(os.DirFS("/sys/fs/cgroup"), memoryLimitRatio); err != nil {
		setupLog.Error(err, "running without a soft memory limit; set GOMEMLIMIT to choose one")
	} else {
		setupLog.Info("memory limit", "source", mem.Source, "limitBytes", mem.Limit, "containerLimitBytes", mem.Container)
	}

	scheme, err := controller.NewScheme()
	if err != nil {
		return err
	}

	cfg, err := ctrl.GetConfig()
	if err != nil {
		return fmt.Errorf("load kubeconfig: %w", err)
	}
	cfg.QPS, cfg.Burst = float32(qps), burst

	tls12 := []func(*tls.Config){func(c *tls.Config) { c.MinVersion = tls.VersionTLS12 }}
	metricsOpts := metricsserver.Options{
		BindAddress:   metricsAddr,
		SecureServing: secureMetrics,
		TLSOpts:       tls12,
	}
	if secureMetrics {
		metricsOpts.FilterProvider = filters.WithAuthenticationAndAuthorization
	}
	if leaderElect && leaderElectNamespace == "" {
		if leaderElectNamespace, err = outOfClusterNamespace(); err != nil {
			return fmt.Errorf("--leader-elect-namespace: %w", err)
		}
		if leaderElectNamespace != "" {
			setupLog.Info("leader election outside a cluster: the Lease is in the kubeconfig context's namespace", "namespace", leaderElectNamespace)
		}
	}
	// The cache keeps of each watched object only what the models read.
	projections := watch.NewProjections()
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                        scheme,
		Metrics:                       metricsOpts,
		PprofBindAddress:              pprofAddr,
		HealthProbeBindAddress:        probeAddr,
		LeaderElection:                leaderElect,
		LeaderElectionID:              "responsibility-operator.responsibility.io",
		LeaderElectionNamespace:       leaderElectNamespace,
		LeaderElectionReleaseOnCancel: true,
		LeaseDuration:                 &leaseDuration,
		RenewDeadline:                 &renewDeadline,
		RetryPeriod:                   &retryPeriod,
		NewCache:                      watch.NewCache(projections, watch.WatchOptions{Compression: watchCompression}),
		WebhookServer: ctrlwebhook.NewServer(ctrlwebhook.Options{
			Host:    webhookHost,
			Port:    webhookPort,
			CertDir: webhookCertDir,
			TLSOpts: tls12,
		}),
	})
	if err != nil {
		return fmt.Errorf("create manager: %w", err)
	}
	if err := controller.Setup(mgr, controller.Options{
		ExcludedNamespaces:  splitList(excluded),
		WorkloadConcurrency: concurrency,
		PolicyReports:       policyReports,
		Projections:         projections,
		EventGracePeriod:    eventGrace,
	}); err != nil {
		return err
	}
	if enableWebhook {
		if err := webhook.Setup(mgr); err != nil {
			return fmt.Errorf("set up webhook: %w", err)
		}
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return fmt.Errorf("add health check: %w", err)
	}
	if err := mgr.AddReadyzCheck("readyz", healthz.Ping); err != nil {
		return fmt.Errorf("add readiness check: %w", err)
	}
	if enableWebhook {
		if err := mgr.AddReadyzCheck("webhook", mgr.GetWebhookServer().StartedChecker()); err != nil {
			return fmt.Errorf("add webhook readiness check: %w", err)
		}
	}
	setupLog.Info("starting manager", "version", version.Get(), "excludedNamespaces", excluded, "workloadConcurrency", concurrency, "webhook", enableWebhook)
	if err := mgr.Start(ctrl.SetupSignalHandler()); err != nil {
		return fmt.Errorf("run manager: %w", err)
	}
	return nil
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// serviceAccountNamespace is where a pod finds its own namespace, which
// controller-runtime reads for the leader election Lease.
const serviceAccountNamespace = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"

// outOfClusterNamespace returns the namespace of the kubeconfig's current
// context ("default" when it names none) when the manager runs outside a
// pod, as kubectl would use; "" inside a pod, where controller-runtime uses
// the pod's namespace.
func outOfClusterNamespace() (string, error) {
	if _, err := os.Stat(serviceAccountNamespace); err == nil {
		return "", nil
	}
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	// controller-runtime's --kubeconfig flag, as ctrl.GetConfig reads it.
	if f := flag.Lookup("kubeconfig"); f != nil && f.Value.String() != "" {
		rules.ExplicitPath = f.Value.String()
	}
	ns, _, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{}).Namespace()
	if err != nil {
		return "", fmt.Errorf("read the kubeconfig's namespace: %w", err)
	}
	return ns, nil
}

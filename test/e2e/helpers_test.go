package e2e

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/responsibility-operator/responsibility-operator/internal/controller"
	"github.com/responsibility-operator/responsibility-operator/internal/devcluster"
	"github.com/responsibility-operator/responsibility-operator/internal/watch"
)

// paths returns the repository root and the directory of kube-apiserver,
// etcd and kubectl (KUBEBUILDER_ASSETS, or bin/k8s from make controlplane).
func paths(t *testing.T) (root, assets string) {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	assets = os.Getenv("KUBEBUILDER_ASSETS")
	if assets == "" {
		assets = filepath.Join(root, "bin", "k8s")
	}
	if _, err := os.Stat(filepath.Join(assets, "kube-apiserver")); err != nil {
		t.Fatalf("no kube-apiserver in %s: run `make controlplane` (or `make test`, which does)", assets)
	}
	return root, assets
}

// startControlPlane starts kube-apiserver and etcd with the operator's CRD
// and the full upstream CRDs of test/crds, stopped when the test ends.
func startControlPlane(t *testing.T) (root string, env *envtest.Environment, cfg *rest.Config) {
	t.Helper()
	root, assets := paths(t)
	env = &envtest.Environment{
		BinaryAssetsDirectory: assets,
		CRDDirectoryPaths:     []string{filepath.Join(root, "config", "crd", "bases"), filepath.Join(root, "test", "crds")},
		ErrorIfCRDPathMissing: true,
	}
	cfg, err := env.Start()
	if err != nil {
		t.Fatalf("start control plane: %v", err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	return root, env, cfg
}

// writeKubeconfig writes an admin kubeconfig for kubectl.
func writeKubeconfig(t *testing.T, env *envtest.Environment, cfg *rest.Config) string {
	t.Helper()
	admin, err := env.AddUser(envtest.User{Name: "e2e-admin", Groups: []string{"system:masters"}}, cfg)
	if err != nil {
		t.Fatalf("add admin user: %v", err)
	}
	raw, err := admin.KubeConfig()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// discardLogger is the operator's logger in tests: silent unless TEST_VERBOSE is set.
func discardLogger() logr.Logger {
	if os.Getenv("TEST_VERBOSE") != "" {
		return zap.New(zap.UseDevMode(true))
	}
	return logr.Discard()
}

// runManager runs the operator's controllers in the test's process against
// cfg until the test ends, and returns a client that reads from the API
// server, not the manager's cache.
func runManager(t *testing.T, cfg *rest.Config, opts controller.Options) client.Client {
	t.Helper()
	ctrl.SetLogger(discardLogger())
	scheme, err := controller.NewScheme()
	if err != nil {
		t.Fatal(err)
	}
	opts.Projections = watch.NewProjections()
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme: scheme, NewCache: watch.NewCache(opts.Projections, watch.WatchOptions{}),
		Metrics: metricsserver.Options{BindAddress: "0"}, HealthProbeBindAddress: "0",
		// Each test runs its own manager in this process.
		Controller: config.Controller{SkipNameValidation: ptr.To(true)},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := controller.Setup(mgr, opts); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("manager: %v", err)
		}
	})
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// waitFindingsOnce waits until no sample workload's duty events are held
// and each tenant namespace has seen each finding once: one event per unmet
// duty of an object or, for a namespace-wide duty, of the namespace, and
// none for a duty met once every sample was applied.
func waitFindingsOnce(t *testing.T, c client.Client, objects []*unstructured.Unstructured) {
	t.Helper()
	for _, ns := range []string{"shop", "legacy"} {
		f, err := devcluster.WaitFindings(t.Context(), c, ns, objects, time.Minute)
		if err != nil {
			t.Error(err)
			continue
		}
		t.Logf("namespace %s: %d findings (%d of them namespace-wide), each reported by one event", ns, len(f.Unmet), f.NamespaceWide())
	}
}

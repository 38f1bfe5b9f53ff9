package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	ctrl "sigs.k8s.io/controller-runtime"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/responsibility-operator/responsibility-operator/internal/controller"
	"github.com/responsibility-operator/responsibility-operator/internal/devcluster"
	"github.com/responsibility-operator/responsibility-operator/internal/samples"
	"github.com/responsibility-operator/responsibility-operator/internal/watch"
)

// TestCatalogEndToEnd applies the whole catalog and every sample with
// kubectl apply -k to a real API server, runs the operator, and checks the
// state of every duty of every model on every sample: Met on the good
// variant (tenant shop), Unmet on the bad one (tenant legacy).
func TestCatalogEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a control plane")
	}
	root, env, cfg := startControlPlane(t)
	set, err := samples.Load(root)
	if err != nil {
		t.Fatal(err)
	}
	workloads := set.Workloads()
	kubeconfig := writeKubeconfig(t, env, cfg)

	ctrl.SetLogger(discardLogger())
	scheme, err := controller.NewScheme()
	if err != nil {
		t.Fatal(err)
	}
	projections := watch.NewProjections()
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme: scheme, NewCache: watch.NewCache(projections, watch.WatchOptions{}),
		Metrics: metricsserver.Options{BindAddress: "0"}, HealthProbeBindAddress: "0",
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := controller.Setup(mgr, controller.Options{ExcludedNamespaces: []string{"kube-system"}, Projections: projections}); err != nil {
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

	kubectl := func(args ...string) {
		t.Helper()
		cmd := exec.CommandContext(ctx, filepath.Join(env.BinaryAssetsDirectory, "kubectl"), args...)
		cmd.Env = append(os.Environ(), "KUBECONFIG="+kubeconfig)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	kubectl("apply", "-k", filepath.Join(root, "config", "catalog"))
	kubectl("apply", "-k", filepath.Join(root, "config", "samples", "workloads"))
	c := mgr.GetClient()
	if err := devcluster.WriteStatus(ctx, c, set.Unstructured()); err != nil {
		t.Fatal(err)
	}

	deadline := time.Now().Add(2 * time.Minute)
	for _, w := range workloads {
		want := w.ExpectedDuties()
		for {
			got, err := samples.DutyStates(ctx, c, w)
			if err == nil && slices.Equal(got, want) {
				break
			}
			if time.Now().After(deadline) {
				t.Errorf("%s (%s %s/%s): duties\n  got  %v (%v)\n  want %v", w.File, w.GetKind(), w.GetNamespace(), w.GetName(), got, err, want)
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	t.Logf("%d sample workloads, every duty of every model checked", len(workloads))
}

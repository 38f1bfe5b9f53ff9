package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/responsibility-operator/responsibility-operator/api/v1alpha1"
	"github.com/responsibility-operator/responsibility-operator/internal/controller"
	"github.com/responsibility-operator/responsibility-operator/internal/devcluster"
	"github.com/responsibility-operator/responsibility-operator/internal/evaluate"
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
		want := expectedDuties(w)
		for {
			got, err := dutyStates(ctx, c, w)
			if err == nil && equal(got, want) {
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

// expectedDuties lists model/duty=state for every duty of the models that
// target a sample.
func expectedDuties(w samples.Workload) []string {
	var out []string
	for _, m := range w.Models {
		for _, d := range m.Duties {
			out = append(out, fmt.Sprintf("%s/%s=%s", m.Name, d.Name, w.Want))
		}
	}
	sort.Strings(out)
	return out
}

// dutyStates reads model/duty=state from a workload's duties annotation.
func dutyStates(ctx context.Context, c client.Client, w samples.Workload) ([]string, error) {
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(w.GroupVersionKind())
	if err := c.Get(ctx, client.ObjectKeyFromObject(w), u); err != nil {
		return nil, err
	}
	var out []string
	for model, duties := range evaluate.ParseDuties(u.GetAnnotations()[v1alpha1.AnnotationDuties]) {
		for duty, a := range duties {
			out = append(out, fmt.Sprintf("%s/%s=%s", model, duty, a.State))
		}
	}
	sort.Strings(out)
	return out, nil
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

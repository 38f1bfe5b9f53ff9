// Package chart tests the Helm chart (charts/responsibility-operator) with the
// real tools: helm lints and renders it with the defaults and with each file
// of its ci/ directory; every rendering is applied server-side to a local
// kube-apiserver; the chart is installed and upgraded there with helm, and
// the manager, run as a process under the chart's ServiceAccount
// (impersonated), converges the catalog's samples while the API server's
// audit log shows it was refused nothing, and answers the chart's webhooks,
// which the API server calls through the chart's Service (serviceProxy
// stands in for kube-proxy). The rendered RBAC and webhook configurations
// are compared with config/, which the chart is generated from (hack/chart).
package chart

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/go-logr/logr"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
)

var (
	// root is the repository root, chartDir the chart, assets the directory
	// of kube-apiserver, etcd and kubectl, helmBin and managerBin the tools.
	root, chartDir, assets, helmBin, managerBin string
	// helmHome isolates helm's cache, config and data from the user's.
	helmHome string
	// setupErr is why the tests cannot run (reported by every test).
	setupErr error
)

func TestMain(m *testing.M) {
	flag.Parse()
	ctrllog.SetLogger(logr.Discard())
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	var err error
	if root, err = filepath.Abs(filepath.Join("..", "..")); err != nil {
		setupErr = err
		return m.Run()
	}
	chartDir = filepath.Join(root, "charts", "responsibility-operator")
	helmBin = filepath.Join(root, "bin", "helm")
	if _, err := os.Stat(helmBin); err != nil {
		setupErr = fmt.Errorf("no helm in %s: run `make helm` (or `make test`, which does)", filepath.Dir(helmBin))
		return m.Run()
	}
	if helmHome, err = os.MkdirTemp("", "chart-helm-"); err != nil {
		setupErr = err
		return m.Run()
	}
	defer func() { _ = os.RemoveAll(helmHome) }()
	if testing.Short() {
		return m.Run() // the tests that need a control plane skip themselves
	}
	assets = os.Getenv("KUBEBUILDER_ASSETS")
	if assets == "" {
		assets = filepath.Join(root, "bin", "k8s")
	}
	if _, err := os.Stat(filepath.Join(assets, "kube-apiserver")); err != nil {
		setupErr = fmt.Errorf("no kube-apiserver in %s: run `make controlplane` (or `make test`, which does)", assets)
		return m.Run()
	}
	managerBin = filepath.Join(helmHome, "manager")
	build := exec.Command("go", "build", "-o", managerBin, "./cmd/manager")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		setupErr = fmt.Errorf("build the manager: %w\n%s", err, out)
	}
	defer stopShared()
	return m.Run()
}

// needTools fails the test when the setup failed.
func needTools(t *testing.T) {
	t.Helper()
	if setupErr != nil {
		t.Fatal(setupErr)
	}
}

// needCluster skips in -short mode and fails when the setup failed.
func needCluster(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("starts a control plane and the operator binary")
	}
	needTools(t)
}

// helm runs bin/helm with its own cache, config and data directories and
// the given kubeconfig (none for offline commands), and returns stdout.
func helm(kubeconfig string, args ...string) (string, error) {
	cmd := exec.Command(helmBin, args...)
	cmd.Env = append(os.Environ(),
		"HELM_CACHE_HOME="+filepath.Join(helmHome, "cache"),
		"HELM_CONFIG_HOME="+filepath.Join(helmHome, "config"),
		"HELM_DATA_HOME="+filepath.Join(helmHome, "data"),
		"KUBECONFIG="+kubeconfig,
	)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("helm %s: %w\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String(), nil
}

// mustHelm is helm that fails the test on an error.
func mustHelm(t *testing.T, kubeconfig string, args ...string) string {
	t.Helper()
	out, err := helm(kubeconfig, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// valuesFiles are the chart's ci/*-values.yaml, by short name.
func valuesFiles(t *testing.T) map[string]string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(chartDir, "ci", "*-values.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no ci/*-values.yaml in %s (%v)", chartDir, err)
	}
	out := map[string]string{}
	for _, f := range files {
		out[strings.TrimSuffix(filepath.Base(f), "-values.yaml")] = f
	}
	return out
}

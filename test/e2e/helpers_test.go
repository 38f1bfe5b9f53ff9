package e2e

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/go-logr/logr"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
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

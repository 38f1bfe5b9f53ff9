// Package faults runs the operator binary as a process against a local
// control plane and breaks things around it: the process killed while it
// writes, the API server restarted, a watched CRD deleted and recreated, the
// leader of two replicas killed or stopped, the operator uninstalled; and it
// checks the deployment manifest against Pod Security "restricted" and the
// servers' TLS floor. Every test says which regression makes it fail.
package faults

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/go-logr/logr"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
)

var (
	// root is the repository root, assets the directory of kube-apiserver,
	// etcd and kubectl, managerBin the manager binary built once for all tests.
	root, assets, managerBin string
	// setupErr is why the tests cannot run (reported by every test).
	setupErr error
)

func TestMain(m *testing.M) {
	flag.Parse()
	// The tests' own clients log nothing; the operator logs to its file.
	ctrllog.SetLogger(logr.Discard())
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	if testing.Short() {
		return m.Run() // every test skips itself
	}
	var err error
	if root, err = filepath.Abs(filepath.Join("..", "..")); err != nil {
		setupErr = err
		return m.Run()
	}
	assets = os.Getenv("KUBEBUILDER_ASSETS")
	if assets == "" {
		assets = filepath.Join(root, "bin", "k8s")
	}
	if _, err := os.Stat(filepath.Join(assets, "kube-apiserver")); err != nil {
		setupErr = fmt.Errorf("no kube-apiserver in %s: run `make controlplane` (or `make test`, which does)", assets)
		return m.Run()
	}
	dir, err := os.MkdirTemp("", "faults-manager-")
	if err != nil {
		setupErr = err
		return m.Run()
	}
	defer func() { _ = os.RemoveAll(dir) }()
	managerBin = filepath.Join(dir, "manager")
	build := exec.Command("go", "build", "-o", managerBin, "./cmd/manager")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		setupErr = fmt.Errorf("build the manager: %w\n%s", err, out)
	}
	return m.Run()
}

// needCluster skips in -short mode and fails when the setup failed.
func needCluster(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("starts a control plane and the operator binary")
	}
	if setupErr != nil {
		t.Fatal(setupErr)
	}
}

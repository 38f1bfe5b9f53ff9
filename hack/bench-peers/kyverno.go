package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/responsibility-operator/responsibility-operator/internal/devcluster"
)

// kyvernoNamespace is where Kyverno keeps its UpdateRequests, its lease and
// its ConfigMap (KYVERNO_NAMESPACE, pkg/config/config.go).
const kyvernoNamespace = "kyverno"

// kyvernoVersion is the version hack/bench-peers/kyverno/go.mod pins.
var kyvernoVersion = "unknown"

// readKyvernoVersion sets kyvernoVersion from the build module's go.mod.
func readKyvernoVersion(root string) error {
	raw, err := os.ReadFile(filepath.Join(root, "hack", "bench-peers", "kyverno", "go.mod"))
	if err != nil {
		return fmt.Errorf("read Kyverno's build module: %w", err)
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if f := strings.Fields(line); len(f) == 3 && f[0] == "require" && f[1] == "github.com/kyverno/kyverno" {
			kyvernoVersion = f[2]
			return nil
		}
	}
	return errors.New("hack/bench-peers/kyverno/go.mod does not require github.com/kyverno/kyverno")
}

// kyvernoProcess is Kyverno's background controller run out of cluster.
type kyvernoProcess struct {
	cmd  *exec.Cmd
	log  *os.File
	done chan struct{}
}

func (k *kyvernoProcess) pid() int { return k.cmd.Process.Pid }

func (k *kyvernoProcess) stop() error {
	select {
	case <-k.done:
		return nil
	default:
	}
	if err := k.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("stop Kyverno: %w", err)
	}
	select {
	case <-k.done:
	case <-time.After(30 * time.Second):
		_ = k.cmd.Process.Kill()
		<-k.done
	}
	return nil
}

// startKyverno starts the background controller against a kubeconfig, with
// its metrics on a free loopback port and controller-runtime's metrics off,
// and waits until it leads and has started its policy and background
// controllers (cmd/background-controller/main.go: both log "starting
// controller" once their leader election is won).
func startKyverno(ctx context.Context, binary, kubeconfig, logPath string, extra []string) (*kyvernoProcess, error) {
	port, err := devcluster.FreePort()
	if err != nil {
		return nil, err
	}
	args := append([]string{
		"--kubeconfig=" + kubeconfig,
		"--metricsHost=127.0.0.1", fmt.Sprintf("--metricsPort=%d", port),
		"--controllerRuntimeMetricsAddress=0",
		"--disableLogColor",
	}, extra...)
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("create Kyverno's log: %w", err)
	}
	cmd := exec.Command(binary, args...)
	// The variables the Helm chart sets; cmd/internal/check.go refuses to
	// start without them.
	cmd.Env = append(os.Environ(),
		"KYVERNO_NAMESPACE="+kyvernoNamespace,
		"KYVERNO_POD_NAME=kyverno-background-controller-bench",
		"KYVERNO_SERVICEACCOUNT_NAME=kyverno-background-controller",
		"KYVERNO_DEPLOYMENT=kyverno-background-controller",
		"INIT_CONFIG=kyverno",
		"METRICS_CONFIG=kyverno-metrics",
	)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		_ = logFile.Close()
		return nil, fmt.Errorf("start %s: %w", binary, err)
	}
	k := &kyvernoProcess{cmd: cmd, log: logFile, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		_ = logFile.Close()
		close(k.done)
	}()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		select {
		case <-k.done:
			return nil, fmt.Errorf("the Kyverno process exited; see %s", logPath)
		case <-ctx.Done():
			_ = k.stop()
			return nil, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
		raw, _ := os.ReadFile(logPath)
		started := 0
		for _, line := range bytes.Split(raw, []byte("\n")) {
			if bytes.Contains(line, []byte("starting controller")) &&
				(bytes.Contains(line, []byte("name=policy-controller")) || bytes.Contains(line, []byte("name=background-controller"))) {
				started++
			}
		}
		if started >= 2 {
			return k, nil
		}
		if time.Now().After(deadline) {
			_ = k.stop()
			return nil, fmt.Errorf("the Kyverno process did not start its controllers within 2m; see %s", logPath)
		}
	}
}

// Package devcluster runs the pieces of a local installation for the demo,
// the benchmark and the end-to-end tests: the operator binary as a process
// against a local control plane, with its probes and metrics on loopback.
package devcluster

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// OperatorOptions say how to run the operator binary.
type OperatorOptions struct {
	// Binary is the manager binary (make build).
	Binary string
	// Kubeconfig is the path of the kubeconfig the operator uses.
	Kubeconfig string
	// LogPath receives the operator's stdout and stderr; it is appended to,
	// so a restarted operator keeps the earlier log.
	LogPath string
	// Webhook, when set, is where envtest registered the validating webhook;
	// without it the operator runs with --enable-webhook=false.
	Webhook *envtest.WebhookInstallOptions
	// Args are extra flags (later flags win).
	Args []string
	// Env are extra environment variables (NAME=value).
	Env []string
	// Nice, when not 0, runs the operator at that CPU priority: above 0
	// lower, below 0 (as root) higher.
	Nice int
}

// Operator is a running operator process.
type Operator struct {
	Cmd         *exec.Cmd
	ProbePort   int
	MetricsPort int
	LogPath     string
	logFile     *os.File
	done        chan struct{}
	waitErr     error
}

// StartOperator starts the operator binary with plain-HTTP metrics and probes
// on free loopback ports. It does not wait for readiness (see WaitReady).
func StartOperator(opts OperatorOptions) (*Operator, error) {
	o := &Operator{LogPath: opts.LogPath, done: make(chan struct{})}
	var err error
	if o.ProbePort, err = FreePort(); err != nil {
		return nil, err
	}
	if o.MetricsPort, err = FreePort(); err != nil {
		return nil, err
	}
	args := []string{
		"--kubeconfig=" + opts.Kubeconfig,
		fmt.Sprintf("--metrics-bind-address=127.0.0.1:%d", o.MetricsPort),
		"--metrics-secure=false",
		fmt.Sprintf("--health-probe-bind-address=127.0.0.1:%d", o.ProbePort),
	}
	if w := opts.Webhook; w != nil {
		args = append(args,
			"--webhook-host="+w.LocalServingHost,
			fmt.Sprintf("--webhook-port=%d", w.LocalServingPort),
			"--webhook-cert-dir="+w.LocalServingCertDir)
	} else {
		args = append(args, "--enable-webhook=false")
	}
	args = append(args, opts.Args...)
	o.logFile, err = os.OpenFile(opts.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open operator log: %w", err)
	}
	if opts.Nice != 0 {
		// nice(1) execs the binary: same PID, every thread at the priority.
		o.Cmd = exec.Command("nice", append([]string{"-n", strconv.Itoa(opts.Nice), opts.Binary}, args...)...)
	} else {
		o.Cmd = exec.Command(opts.Binary, args...)
	}
	if len(opts.Env) > 0 {
		o.Cmd.Env = append(os.Environ(), opts.Env...)
	}
	o.Cmd.Stdout, o.Cmd.Stderr = o.logFile, o.logFile
	if err := o.Cmd.Start(); err != nil {
		_ = o.logFile.Close()
		return nil, fmt.Errorf("start operator %s: %w", opts.Binary, err)
	}
	go func() {
		o.waitErr = o.Cmd.Wait()
		_ = o.logFile.Close()
		close(o.done)
	}()
	return o, nil
}

// Stop asks the operator to shut down (SIGTERM) and waits for it to exit.
func (o *Operator) Stop() error {
	return o.signalAndWait(syscall.SIGTERM)
}

// Kill kills the operator (SIGKILL, as a node failure or an OOM kill would)
// and waits for it to be gone.
func (o *Operator) Kill() error {
	return o.signalAndWait(syscall.SIGKILL)
}

func (o *Operator) signalAndWait(sig syscall.Signal) error {
	select {
	case <-o.done:
		return nil
	default:
	}
	if err := o.Cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("signal operator: %w", err)
	}
	select {
	case <-o.done:
		return nil
	case <-time.After(30 * time.Second):
		_ = o.Cmd.Process.Kill()
		<-o.done
		return errors.New("the operator did not exit within 30s of " + sig.String() + "; killed it")
	}
}

// Exited reports whether the process has exited, and its wait error.
func (o *Operator) Exited() (bool, error) {
	select {
	case <-o.done:
		return true, o.waitErr
	default:
		return false, nil
	}
}

// WaitReady waits for the readiness probe (which includes the webhook server
// when the webhook is enabled).
func (o *Operator) WaitReady(ctx context.Context, timeout time.Duration) error {
	url := fmt.Sprintf("http://127.0.0.1:%d/readyz", o.ProbePort)
	deadline := time.Now().Add(timeout)
	for {
		if exited, err := o.Exited(); exited {
			return fmt.Errorf("the operator exited (%w); see %s", err, o.LogPath)
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return fmt.Errorf("readiness request: %w", err)
		}
		if resp, err := http.DefaultClient.Do(req); err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the operator was not ready after %s; see %s", timeout, o.LogPath)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// WaitWorking waits until the named controller's workers run: once the
// operator leads (controller-runtime starts controllers after the election)
// and the controller has started, which the readiness probe does not wait
// for. A benchmark that times from this point times the work, not the
// process's start.
func (o *Operator) WaitWorking(ctx context.Context, controller string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		if exited, err := o.Exited(); exited {
			return fmt.Errorf("the operator exited (%w); see %s", err, o.LogPath)
		}
		if f, err := o.Metrics(ctx); err == nil && f.Sum("controller_runtime_max_concurrent_reconciles", map[string]string{"controller": controller}) > 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the operator's %s controller had no workers after %s; see %s", controller, timeout, o.LogPath)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// MetricsText returns the operator's metrics in the Prometheus text format.
func (o *Operator) MetricsText(ctx context.Context) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d/metrics", o.MetricsPort), nil)
	if err != nil {
		return nil, fmt.Errorf("metrics request: %w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("scrape operator metrics: %w", err)
	}
	defer func() { _ = resp.Body.Close() }()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("read operator metrics: %w", err)
	}
	return raw, nil
}

// Metrics returns the operator's parsed metrics.
func (o *Operator) Metrics(ctx context.Context) (Families, error) {
	raw, err := o.MetricsText(ctx)
	if err != nil {
		return nil, err
	}
	return ParseMetrics(raw)
}

// PeakRSS returns the process's peak resident set size in bytes (VmHWM).
func (o *Operator) PeakRSS() (int64, error) {
	return procStatusBytes(o.Cmd.Process.Pid, "VmHWM:")
}

func procStatusBytes(pid int, field string) (int64, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("read process status: %w", err)
	}
	sc := bufio.NewScanner(bytes.NewReader(raw))
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, field) {
			continue
		}
		fields := strings.Fields(strings.TrimPrefix(line, field))
		if len(fields) != 2 || fields[1] != "kB" {
			return 0, fmt.Errorf("unexpected %s line %q", field, line)
		}
		kb, err := strconv.ParseInt(fields[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("parse %s: %w", field, err)
		}
		return kb * 1024, nil
	}
	return 0, fmt.Errorf("no %s in /proc/%d/status", field, pid)
}

// Families are parsed Prometheus metric families by name.
type Families map[string]*dto.MetricFamily

// ParseMetrics parses the Prometheus text format.
func ParseMetrics(raw []byte) (Families, error) {
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("parse metrics: %w", err)
	}
	return Families(fams), nil
}

// Sum adds the values (counter, gauge or untyped; a histogram's sample
// count) of the series of a family whose labels include every pair in match.
func (f Families) Sum(name string, match map[string]string) float64 {
	fam, ok := f[name]
	if !ok {
		return 0
	}
	var sum float64
	for _, m := range fam.GetMetric() {
		if labelsMatch(m.GetLabel(), match) {
			sum += value(m)
		}
	}
	return sum
}

// value is a series' value: a counter's, gauge's or untyped value, a
// histogram's sample count.
func value(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.GetCounter().GetValue()
	case m.Gauge != nil:
		return m.GetGauge().GetValue()
	case m.Untyped != nil:
		return m.GetUntyped().GetValue()
	case m.Histogram != nil:
		return float64(m.GetHistogram().GetSampleCount())
	}
	return 0
}

// SumBy is Sum grouped by the values of the labels by, joined with a space
// (a missing label is empty).
func (f Families) SumBy(name string, match map[string]string, by ...string) map[string]float64 {
	out := map[string]float64{}
	fam, ok := f[name]
	if !ok {
		return out
	}
	for _, m := range fam.GetMetric() {
		if !labelsMatch(m.GetLabel(), match) {
			continue
		}
		values := make([]string, len(by))
		for _, l := range m.GetLabel() {
			if i := slices.Index(by, l.GetName()); i >= 0 {
				values[i] = l.GetValue()
			}
		}
		out[strings.Join(values, " ")] += value(m)
	}
	return out
}

// Mean returns the mean of a histogram's observations over the series
// whose labels include every pair in match (0 without observations).
func (f Families) Mean(name string, match map[string]string) float64 {
	sum, count := f.Observed(name, match)
	if count == 0 {
		return 0
	}
	return sum / count
}

// Observed returns the sum and the number of a histogram's observations over
// the series whose labels include every pair in match.
func (f Families) Observed(name string, match map[string]string) (sum, count float64) {
	fam, ok := f[name]
	if !ok {
		return 0, 0
	}
	for _, m := range fam.GetMetric() {
		if h := m.GetHistogram(); h != nil && labelsMatch(m.GetLabel(), match) {
			sum += h.GetSampleSum()
			count += float64(h.GetSampleCount())
		}
	}
	return sum, count
}

func labelsMatch(labels []*dto.LabelPair, match map[string]string) bool {
	found := 0
	for _, l := range labels {
		if want, ok := match[l.GetName()]; ok {
			if l.GetValue() != want {
				return false
			}
			found++
		}
	}
	return found == len(match)
}

// FreePort returns a free TCP port on loopback.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer func() { _ = l.Close() }()
	return l.Addr().(*net.TCPAddr).Port, nil
}

package faults

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/responsibility-operator/responsibility-operator/api/v1alpha1"
	"github.com/responsibility-operator/responsibility-operator/internal/devcluster"
)

// env is one test's control plane, with an admin client and a directory
// for kubeconfigs and operator logs.
type env struct {
	t       *testing.T
	cluster *devcluster.Cluster
	// cfg is the admin configuration, without a client-side rate limit.
	cfg *rest.Config
	c   client.Client
	dir string
	// webhook: the operator serves the validating webhook.
	webhook bool
}

// startCluster starts a control plane for one test (stopped at its end).
func startCluster(t *testing.T, webhook bool) *env {
	t.Helper()
	return startClusterArgs(t, webhook, nil)
}

// startClusterArgs starts a control plane with extra kube-apiserver flags.
func startClusterArgs(t *testing.T, webhook bool, apiServerArgs map[string]string) *env {
	t.Helper()
	needCluster(t)
	dir := t.TempDir()
	start := time.Now()
	cluster, err := devcluster.StartCluster(devcluster.ClusterOptions{Root: root, Assets: assets, Dir: dir, Webhook: webhook, APIServerArgs: apiServerArgs})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := cluster.Stop(); err != nil {
			t.Errorf("stop control plane: %v", err)
		}
	})
	t.Logf("control plane started in %s", time.Since(start).Round(100*time.Millisecond))
	cfg := rest.CopyConfig(cluster.Config)
	cfg.QPS, cfg.Burst = -1, 0 // the tests create hundreds of objects
	c, err := client.New(cfg, client.Options{Scheme: testScheme(t)})
	if err != nil {
		t.Fatal(err)
	}
	return &env{t: t, cluster: cluster, cfg: cfg, c: c, dir: dir, webhook: webhook}
}

// testScheme knows the built-in kinds, CRDs and models; everything else is
// read as unstructured.
func testScheme(t *testing.T) *runtime.Scheme {
	t.Helper()
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, apiextensionsv1.AddToScheme, v1alpha1.AddToScheme} {
		if err := add(scheme); err != nil {
			t.Fatal(err)
		}
	}
	return scheme
}

// startOperator starts the manager binary with extra flags; it is killed at
// the end of the test, and its log is shown when the test failed.
func (e *env) startOperator(name string, args ...string) *devcluster.Operator {
	e.t.Helper()
	opts := devcluster.OperatorOptions{
		Binary: managerBin, Kubeconfig: e.cluster.Kubeconfig,
		LogPath: filepath.Join(e.dir, name+".log"),
		// Duty events at once, as the tests count them with the writes:
		// internal/controller tests the grace period. A test's own
		// --event-grace-period, later, wins.
		Args: append([]string{"--event-grace-period=0s"}, args...),
	}
	if e.webhook {
		opts.Webhook = &e.cluster.Env.WebhookInstallOptions
	}
	op, err := devcluster.StartOperator(opts)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() {
		_ = op.Kill()
		// FAULTS_LOG_DIR keeps a copy of every operator log, for debugging.
		if d := os.Getenv("FAULTS_LOG_DIR"); d != "" {
			raw, _ := os.ReadFile(op.LogPath)
			_ = os.WriteFile(filepath.Join(d, name+".log"), raw, 0o644)
		}
		if e.t.Failed() {
			showLog(e.t, name, op.LogPath)
		}
	})
	return op
}

// showLog prints the end of an operator's log.
func showLog(t *testing.T, name, path string) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Logf("%s log: %v", name, err)
		return
	}
	lines := strings.Split(strings.TrimSpace(string(raw)), "\n")
	if len(lines) > 40 {
		lines = lines[len(lines)-40:]
	}
	t.Logf("last lines of the %s log (%s):\n%s", name, path, strings.Join(lines, "\n"))
}

// waitReady waits for an operator's readiness probe.
func (e *env) waitReady(op *devcluster.Operator) {
	e.t.Helper()
	if err := op.WaitReady(e.t.Context(), 60*time.Second); err != nil {
		e.t.Fatal(err)
	}
}

// kubectl runs bin/k8s/kubectl with the admin kubeconfig and returns stdout.
func (e *env) kubectl(stdin string, args ...string) string {
	e.t.Helper()
	out, err := e.kubectlErr(stdin, args...)
	if err != nil {
		e.t.Fatal(err)
	}
	return out
}

func (e *env) kubectlErr(stdin string, args ...string) (string, error) {
	cmd := exec.CommandContext(e.t.Context(), filepath.Join(assets, "kubectl"), args...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+e.cluster.Kubeconfig)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("kubectl %s: %w\n%s%s", strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String(), nil
}

// mustObject parses one YAML document.
func mustObject(t *testing.T, doc string) *unstructured.Unstructured {
	t.Helper()
	u := &unstructured.Unstructured{}
	if err := yaml.Unmarshal([]byte(doc), &u.Object); err != nil {
		t.Fatalf("parse %s: %v", doc, err)
	}
	return u
}

// create creates objects from YAML documents.
func (e *env) create(docs ...string) {
	e.t.Helper()
	for _, doc := range docs {
		u := mustObject(e.t, doc)
		if err := e.c.Create(e.t.Context(), u); err != nil {
			e.t.Fatalf("create %s %s: %v", u.GetKind(), u.GetName(), err)
		}
	}
}

// namespace creates a namespace with labels.
func (e *env) namespace(name string, labels map[string]string) {
	e.t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}
	if err := e.c.Create(e.t.Context(), ns); err != nil && !apierrors.IsAlreadyExists(err) {
		e.t.Fatalf("create namespace %s: %v", name, err)
	}
}

// eventually polls cond until it holds and returns how long that took; it
// fails the test with cond's last explanation after timeout.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) time.Duration {
	t.Helper()
	start := time.Now()
	deadline := start.Add(timeout)
	for {
		ok, why := cond()
		if ok {
			return time.Since(start)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not after %s: %s", what, timeout, why)
		}
		select {
		case <-t.Context().Done():
			t.Fatalf("%s: %v", what, t.Context().Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// metric reads the sum of a metric's series from an operator.
func metric(ctx context.Context, op *devcluster.Operator, name string, match map[string]string) (float64, error) {
	fams, err := op.Metrics(ctx)
	if err != nil {
		return 0, err
	}
	return fams.Sum(name, match), nil
}

// mustMetric is metric for a running operator.
func mustMetric(t *testing.T, op *devcluster.Operator, name string, match map[string]string) float64 {
	t.Helper()
	v, err := metric(t.Context(), op, name, match)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

var applied = map[string]string{"result": "success"}

// dutyEvent is the identity of one duty event: the object (by UID), the
// reason, the model and the duty.
type dutyEvent struct {
	UID, Reason, Model, Duty string
}

// operatorEvents lists the duty events the operator wrote, by identity,
// with the number of Event objects and of occurrences (a series counts
// more than one) of each.
func (e *env) operatorEvents(ctx context.Context) (map[dutyEvent]int, error) {
	list := &eventsv1.EventList{}
	if err := e.c.List(ctx, list); err != nil {
		return nil, fmt.Errorf("list events: %w", err)
	}
	out := map[dutyEvent]int{}
	for _, ev := range list.Items {
		if ev.ReportingController != v1alpha1.FieldManager {
			continue
		}
		if ev.Reason != v1alpha1.EventCustomerDutyUnmet && ev.Reason != v1alpha1.EventCustomerDutyMet {
			continue
		}
		k := dutyEvent{UID: string(ev.Regarding.UID), Reason: ev.Reason}
		if ev.Related != nil {
			k.Model = ev.Related.Name
			k.Duty = dutyOfFieldPath(ev.Related.FieldPath)
		}
		n := 1
		if ev.Series != nil && ev.Series.Count > 1 {
			n = int(ev.Series.Count)
		}
		out[k] += n
	}
	return out, nil
}

// dutyOfFieldPath reads the duty of spec.areas{<area>}.duties{<duty>}.
func dutyOfFieldPath(p string) string {
	_, after, ok := strings.Cut(p, ".duties{")
	if !ok {
		return ""
	}
	return strings.TrimSuffix(after, "}")
}

// model returns a model by name.
func (e *env) model(ctx context.Context, name string) (*v1alpha1.ResponsibilityModel, error) {
	rm := &v1alpha1.ResponsibilityModel{}
	if err := e.c.Get(ctx, client.ObjectKey{Name: name}, rm); err != nil {
		return nil, err
	}
	return rm, nil
}

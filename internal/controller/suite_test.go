package controller

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	ctrlwebhook "sigs.k8s.io/controller-runtime/pkg/webhook"

	"github.com/responsibility-operator/responsibility-operator/api/v1alpha1"
	"github.com/responsibility-operator/responsibility-operator/internal/watch"
	"github.com/responsibility-operator/responsibility-operator/internal/webhook"
)

// The suite starts one real kube-apiserver and etcd (built from source by
// `make controlplane`) for every test in this package. Each test starts its
// own manager, so restarts are part of what can be tested.
var (
	testEnv    *envtest.Environment
	restConfig *rest.Config
	k8s        client.Client
	scheme     *runtime.Scheme
)

func TestMain(m *testing.M) {
	os.Exit(runSuite(m))
}

func runSuite(m *testing.M) int {
	flag.Parse()
	if f := flag.Lookup("test.fuzzworker"); f != nil && f.Value.String() == "true" {
		// A fuzzing worker runs only the fuzz target, which needs no API
		// server; the fuzzer restarts workers, each of which would
		// start one more.
		return m.Run()
	}
	root := filepath.Join("..", "..")
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		assets, _ := filepath.Abs(filepath.Join(root, "bin", "k8s"))
		if _, err := os.Stat(filepath.Join(assets, "kube-apiserver")); err != nil {
			fmt.Fprintln(os.Stderr, "no kube-apiserver in bin/k8s: run `make controlplane` (or `make test`, which does)")
			return 1
		}
		_ = os.Setenv("KUBEBUILDER_ASSETS", assets)
	}
	if os.Getenv("TEST_VERBOSE") != "" {
		ctrl.SetLogger(zap.New(zap.UseDevMode(true)))
	} else {
		ctrl.SetLogger(logr.Discard())
	}
	var err error
	if scheme, err = NewScheme(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	testEnv = &envtest.Environment{
		CRDDirectoryPaths:     []string{filepath.Join(root, "config", "crd", "bases"), filepath.Join(root, "test", "crds")},
		ErrorIfCRDPathMissing: true,
		Scheme:                scheme,
		WebhookInstallOptions: envtest.WebhookInstallOptions{
			Paths: []string{filepath.Join(root, "config", "webhook", "manifests.yaml")},
		},
	}
	if restConfig, err = testEnv.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "start control plane:", err)
		return 1
	}
	defer func() {
		if err := testEnv.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "stop control plane:", err)
		}
	}()
	if k8s, err = client.New(restConfig, client.Options{Scheme: scheme}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}

// startManager runs the operator's controllers until the test ends or stop
// is called. At the end of the test, every model is deleted while the
// manager still runs, so that finalizers are honoured and the next test
// starts with none.
func startManager(t *testing.T) (stop func()) {
	t.Helper()
	return startManagerWith(t, managerSetup{})
}

// managerSetup changes how startManagerWith runs the operator; the zero
// value is what startManager runs.
type managerSetup struct {
	// config is the identity the manager runs as; nil is the suite's admin.
	config *rest.Config
	// wrapTransport, when set, wraps every HTTP request the manager makes
	// (cache, client, discovery, events), to inject faults or count requests.
	wrapTransport func(http.RoundTripper) http.RoundTripper
	// options are the controllers' options; nil excludes kube-system only.
	options *Options
	// cache, when set, receives the manager's cache.
	cache *cache.Cache
}

// startManagerWith is startManager with another identity, transport or
// options.
func startManagerWith(t *testing.T, setup managerSetup) (stop func()) {
	t.Helper()
	cfg := restConfig
	if setup.config != nil {
		cfg = setup.config
	}
	if setup.wrapTransport != nil {
		cfg = rest.CopyConfig(cfg)
		cfg.Wrap(setup.wrapTransport)
	}
	opts := Options{ExcludedNamespaces: []string{"kube-system"}}
	if setup.options != nil {
		opts = *setup.options
	}
	opts.Projections = watch.NewProjections()
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                 scheme,
		NewCache:               watch.NewCache(opts.Projections, watch.WatchOptions{}),
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Controller:             config.Controller{SkipNameValidation: ptr.To(true)},
		WebhookServer: ctrlwebhook.NewServer(ctrlwebhook.Options{
			Host:    testEnv.WebhookInstallOptions.LocalServingHost,
			Port:    testEnv.WebhookInstallOptions.LocalServingPort,
			CertDir: testEnv.WebhookInstallOptions.LocalServingCertDir,
		}),
	})
	if err != nil {
		t.Fatalf("create manager: %v", err)
	}
	if setup.cache != nil {
		*setup.cache = mgr.GetCache()
	}
	if err := Setup(mgr, opts); err != nil {
		t.Fatalf("set up controllers: %v", err)
	}
	if err := webhook.Setup(mgr); err != nil {
		t.Fatalf("set up webhook: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	// Models are admitted only once the webhook serves: wait for it, as a
	// readiness probe would, so that no test races the server's start.
	started := mgr.GetWebhookServer().StartedChecker()
	eventually(t, 10*time.Second, func() error { return started(nil) })
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("manager: %v", err)
		}
	}
	t.Cleanup(func() {
		// Stop even when the deletion fails the test: a manager left
		// running would hold the webhook port of the next test.
		defer stop()
		if !stopped {
			deleteAllModels(t)
		}
	})
	return stop
}

func deleteAllModels(t *testing.T) {
	t.Helper()
	list := &v1alpha1.ResponsibilityModelList{}
	if err := k8s.List(context.Background(), list); err != nil {
		t.Errorf("list models: %v", err)
		return
	}
	for _, rm := range list.Items {
		deleteModel(t, rm.Name)
	}
}

// eventually polls f until it returns nil or the timeout passes.
func eventually(t *testing.T, timeout time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var err error
	for {
		if err = f(); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %v", timeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// consistently checks that f keeps returning nil for the whole duration.
func consistently(t *testing.T, duration time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(duration)
	for time.Now().Before(deadline) {
		if err := f(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// newNamespace creates a namespace labelled for one test, deleted at the end.
func newNamespace(t *testing.T, labels map[string]string) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "test-", Labels: labels}}
	if err := k8s.Create(context.Background(), ns); err != nil {
		t.Fatalf("create namespace: %v", err)
	}
	t.Cleanup(func() { _ = k8s.Delete(context.Background(), ns) })
	return ns.Name
}

// applyModel creates or replaces a model.
func applyModel(t *testing.T, rm *v1alpha1.ResponsibilityModel) {
	t.Helper()
	ctx := context.Background()
	existing := &v1alpha1.ResponsibilityModel{}
	err := k8s.Get(ctx, client.ObjectKey{Name: rm.Name}, existing)
	switch {
	case apierrors.IsNotFound(err):
		if err := k8s.Create(ctx, rm); err != nil {
			t.Fatalf("create model %s: %v", rm.Name, err)
		}
	case err != nil:
		t.Fatalf("get model %s: %v", rm.Name, err)
	default:
		// The operator patches the model's finalizer and status meanwhile:
		// read again on a conflict, as kubectl edit would.
		err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
			if err := k8s.Get(ctx, client.ObjectKey{Name: rm.Name}, existing); err != nil {
				return err
			}
			existing.Spec = rm.Spec
			existing.Labels = rm.Labels
			return k8s.Update(ctx, existing)
		})
		if err != nil {
			t.Fatalf("update model %s: %v", rm.Name, err)
		}
	}
}

// deleteModel deletes a model and waits until it is gone (its finalizer needs
// a running manager).
func deleteModel(t *testing.T, name string) {
	t.Helper()
	ctx := context.Background()
	rm := &v1alpha1.ResponsibilityModel{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if err := k8s.Delete(ctx, rm); err != nil && !apierrors.IsNotFound(err) {
		t.Fatalf("delete model %s: %v", name, err)
	}
	eventually(t, 20*time.Second, func() error {
		err := k8s.Get(ctx, client.ObjectKey{Name: name}, rm)
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("model %s still exists (finalizers %v): %w", name, rm.Finalizers, err)
	})
}

// object creates an unstructured object from YAML-like content.
func createObject(t *testing.T, apiVersion, kind, namespace, name string, labels map[string]string, spec map[string]any) *unstructured.Unstructured {
	t.Helper()
	u := &unstructured.Unstructured{Object: map[string]any{"apiVersion": apiVersion, "kind": kind, "spec": spec}}
	u.SetNamespace(namespace)
	u.SetName(name)
	u.SetLabels(labels)
	if err := k8s.Create(context.Background(), u); err != nil {
		t.Fatalf("create %s %s/%s: %v", kind, namespace, name, err)
	}
	return u
}

func getObject(t *testing.T, proto *unstructured.Unstructured) *unstructured.Unstructured {
	t.Helper()
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(proto.GroupVersionKind())
	if err := k8s.Get(context.Background(), client.ObjectKeyFromObject(proto), u); err != nil {
		t.Fatalf("get %s: %v", proto.GetName(), err)
	}
	return u
}

// annotationIs waits until an object's annotation has a value ("" with
// present=false waits for it to be absent).
func waitAnnotation(t *testing.T, obj *unstructured.Unstructured, key, want string, present bool) {
	t.Helper()
	eventually(t, 20*time.Second, func() error {
		got, ok := getObject(t, obj).GetAnnotations()[key]
		if ok != present || (present && got != want) {
			return fmt.Errorf("%s %s = %q (present %v), want %q (present %v)", obj.GetName(), key, got, ok, want, present)
		}
		return nil
	})
}

// eventsFor lists the events.k8s.io events regarding an object, by reason.
func eventsFor(t *testing.T, obj *unstructured.Unstructured, reason string) []eventsv1.Event {
	t.Helper()
	list := &eventsv1.EventList{}
	if err := k8s.List(context.Background(), list, client.InNamespace(obj.GetNamespace())); err != nil {
		t.Fatalf("list events: %v", err)
	}
	var out []eventsv1.Event
	for _, e := range list.Items {
		if e.Regarding.Name == obj.GetName() && e.Regarding.Kind == obj.GetKind() && (reason == "" || e.Reason == reason) {
			out = append(out, e)
		}
	}
	return out
}

func ownedKeys(obj *unstructured.Unstructured) []string {
	var out []string
	for k := range obj.GetAnnotations() {
		if strings.HasPrefix(k, v1alpha1.Prefix) && !strings.HasPrefix(k, v1alpha1.AnnotationWaivePrefix) {
			out = append(out, k)
		}
	}
	for k := range obj.GetLabels() {
		if strings.HasPrefix(k, v1alpha1.Prefix) {
			out = append(out, k)
		}
	}
	return out
}

var errNotYet = errors.New("not yet")

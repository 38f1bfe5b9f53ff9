// Package clustertest runs the plugin's commands against a real
// kube-apiserver and etcd (envtest) with the operator running in-process,
// as an administrator and as a tenant whose only permission is a Role in
// one namespace. It has its own test binary so that the golden tests of
// package plugin stay fast.
package clustertest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/go-logr/logr"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/responsibility-operator/responsibility-operator/api/v1alpha1"
	"github.com/responsibility-operator/responsibility-operator/internal/controller"
	"github.com/responsibility-operator/responsibility-operator/internal/samples"
	"github.com/responsibility-operator/responsibility-operator/internal/watch"
)

// tenant is the user with a Role in tenantNamespace only.
const (
	tenant          = "tenant-a"
	tenantNamespace = "legacy"
)

var (
	admin            client.Client
	adminKubeconfig  string
	tenantKubeconfig string
	// cacheDir is the discovery cache of every command, as ~/.kube/cache is kubectl's.
	cacheDir string
)

func TestMain(m *testing.M) {
	os.Exit(runSuite(m))
}

func runSuite(m *testing.M) int {
	root := filepath.Join("..", "..", "..")
	assets := os.Getenv("KUBEBUILDER_ASSETS")
	if assets == "" {
		assets, _ = filepath.Abs(filepath.Join(root, "bin", "k8s"))
	}
	if _, err := os.Stat(filepath.Join(assets, "kube-apiserver")); err != nil {
		fmt.Fprintf(os.Stderr, "no kube-apiserver in %s: run `make controlplane` (or `make test`, which does)\n", assets)
		return 1
	}
	if os.Getenv("TEST_VERBOSE") != "" {
		ctrl.SetLogger(zap.New(zap.UseDevMode(true)))
	} else {
		ctrl.SetLogger(logr.Discard())
	}
	scheme, err := controller.NewScheme()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	env := &envtest.Environment{
		BinaryAssetsDirectory: assets,
		CRDDirectoryPaths:     []string{filepath.Join(root, "config", "crd", "bases"), filepath.Join(root, "test", "crds")},
		ErrorIfCRDPathMissing: true,
		Scheme:                scheme,
	}
	cfg, err := env.Start()
	if err != nil {
		fmt.Fprintln(os.Stderr, "start control plane:", err)
		return 1
	}
	defer func() {
		if err := env.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "stop control plane:", err)
		}
	}()

	projections := watch.NewProjections()
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme: scheme, NewCache: watch.NewCache(projections, watch.WatchOptions{}),
		Metrics: metricsserver.Options{BindAddress: "0"}, HealthProbeBindAddress: "0",
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "create manager:", err)
		return 1
	}
	if err := controller.Setup(mgr, controller.Options{ExcludedNamespaces: []string{"kube-system"}, Projections: projections}); err != nil {
		fmt.Fprintln(os.Stderr, "set up controllers:", err)
		return 1
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			fmt.Fprintln(os.Stderr, "manager:", err)
		}
	}()

	dir, err := os.MkdirTemp("", "plugin-clustertest-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() { _ = os.RemoveAll(dir) }()
	cacheDir = filepath.Join(dir, "cache")
	if admin, err = client.New(cfg, client.Options{Scheme: scheme}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := setUp(ctx, env, cfg, dir); err != nil {
		fmt.Fprintln(os.Stderr, "set up the cluster:", err)
		return 1
	}
	return m.Run()
}

// setUp writes the two kubeconfigs, applies the models and objects of
// ../testdata plus a VirtualMachine model, grants the tenant its Role, and
// waits until the operator has evaluated every object.
func setUp(ctx context.Context, env *envtest.Environment, cfg *rest.Config, dir string) error {
	var err error
	if adminKubeconfig, err = kubeconfig(env, cfg, dir, envtest.User{Name: "plugin-admin", Groups: []string{"system:masters"}}); err != nil {
		return err
	}
	if tenantKubeconfig, err = kubeconfig(env, cfg, dir, envtest.User{Name: tenant}); err != nil {
		return err
	}
	var objects []*unstructured.Unstructured
	for _, f := range []string{"models.yaml", "objects.yaml", "vm.yaml"} {
		path := filepath.Join("..", "testdata", f)
		if f == "vm.yaml" {
			path = filepath.Join("testdata", f)
		}
		docs, err := samples.ReadFile(path)
		if err != nil {
			return err
		}
		objects = append(objects, docs...)
	}
	for _, u := range objects {
		delete(u.Object, "status")
		u.SetUID("")
		u.SetGeneration(0)
		if err := admin.Create(ctx, u); err != nil {
			return fmt.Errorf("create %s %s: %w", u.GetKind(), u.GetName(), err)
		}
	}
	if err := grantTenant(ctx); err != nil {
		return err
	}
	return waitFor(ctx, time.Minute, evaluated)
}

func kubeconfig(env *envtest.Environment, cfg *rest.Config, dir string, user envtest.User) (string, error) {
	u, err := env.AddUser(user, cfg)
	if err != nil {
		return "", fmt.Errorf("add user %s: %w", user.Name, err)
	}
	raw, err := u.KubeConfig()
	if err != nil {
		return "", fmt.Errorf("kubeconfig of %s: %w", user.Name, err)
	}
	path := filepath.Join(dir, user.Name+".kubeconfig")
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		return "", fmt.Errorf("write kubeconfig: %w", err)
	}
	return path, nil
}

// grantTenant gives the tenant read access to its kinds and to events in
// its namespace, and nothing else.
func grantTenant(ctx context.Context) error {
	read := []string{"get", "list", "watch"}
	role := &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: "tenant-read", Namespace: tenantNamespace},
		Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{"postgresql.cnpg.io"}, Resources: []string{"clusters", "scheduledbackups"}, Verbs: read},
			{APIGroups: []string{"kubevirt.io"}, Resources: []string{"virtualmachines"}, Verbs: read},
			{APIGroups: []string{"", "events.k8s.io"}, Resources: []string{"events"}, Verbs: read},
		},
	}
	binding := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "tenant-read", Namespace: tenantNamespace},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: role.Name},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: tenant}},
	}
	for _, obj := range []client.Object{role, binding} {
		if err := admin.Create(ctx, obj); err != nil {
			return fmt.Errorf("create %s: %w", obj.GetName(), err)
		}
	}
	return nil
}

// evaluated returns nil when the operator has labelled the objects,
// reported scratch-db's unmet duties as events, and counted every matched
// object in the models' status.
func evaluated(ctx context.Context) error {
	want := map[string]string{"scratch-db": v1alpha1.StatusUnmet, "reports-db": v1alpha1.StatusUnknown, "orders-db": v1alpha1.StatusMet, "web-vm": v1alpha1.StatusUnmet}
	for name, status := range want {
		ns := tenantNamespace
		gvk := "postgresql.cnpg.io/v1, Kind=Cluster"
		if name == "orders-db" {
			ns = "shop"
		}
		u := &unstructured.Unstructured{}
		u.SetAPIVersion("postgresql.cnpg.io/v1")
		u.SetKind("Cluster")
		if name == "web-vm" {
			u.SetAPIVersion("kubevirt.io/v1")
			u.SetKind("VirtualMachine")
			gvk = "kubevirt.io/v1, Kind=VirtualMachine"
		}
		if err := admin.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, u); err != nil {
			return fmt.Errorf("get %s %s: %w", gvk, name, err)
		}
		if got := u.GetLabels()[v1alpha1.LabelStatus]; got != status {
			return fmt.Errorf("%s %s/%s: status %q, want %q", gvk, ns, name, got, status)
		}
	}
	for model, matched := range map[string]int32{"acme-postgres": 4, "acme-baseline": 4, "acme-vps": 1} {
		rm := &v1alpha1.ResponsibilityModel{}
		if err := admin.Get(ctx, client.ObjectKey{Name: model}, rm); err != nil {
			return fmt.Errorf("get model %s: %w", model, err)
		}
		if rm.Status.MatchedObjects != matched {
			return fmt.Errorf("%s matches %d objects, want %d", model, rm.Status.MatchedObjects, matched)
		}
	}
	events, err := countEvents(ctx, "scratch-db")
	if err != nil {
		return err
	}
	if events == 0 {
		return errors.New("no CustomerDutyUnmet event on scratch-db yet")
	}
	return nil
}

func countEvents(ctx context.Context, name string) (int, error) {
	list := &unstructured.UnstructuredList{}
	list.SetAPIVersion("events.k8s.io/v1")
	list.SetKind("EventList")
	if err := admin.List(ctx, list, client.InNamespace(tenantNamespace)); err != nil {
		return 0, fmt.Errorf("list events: %w", err)
	}
	n := 0
	for _, e := range list.Items {
		regarding, _, _ := unstructured.NestedString(e.Object, "regarding", "name")
		reason, _, _ := unstructured.NestedString(e.Object, "reason")
		if regarding == name && reason == v1alpha1.EventCustomerDutyUnmet {
			n++
		}
	}
	return n, nil
}

// waitFor polls cond until it returns nil or the timeout passes.
func waitFor(ctx context.Context, timeout time.Duration, cond func(context.Context) error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := cond(ctx)
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("after %s: %w", timeout, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

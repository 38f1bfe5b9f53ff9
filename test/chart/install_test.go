package chart

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/responsibility-operator/responsibility-operator/api/v1alpha1"
	"github.com/responsibility-operator/responsibility-operator/internal/devcluster"
	"github.com/responsibility-operator/responsibility-operator/internal/samples"
)

// The release the install test creates, with the names `make deploy` uses.
const (
	installNamespace = deployNamespace
	installRelease   = deployRelease
	// serviceAccount is the chart's ServiceAccount for that release.
	serviceAccount = installRelease + "-controller-manager"
)

// cluster is the control plane the tests of this package share: started by
// the first test that needs it, with the API server's audit log recording
// every request of the chart's ServiceAccount, and its connections to
// Services going through services (the stand-in for kube-proxy).
type cluster struct {
	*devcluster.Cluster
	c        client.Client
	auditLog string
	services *serviceProxy
}

var (
	shared     *cluster
	sharedErr  error
	sharedOnce sync.Once
)

// auditPolicy logs the metadata (user, verb, resource, response code) of
// the admin's requests, which include those it makes impersonating the
// chart's ServiceAccount: the API server applies the policy to the user who
// authenticated, before impersonation.
const auditPolicy = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: Metadata
  users: [local-admin]
- level: None
`

func startShared(t *testing.T) *cluster {
	t.Helper()
	needCluster(t)
	sharedOnce.Do(func() {
		dir, err := os.MkdirTemp("", "chart-cluster-")
		if err != nil {
			sharedErr = err
			return
		}
		policy := filepath.Join(dir, "audit-policy.yaml")
		if err := os.WriteFile(policy, []byte(auditPolicy), 0o644); err != nil {
			sharedErr = err
			return
		}
		c := &cluster{auditLog: filepath.Join(dir, "audit.log")}
		socket := filepath.Join(dir, "services.sock")
		egress := filepath.Join(dir, "egress-selector.yaml")
		if err := os.WriteFile(egress, fmt.Appendf(nil, egressConfig, socket), 0o644); err != nil {
			sharedErr = err
			return
		}
		if c.services, err = startServiceProxy(socket); err != nil {
			sharedErr = err
			return
		}
		start := time.Now()
		c.Cluster, err = devcluster.StartCluster(devcluster.ClusterOptions{
			Root: root, Assets: assets, Dir: dir,
			// The kinds the chart renders when its toggles are on: cert-manager's
			// Issuer (Certificate and PrometheusRule are in test/crds) and the
			// Prometheus Operator's ServiceMonitor.
			CRDDirs: []string{filepath.Join(root, "test", "chart", "crds")},
			APIServerArgs: map[string]string{
				"audit-policy-file": policy,
				"audit-log-path":    c.auditLog,
				"audit-log-mode":    "blocking",
				// Webhooks are called through their Service: see serviceProxy.
				"egress-selector-config-file": egress,
			},
		})
		if err != nil {
			c.services.close()
			sharedErr = err
			return
		}
		cfg := rest.CopyConfig(c.Config)
		cfg.QPS, cfg.Burst = -1, 0
		scheme := runtime.NewScheme()
		for _, add := range []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, apiextensionsv1.AddToScheme, v1alpha1.AddToScheme} {
			if err := add(scheme); err != nil {
				sharedErr = err
				return
			}
		}
		if c.c, err = client.New(cfg, client.Options{Scheme: scheme}); err != nil {
			sharedErr = err
			return
		}
		shared = c
		fmt.Fprintf(os.Stderr, "chart: control plane started in %s\n", time.Since(start).Round(100*time.Millisecond))
	})
	if sharedErr != nil {
		t.Fatal(sharedErr)
	}
	return shared
}

// stopShared stops the shared control plane (from TestMain).
func stopShared() {
	if shared != nil {
		_ = shared.Stop()
		shared.services.close()
	}
}

// kubectl runs bin/k8s/kubectl with the admin kubeconfig; it returns stdout
// and stderr (where kubectl prints the API server's warnings).
func (c *cluster) kubectl(stdin string, args ...string) (string, string, error) {
	cmd := exec.Command(filepath.Join(assets, "kubectl"), args...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+c.Kubeconfig)
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil {
		err = fmt.Errorf("kubectl %s: %w\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String(), stderr.String(), err
}

// namespace creates a namespace with labels, if it does not exist.
func (c *cluster) namespace(t *testing.T, name string, labels map[string]string) {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}
	if err := c.c.Create(t.Context(), ns); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
}

// restricted are the labels of a namespace that enforces Pod Security
// "restricted" and warns about workload objects that would violate it.
var restricted = map[string]string{
	"pod-security.kubernetes.io/enforce": "restricted",
	"pod-security.kubernetes.io/warn":    "restricted",
}

// TestRenderingsApply renders the chart with the defaults and each ci/
// values file and applies every rendering server-side (a server-side dry
// run: a rendering's webhook would otherwise take part in the next one) to
// the API server, in a namespace that enforces Pod Security "restricted"
// and warns about workloads that would break it. Every object must be
// accepted by the API server's validation, the CRDs' schemas and
// admission, with no warning.
func TestRenderingsApply(t *testing.T) {
	c := startShared(t)
	for name, f := range valuesFiles(t) {
		t.Run(name, func(t *testing.T) {
			ns := "ci-" + name
			c.namespace(t, ns, restricted)
			rendered := mustHelm(t, "", "template", "ci-"+name, chartDir, "-n", ns, "-f", f,
				"--api-versions", "cert-manager.io/v1/Certificate", "--api-versions", "monitoring.coreos.com/v1/ServiceMonitor")
			out, stderr, err := c.kubectl(rendered, "apply", "--server-side", "--dry-run=server", "--field-manager=helm", "-n", ns, "-f", "-")
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(stderr, "Warning") {
				t.Errorf("the API server warned about the %s rendering:\n%s", name, stderr)
			}
			applied := strings.Count(out, "serverside-applied")
			if want := len(index(t, rendered)); applied != want {
				t.Errorf("%d of the %d rendered objects applied:\n%s", applied, want, out)
			}
			t.Logf("%s: %d objects accepted", name, applied)
		})
	}
}

// TestDistApplies writes dist/install.yaml as `make dist` does (into a
// temporary directory), checks it holds both CRDs, both webhook
// configurations with cert-manager's CA injection and the DutyWaiver roles,
// and applies it to the API server: its Namespace for real, everything else
// as a server-side dry run in it (its webhooks would otherwise take part in
// the other tests' requests). Every object must be accepted, with no
// warning.
func TestDistApplies(t *testing.T) {
	c := startShared(t)
	out := filepath.Join(t.TempDir(), "install.yaml")
	cmd := exec.Command(filepath.Join(root, "hack", "dist.sh"), out, "registry.example.com/responsibility-operator:v0.0.0-test", "0.0.0-test")
	cmd.Env = append(os.Environ(), "KUBECTL="+filepath.Join(assets, "kubectl"))
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("hack/dist.sh: %v\n%s", err, msg)
	}
	raw, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	objects := index(t, string(raw))
	for _, key := range requiredObjects {
		if _, ok := objects[key]; !ok {
			t.Errorf("dist/install.yaml has no %s", key)
		}
	}
	// cert-manager's CA injector fills in both webhook configurations.
	for key, u := range objects {
		if strings.HasSuffix(u.GetKind(), "WebhookConfiguration") && u.GetAnnotations()[injectCAFrom] != deployNamespace+"/"+deployRelease+"-serving-cert" {
			t.Errorf("dist/install.yaml: %s has %s %q, want the Certificate %s/%s-serving-cert", key, injectCAFrom, u.GetAnnotations()[injectCAFrom], deployNamespace, deployRelease)
		}
	}
	ns, ok := objects["Namespace/"+deployNamespace]
	if !ok {
		t.Fatalf("dist/install.yaml has no Namespace %s", deployNamespace)
	}
	if got := ns.GetLabels()["pod-security.kubernetes.io/enforce"]; got != "restricted" {
		t.Errorf("dist/install.yaml's namespace enforces Pod Security %q, want restricted", got)
	}
	if err := c.c.Create(t.Context(), ns.DeepCopy()); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	stdout, stderr, err := c.kubectl(string(raw), "apply", "--server-side", "--dry-run=server", "-f", "-")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(stderr, "Warning") {
		t.Errorf("the API server warned about dist/install.yaml:\n%s", stderr)
	}
	if applied := strings.Count(stdout, "serverside-applied"); applied != len(objects) {
		t.Errorf("%d of the %d objects of dist/install.yaml applied:\n%s", applied, len(objects), stdout)
	}
	if !strings.Contains(string(raw), "image: registry.example.com/responsibility-operator:v0.0.0-test") {
		t.Error("dist/install.yaml does not run the image it was given")
	}
}

// TestInstallUpgradeUninstall installs the chart with helm (the catalog on,
// the webhook's certificate generated by the chart), runs the manager as a
// process under the chart's ServiceAccount (a kubeconfig that impersonates
// it) and serving the webhooks, which the API server calls through the
// chart's Service (serviceProxy routes it to the process), applies the
// catalog's samples and waits until every duty of every sample has the
// state the catalog's tests expect. A user bound to the chart's DutyWaiver
// approver role creates a waiver: the chart's mutating webhook records that
// user as its grantor, replacing the grant typed in the request. The API server's audit
// log must show no request of that ServiceAccount refused: the chart's RBAC
// is enough, and TestChartMatchesConfig shows it is no broader than the
// generated role. Then `helm upgrade` with changed values must keep the
// models (same UIDs), the annotations and the webhook's CA; and deleting
// the models before `helm uninstall`, as NOTES.txt says, must leave no
// annotation behind.
//
// The upgrade starts from this commit's chart: the chart has no earlier
// release yet. When one exists, install its packaged chart here first.
func TestInstallUpgradeUninstall(t *testing.T) {
	c := startShared(t)
	ctx := t.Context()
	dir := t.TempDir()
	mustHelm(t, c.Kubeconfig, "install", installRelease, chartDir, "-n", installNamespace, "--create-namespace",
		"--set", "catalog.enabled=true", "--set", "catalog.admission=Warn", "--set", "webhook.certificate.source=chart")

	// The catalog's models are stored although no manager answers the
	// webhook yet (they skip it); any other model goes through it.
	models := &v1alpha1.ResponsibilityModelList{}
	if err := c.c.List(ctx, models); err != nil {
		t.Fatal(err)
	}
	if len(models.Items) != 10 {
		t.Fatalf("helm install created %d models, want the catalog's 10", len(models.Items))
	}
	uids := map[string]string{}
	for _, m := range models.Items {
		uids[m.Name] = string(m.UID)
	}
	other := models.Items[0].DeepCopy()
	other.ObjectMeta = metav1.ObjectMeta{Name: "not-from-the-catalog"}
	err := c.c.Create(ctx, other, client.DryRunAll)
	if err == nil || !strings.Contains(err.Error(), "failed calling webhook") {
		t.Errorf("a model without the catalog label was not sent to the chart's webhook (no manager answers it here): %v", err)
	}
	caBefore := webhookCA(t, c)

	// The manager, as the chart's ServiceAccount, behind the chart's Service.
	kubeconfig := impersonating(t, c.Kubeconfig, dir, "system:serviceaccount:"+installNamespace+":"+serviceAccount)
	webhook := webhookCerts(t, c, dir)
	routeWebhookService(t, c, webhook)
	op := startManager(t, kubeconfig, dir, "manager", webhook)
	servesChartCertificate(t, webhook, caBefore)
	waiverGrantRecorded(t, c, &models.Items[0])
	set, err := samples.Load(root)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.kubectl("", "apply", "-k", filepath.Join(root, "config", "samples", "workloads")); err != nil {
		t.Fatal(err)
	}
	if err := devcluster.WriteStatus(ctx, c.c, set.Unstructured()); err != nil {
		t.Fatal(err)
	}
	converged(t, c, set.Workloads())
	for _, m := range models.Items {
		waitReady(t, c, m.Name)
	}
	annotations := workloadAnnotations(t, c, set.Workloads())
	// catalog.admission=Warn: the manager, as the chart's ServiceAccount,
	// wrote a ValidatingAdmissionPolicy for every model with a duty the API
	// server can evaluate (all but the cross-cutting one).
	if n := admissionPolicies(t, c); n != len(models.Items)-1 {
		t.Errorf("%d ValidatingAdmissionPolicies for the %d catalog models at admission Warn, want %d", n, len(models.Items), len(models.Items)-1)
	}
	refused(t, c)

	// Upgrade as docs/operations.md says: the CRDs first (Helm installs
	// crds/ but never upgrades them), then helm upgrade with other values.
	// The models are the same objects, the annotations are untouched, the
	// chart's certificate and CA are kept.
	if _, _, err := c.kubectl(mustHelm(t, "", "show", "crds", chartDir), "apply", "--server-side", "-f", "-"); err != nil {
		t.Fatal(err)
	}
	mustHelm(t, c.Kubeconfig, "upgrade", installRelease, chartDir, "-n", installNamespace, "--reuse-values",
		"--set", "image.tag=v0.1.0-upgrade", "--set", "operator.workloadConcurrency=8", "--set", "metrics.dashboard.enabled=true")
	if err := c.c.List(ctx, models); err != nil {
		t.Fatal(err)
	}
	for _, m := range models.Items {
		if uids[m.Name] != string(m.UID) {
			t.Errorf("helm upgrade replaced model %s (uid %s, was %s)", m.Name, m.UID, uids[m.Name])
		}
	}
	if len(models.Items) != len(uids) {
		t.Errorf("%d models after the upgrade, %d before", len(models.Items), len(uids))
	}
	if caAfter := webhookCA(t, c); caAfter != caBefore {
		t.Error("helm upgrade generated a new webhook CA: the chart must keep the Secret it generated")
	}
	// A restarted manager (the upgrade's rollout) finds everything as it was.
	if err := op.Stop(); err != nil {
		t.Fatal(err)
	}
	op = startManager(t, kubeconfig, dir, "manager-after-upgrade", webhook)
	converged(t, c, set.Workloads())
	if after := workloadAnnotations(t, c, set.Workloads()); !equalMaps(annotations, after) {
		t.Error("the workloads' annotations changed across the upgrade")
	}

	uninstallAsDocumented(t, c, op, set.Workloads())
}

// uninstallAsDocumented uninstalls as NOTES.txt says: the models first,
// while the manager runs, then the release. No annotation and no admission
// policy may be left, the webhook configurations must be gone and the CRDs
// kept.
func uninstallAsDocumented(t *testing.T, c *cluster, op *devcluster.Operator, workloads []samples.Workload) {
	t.Helper()
	ctx := t.Context()
	if _, _, err := c.kubectl("", "delete", "responsibilitymodels", "--all", "--wait", "--timeout=120s"); err != nil {
		t.Fatal(err)
	}
	for key, a := range workloadAnnotations(t, c, workloads) {
		if a != "" {
			t.Errorf("%s still carries the operator's annotations after its models were deleted: %s", key, a)
		}
	}
	if n := admissionPolicies(t, c); n != 0 {
		t.Errorf("%d ValidatingAdmissionPolicies left after the models were deleted", n)
	}
	refused(t, c)
	// helm uninstall deletes the Deployment with the RBAC: the pods stop.
	if err := op.Stop(); err != nil {
		t.Fatal(err)
	}
	mustHelm(t, c.Kubeconfig, "uninstall", installRelease, "-n", installNamespace, "--wait", "--timeout=60s")
	for _, obj := range []client.Object{&admissionregistrationv1.ValidatingWebhookConfiguration{}, &admissionregistrationv1.MutatingWebhookConfiguration{}} {
		name := installRelease + "-validating-webhook-configuration"
		if _, ok := obj.(*admissionregistrationv1.MutatingWebhookConfiguration); ok {
			name = installRelease + "-mutating-webhook-configuration"
		}
		if err := c.c.Get(ctx, client.ObjectKey{Name: name}, obj); !apierrors.IsNotFound(err) {
			t.Errorf("helm uninstall left the webhook configuration %s: %v", name, err)
		}
	}
	for _, name := range []string{"responsibilitymodels.responsibility.io", "dutywaivers.responsibility.io"} {
		crd := &apiextensionsv1.CustomResourceDefinition{}
		if err := c.c.Get(ctx, client.ObjectKey{Name: name}, crd); err != nil {
			t.Errorf("helm uninstall removed the CRD %s (Helm keeps crds/; its objects would be lost): %v", name, err)
		}
	}
}

// admissionPolicies counts the ValidatingAdmissionPolicies generated from models.
func admissionPolicies(t *testing.T, c *cluster) int {
	t.Helper()
	list := &admissionregistrationv1.ValidatingAdmissionPolicyList{}
	if err := c.c.List(t.Context(), list, client.HasLabels{v1alpha1.LabelModel}); err != nil {
		t.Fatal(err)
	}
	return len(list.Items)
}

// impersonating writes a copy of a kubeconfig whose users act as user.
func impersonating(t *testing.T, kubeconfig, dir, user string) string {
	t.Helper()
	cfg, err := clientcmd.LoadFromFile(kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range cfg.AuthInfos {
		a.Impersonate = user
	}
	path := filepath.Join(dir, "impersonating.kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatal(err)
	}
	return path
}

// webhookCerts writes the chart's webhook Secret where the manager reads
// its serving certificate, as the Deployment mounts it, and picks a port.
func webhookCerts(t *testing.T, c *cluster, dir string) *envtest.WebhookInstallOptions {
	t.Helper()
	secret := &corev1.Secret{}
	if err := c.c.Get(t.Context(), client.ObjectKey{Namespace: installNamespace, Name: installRelease + "-webhook-server-cert"}, secret); err != nil {
		t.Fatal(err)
	}
	certs := filepath.Join(dir, "serving-certs")
	if err := os.MkdirAll(certs, 0o700); err != nil {
		t.Fatal(err)
	}
	for name, data := range secret.Data {
		if err := os.WriteFile(filepath.Join(certs, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	port, err := devcluster.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return &envtest.WebhookInstallOptions{LocalServingHost: "127.0.0.1", LocalServingPort: port, LocalServingCertDir: certs}
}

// servesChartCertificate connects to the manager's webhook server as the
// API server would through the chart's Service: trusting only the CA bundle
// of the chart's webhook configuration, for the Service's DNS name. The
// handshake fails if the chart generated a certificate for another name or
// signed by another CA than the one it injected.
func servesChartCertificate(t *testing.T, webhook *envtest.WebhookInstallOptions, caBundle string) {
	t.Helper()
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM([]byte(caBundle)) {
		t.Fatal("the webhook configuration's CA bundle holds no PEM certificate")
	}
	addr := net.JoinHostPort(webhook.LocalServingHost, strconv.Itoa(webhook.LocalServingPort))
	serverName := installRelease + "-webhook-service." + installNamespace + ".svc"
	var err error
	for range 50 { // the webhook server starts beside the probes
		var conn *tls.Conn
		conn, err = tls.Dial("tcp", addr, &tls.Config{RootCAs: pool, ServerName: serverName, MinVersion: tls.VersionTLS12})
		if err == nil {
			_ = conn.Close()
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Errorf("TLS to the webhook server as %s, trusting the chart's CA bundle: %v", serverName, err)
}

// startManager runs the manager binary as the chart configures it: leader
// election in the release namespace, the webhook served with the chart's
// certificate (no Service routes to a process here, so the API server does
// not call it; servesChartCertificate checks what it would see).
func startManager(t *testing.T, kubeconfig, dir, name string, webhook *envtest.WebhookInstallOptions) *devcluster.Operator {
	t.Helper()
	op, err := devcluster.StartOperator(devcluster.OperatorOptions{
		Binary: managerBin, Kubeconfig: kubeconfig, LogPath: filepath.Join(dir, name+".log"), Webhook: webhook,
		Args: []string{"--leader-elect", "--leader-elect-namespace=" + installNamespace, "--leader-elect-retry-period=200ms"},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = op.Kill()
		if t.Failed() {
			raw, _ := os.ReadFile(op.LogPath)
			lines := strings.Split(strings.TrimSpace(string(raw)), "\n")
			if len(lines) > 40 {
				lines = lines[len(lines)-40:]
			}
			t.Logf("last lines of the %s log:\n%s", name, strings.Join(lines, "\n"))
		}
	})
	if err := op.WaitReady(t.Context(), 60*time.Second); err != nil {
		t.Fatal(err)
	}
	return op
}

// converged waits until every duty of every sample has the state the
// catalog's tests give it: met on the good tenant, unmet on the bad one.
func converged(t *testing.T, c *cluster, workloads []samples.Workload) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for _, w := range workloads {
		want := w.ExpectedDuties()
		for {
			got, err := samples.DutyStates(t.Context(), c.c, w)
			if err == nil && strings.Join(got, " ") == strings.Join(want, " ") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s (%s %s/%s): duties\n  got  %v (%v)\n  want %v", w.File, w.GetKind(), w.GetNamespace(), w.GetName(), got, err, want)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
}

// workloadAnnotations returns the annotations and label the operator owns
// on each sample, joined into one string per object.
func workloadAnnotations(t *testing.T, c *cluster, workloads []samples.Workload) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, w := range workloads {
		u := &unstructured.Unstructured{}
		u.SetGroupVersionKind(w.GroupVersionKind())
		if err := c.c.Get(t.Context(), client.ObjectKeyFromObject(w), u); err != nil {
			t.Fatal(err)
		}
		var ours []string
		for _, k := range v1alpha1.OwnedAnnotations {
			if v, ok := u.GetAnnotations()[k]; ok {
				ours = append(ours, k+"="+v)
			}
		}
		if v, ok := u.GetLabels()[v1alpha1.LabelStatus]; ok {
			ours = append(ours, v1alpha1.LabelStatus+"="+v)
		}
		out[w.GetKind()+" "+w.GetNamespace()+"/"+w.GetName()] = strings.Join(ours, "\n")
	}
	return out
}

func equalMaps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// waitReady waits for a model's Ready condition.
func waitReady(t *testing.T, c *cluster, name string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		m := &v1alpha1.ResponsibilityModel{}
		err := c.c.Get(t.Context(), client.ObjectKey{Name: name}, m)
		if err == nil && meta.IsStatusConditionTrue(m.Status.Conditions, v1alpha1.ConditionReady) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("model %s is not Ready: %v %v", name, m.Status.Conditions, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// webhookCA returns the CA bundle of the chart's webhook configurations,
// which must be the ca.crt of the Secret the manager serves with in every
// webhook of both.
func webhookCA(t *testing.T, c *cluster) string {
	t.Helper()
	vwc := &admissionregistrationv1.ValidatingWebhookConfiguration{}
	if err := c.c.Get(t.Context(), client.ObjectKey{Name: installRelease + "-validating-webhook-configuration"}, vwc); err != nil {
		t.Fatal(err)
	}
	mwc := &admissionregistrationv1.MutatingWebhookConfiguration{}
	if err := c.c.Get(t.Context(), client.ObjectKey{Name: installRelease + "-mutating-webhook-configuration"}, mwc); err != nil {
		t.Fatal(err)
	}
	secret := &corev1.Secret{}
	if err := c.c.Get(t.Context(), client.ObjectKey{Namespace: installNamespace, Name: installRelease + "-webhook-server-cert"}, secret); err != nil {
		t.Fatal(err)
	}
	if len(secret.Data["tls.crt"]) == 0 || len(secret.Data["tls.key"]) == 0 {
		t.Fatalf("Secret %s has no key pair", secret.Name)
	}
	bundles := map[string][]byte{}
	for _, w := range vwc.Webhooks {
		bundles[vwc.Name+" "+w.Name] = w.ClientConfig.CABundle
	}
	for _, w := range mwc.Webhooks {
		bundles[mwc.Name+" "+w.Name] = w.ClientConfig.CABundle
	}
	if len(mwc.Webhooks) == 0 || len(vwc.Webhooks) == 0 {
		t.Fatalf("the chart installed %d mutating and %d validating webhooks", len(mwc.Webhooks), len(vwc.Webhooks))
	}
	for name, ca := range bundles {
		if !bytes.Equal(ca, secret.Data["ca.crt"]) {
			t.Fatalf("webhook %s: its CA bundle is not the ca.crt of Secret %s", name, secret.Name)
		}
	}
	return string(secret.Data["ca.crt"])
}

// routeWebhookService routes the chart's webhook Service to the manager's
// webhook server as kube-proxy would route it to the pods: each Service
// port whose target is the manager's webhook-server port. The API server
// then calls the chart's webhooks as on a cluster, by the Service, port and
// path of their clientConfig, trusting their CA bundle for the Service's
// DNS name.
func routeWebhookService(t *testing.T, c *cluster, webhook *envtest.WebhookInstallOptions) {
	t.Helper()
	svc := &corev1.Service{}
	if err := c.c.Get(t.Context(), client.ObjectKey{Namespace: installNamespace, Name: installRelease + "-webhook-service"}, svc); err != nil {
		t.Fatal(err)
	}
	routed := 0
	for _, p := range svc.Spec.Ports {
		if p.TargetPort.StrVal != "webhook-server" {
			continue
		}
		c.services.route(net.JoinHostPort(svc.Spec.ClusterIP, strconv.Itoa(int(p.Port))), net.JoinHostPort(webhook.LocalServingHost, strconv.Itoa(webhook.LocalServingPort)))
		routed++
	}
	if svc.Spec.ClusterIP == "" || routed == 0 {
		t.Fatalf("Service %s (cluster IP %q) has no port targeting the manager's webhook-server port: %v", svc.Name, svc.Spec.ClusterIP, svc.Spec.Ports)
	}
}

// waiverGrantRecorded creates DutyWaivers as a user bound, in one
// namespace, to the chart's DutyWaiver approver role, through the webhooks
// the chart configured: the mutating one must replace the grant typed in
// the request with that user (also on a waiver that carries the catalog's
// label, which only the model webhook skips), the validating one must warn
// of a duty the model lacks, and the manager, as the chart's ServiceAccount,
// must write the waiver's status.
func waiverGrantRecorded(t *testing.T, c *cluster, model *v1alpha1.ResponsibilityModel) {
	t.Helper()
	ctx := t.Context()
	const ns, user = "waivers", "alice@example.com"
	c.namespace(t, ns, nil)
	binding := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "approvers", Namespace: ns},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: installRelease + "-dutywaiver-approver-role"},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: user}},
	}
	if err := c.c.Create(ctx, binding); err != nil {
		t.Fatal(err)
	}
	warnings := &warningRecorder{}
	cfg := rest.CopyConfig(c.Config)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: user}
	cfg.WarningHandlerWithContext = warnings
	approver, err := client.New(cfg, client.Options{Scheme: c.c.Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	var duty string
	for _, a := range model.Spec.Areas {
		for _, d := range a.Duties {
			if duty == "" {
				duty = d.Name
			}
		}
	}
	if duty == "" {
		t.Fatalf("model %s has no duty to waive", model.Name)
	}
	forged := &v1alpha1.WaiverGrant{User: "someone-else", Time: metav1.NewTime(time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC))}
	dw := &v1alpha1.DutyWaiver{
		ObjectMeta: metav1.ObjectMeta{Name: "grant-recorded", Namespace: ns, Labels: map[string]string{"responsibility.io/catalog": "0.1.0"}},
		Spec: v1alpha1.DutyWaiverSpec{
			Model:     model.Name,
			Duties:    []string{duty},
			Objects:   v1alpha1.WaiverObjects{Names: []string{"no-such-object"}},
			Reason:    "the chart's install test",
			Ticket:    "TEST-1",
			GrantedBy: forged.DeepCopy(),
		},
	}
	// The RBAC authorizer sees the new RoleBinding within moments.
	deadline := time.Now().Add(30 * time.Second)
	for {
		err = approver.Create(ctx, dw)
		if !apierrors.IsForbidden(err) || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("create a DutyWaiver as %s, bound to the chart's approver role: %v", user, err)
	}
	if g := dw.Spec.GrantedBy; g == nil || g.User != user || g.Time.Equal(&forged.Time) {
		t.Errorf("the stored waiver's spec.grantedBy is %+v; the chart's mutating webhook must replace %+v with user %s", g, forged, user)
	}

	// The validating webhook answers too: it warns of a duty the model lacks.
	other := &v1alpha1.DutyWaiver{
		ObjectMeta: metav1.ObjectMeta{Name: "unknown-duty", Namespace: ns},
		Spec:       *dw.Spec.DeepCopy(),
	}
	other.Spec.Duties = []string{"no-such-duty"}
	if err := approver.Create(ctx, other, client.DryRunAll); err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(warnings.all(), func(w string) bool { return strings.Contains(w, "no-such-duty") }) {
		t.Errorf("no warning about duty no-such-duty from the chart's validating webhook: %q", warnings.all())
	}

	// The manager, as the chart's ServiceAccount, keeps the waiver's status.
	deadline = time.Now().Add(time.Minute)
	for {
		got := &v1alpha1.DutyWaiver{}
		err := c.c.Get(ctx, client.ObjectKeyFromObject(dw), got)
		if err == nil && got.Status.ObservedGeneration == got.Generation {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the manager wrote no status of waiver %s/%s: %+v %v", ns, dw.Name, got.Status, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// warningRecorder keeps the warnings the API server returns.
type warningRecorder struct {
	mu       sync.Mutex
	warnings []string
}

func (w *warningRecorder) HandleWarningHeaderWithContext(_ context.Context, _ int, _ string, text string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.warnings = append(w.warnings, text)
}

func (w *warningRecorder) all() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.warnings)
}

// refused fails the test for every request of the chart's ServiceAccount
// the API server refused (403), as its audit log records them.
func refused(t *testing.T, c *cluster) {
	t.Helper()
	f, err := os.Open(c.auditLog)
	if err != nil {
		t.Fatalf("the API server's audit log: %v", err)
	}
	defer func() { _ = f.Close() }()
	type event struct {
		Verb       string `json:"verb"`
		RequestURI string `json:"requestURI"`
		User       struct {
			Username string `json:"username"`
		} `json:"user"`
		ImpersonatedUser *struct {
			Username string `json:"username"`
		} `json:"impersonatedUser"`
		ResponseStatus struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
		} `json:"responseStatus"`
	}
	scanner := bufio.NewScanner(f)
	scanner.Buffer(make([]byte, 1<<20), 1<<24)
	requests, denied := 0, 0
	for scanner.Scan() {
		var e event
		if err := json.Unmarshal(scanner.Bytes(), &e); err != nil {
			t.Fatalf("audit log: %v", err)
		}
		if e.ImpersonatedUser == nil || e.ImpersonatedUser.Username != "system:serviceaccount:"+installNamespace+":"+serviceAccount {
			continue
		}
		requests++
		if e.ResponseStatus.Code == 403 {
			denied++
			if denied <= 10 {
				t.Errorf("the API server refused the chart's ServiceAccount: %s %s: %s", e.Verb, e.RequestURI, e.ResponseStatus.Message)
			}
		}
	}
	if err := scanner.Err(); err != nil {
		t.Fatal(err)
	}
	if requests == 0 {
		t.Fatal("the audit log records no request of the chart's ServiceAccount: the manager did not run as it, or the policy matches nobody")
	}
	if denied > 10 {
		t.Errorf("... and %d more refusals", denied-10)
	}
	t.Logf("audit log: %d requests of %s, %d refused", requests, serviceAccount, denied)
}

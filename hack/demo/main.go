// Command demo is `make demo`: it starts a local control plane (kube-apiserver
// and etcd built from source), installs the operator's CRD and the CRDs of
// KubeVirt, CloudNativePG, Knative and friends, applies the catalog models and
// sample workloads, runs the operator, and shows what lands on the workloads.
// With -hold (the default on a terminal) it keeps everything running until
// Ctrl-C, with a kubeconfig to explore it; otherwise it exits after showing.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/term"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/responsibility-operator/responsibility-operator/api/v1alpha1"
	"github.com/responsibility-operator/responsibility-operator/internal/controller"
	"github.com/responsibility-operator/responsibility-operator/internal/devcluster"
	"github.com/responsibility-operator/responsibility-operator/internal/samples"
)

// showcase is the workload whose annotations the demo prints in full.
const showcase = "scratch-db"

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func run() error {
	root, err := os.Getwd()
	if err != nil {
		return err
	}
	hold := flag.Bool("hold", term.IsTerminal(int(os.Stdin.Fd())), "keep the control plane and operator running until Ctrl-C")
	manager := flag.String("manager", filepath.Join(root, "bin", "manager"), "the operator binary (make build)")
	plugin := flag.String("plugin", filepath.Join(root, "bin", "kubectl-responsibility"), "the kubectl plugin (make install-plugin)")
	assets := flag.String("assets", filepath.Join(root, "bin", "k8s"), "directory with kube-apiserver, etcd and kubectl (make controlplane)")
	workDir := flag.String("dir", filepath.Join(root, "tmp", "demo"), "directory for the kubeconfig and logs")
	timeout := flag.Duration("timeout", 2*time.Minute, "how long to wait for the workloads to be annotated")
	flag.Parse()

	for _, f := range []string{*manager, *plugin, filepath.Join(*assets, "kube-apiserver"), filepath.Join(*assets, "kubectl")} {
		if _, err := os.Stat(f); err != nil {
			return fmt.Errorf("%s is missing: run `make demo`, which builds it", f)
		}
	}
	if err := os.MkdirAll(*workDir, 0o755); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	step("Starting a local control plane (kube-apiserver + etcd)")
	cluster, err := devcluster.StartCluster(devcluster.ClusterOptions{Root: root, Assets: *assets, Dir: *workDir, Webhook: true})
	if err != nil {
		return err
	}
	defer func() {
		step("Stopping the control plane")
		if err := cluster.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, err)
		}
	}()
	kubeconfigPath := cluster.Kubeconfig
	scheme, err := controller.NewScheme()
	if err != nil {
		return err
	}
	c, err := client.New(cluster.Config, client.Options{Scheme: scheme})
	if err != nil {
		return err
	}
	kubectl := func(args ...string) error { return runKubectl(ctx, *assets, kubeconfigPath, args...) }

	step("Starting the operator (logs: " + filepath.Join(*workDir, "manager.log") + ")")
	operator, err := devcluster.StartOperator(devcluster.OperatorOptions{
		Binary: *manager, Kubeconfig: kubeconfigPath, LogPath: filepath.Join(*workDir, "manager.log"),
		Webhook: &cluster.Env.WebhookInstallOptions,
	})
	if err != nil {
		return err
	}
	defer func() { _ = operator.Stop() }()
	if err := operator.WaitReady(ctx, 30*time.Second); err != nil {
		return err
	}

	step("Applying the catalog models: kubectl apply -k config/catalog")
	if err := kubectl("apply", "-k", filepath.Join(root, "config", "catalog")); err != nil {
		return err
	}
	step("Applying sample workloads: kubectl apply -k config/samples/workloads")
	if err := kubectl("apply", "-k", filepath.Join(root, "config", "samples", "workloads")); err != nil {
		return err
	}

	set, err := samples.Load(root)
	if err != nil {
		return err
	}
	if err := devcluster.WriteStatus(ctx, c, set.Unstructured()); err != nil {
		return err
	}
	workloads := set.Workloads()
	if err := settle(ctx, c, workloads, *timeout); err != nil {
		return err
	}

	if err := show(ctx, c, kubectl, workloads); err != nil {
		return err
	}

	step(fmt.Sprintf("The operator's metrics (curl http://127.0.0.1:%d/metrics | grep ^responsibility_, histogram buckets left out)", operator.MetricsPort))
	if err := showMetrics(ctx, operator); err != nil {
		return err
	}

	step("Policy reports for existing report UIs (kubectl get reports.openreports.io -A)")
	if err := kubectl("get", "reports.openreports.io", "-A"); err != nil {
		return err
	}

	step("The webhook refuses a model whose rule does not compile")
	if err := kubectlStdin(ctx, *assets, kubeconfigPath, brokenModel, "apply", "-f", "-"); err == nil {
		return errors.New("the webhook admitted a model with a broken rule")
	}

	step("What a tenant sees at the terminal: kubectl responsibility unmet -A")
	pluginPath := "PATH=" + filepath.Dir(*plugin) + string(os.PathListSeparator) + os.Getenv("PATH")
	if err := runKubectlEnv(ctx, *assets, kubeconfigPath, []string{pluginPath}, "responsibility", "unmet", "-A"); err != nil {
		return err
	}

	if err := grantWaiver(ctx, c, kubectl, filepath.Join(root, "config", "samples", "dutywaiver.yaml")); err != nil {
		return err
	}
	step("Every exception in the namespace, with the time it has left: kubectl responsibility waivers -n legacy")
	if err := runKubectlEnv(ctx, *assets, kubeconfigPath, []string{pluginPath}, "responsibility", "waivers", "-n", "legacy"); err != nil {
		return err
	}
	if err := exportEvidence(ctx, *workDir, func(args ...string) error {
		return runKubectlEnv(ctx, *assets, kubeconfigPath, []string{pluginPath}, append([]string{"responsibility"}, args...)...)
	}); err != nil {
		return err
	}

	if !*hold {
		return nil
	}
	fmt.Printf("\nThe control plane and the operator keep running. Explore with:\n\n  export KUBECONFIG=%s PATH=%s:%s:$PATH\n  kubectl get rm\n  kubectl responsibility show -n legacy clusters.postgresql.cnpg.io/scratch-db\n\nPress Ctrl-C to stop and tear everything down.\n",
		kubeconfigPath, *assets, filepath.Dir(*plugin))
	<-ctx.Done()
	return nil
}

// show prints the models, the workloads by status, one workload's
// annotations in full and the events of the neglected tenant.
func show(ctx context.Context, c client.Client, kubectl func(args ...string) error, workloads []samples.Workload) error {
	step("kubectl get responsibilitymodels")
	if err := kubectl("get", "responsibilitymodels"); err != nil {
		return err
	}
	resources, err := resourceNames(c, workloads)
	if err != nil {
		return err
	}
	step("The workloads of tenants shop and legacy, by status label")
	if err := kubectl("get", "-A", resources, "-l", v1alpha1.LabelStatus, "--sort-by=.metadata.namespace",
		"-o", `custom-columns=NAMESPACE:.metadata.namespace,KIND:.kind,NAME:.metadata.name,STATUS:.metadata.labels.responsibility\.io/status,MODELS:.metadata.annotations.responsibility\.io/models`); err != nil {
		return err
	}
	for _, w := range workloads {
		if w.GetName() != showcase {
			continue
		}
		step(fmt.Sprintf("What lands on one workload (%s %s/%s): its responsibility.io/ annotations", w.GetKind(), w.GetNamespace(), w.GetName()))
		if err := showAnnotations(ctx, c, w); err != nil {
			return err
		}
	}
	step("Events for unmet customer duties (kubectl get events -n legacy)")
	if err := kubectl("get", "events.events.k8s.io", "-n", "legacy", "--sort-by=.metadata.creationTimestamp",
		"-o", "custom-columns=TYPE:.type,REASON:.reason,KIND:.regarding.kind,OBJECT:.regarding.name,NOTE:.note"); err != nil {
		return err
	}
	return nil
}

// step prints a section heading, bold only when stdout is a terminal.
func step(msg string) {
	if term.IsTerminal(int(os.Stdout.Fd())) {
		fmt.Printf("\n\033[1m==> %s\033[0m\n", msg)
		return
	}
	fmt.Printf("\n==> %s\n", msg)
}

func runKubectl(ctx context.Context, assets, kubeconfig string, args ...string) error {
	return runKubectlEnv(ctx, assets, kubeconfig, nil, args...)
}

// runKubectlEnv runs kubectl with extra environment variables (later ones win).
func runKubectlEnv(ctx context.Context, assets, kubeconfig string, env []string, args ...string) error {
	cmd := exec.CommandContext(ctx, filepath.Join(assets, "kubectl"), args...)
	cmd.Env = append(append(os.Environ(), "KUBECONFIG="+kubeconfig), env...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("kubectl %s: %w", strings.Join(args, " "), err)
	}
	return nil
}

// brokenModel has a rule with a syntax error, for the webhook to refuse.
const brokenModel = `apiVersion: responsibility.io/v1alpha1
kind: ResponsibilityModel
metadata:
  name: broken-example
spec:
  service: Example
  provider: Example
  targets:
  - apiVersion: postgresql.cnpg.io/v1
    kind: Cluster
  areas:
  - name: Connection Security
    provider: TLS certificates
    customer: TLS in clients
    duties:
    - name: tls-enforced
      rule: object.spec.postgresql.parameters.ssl_min_protocol_version >= 
      message: Enforce TLS
`

func kubectlStdin(ctx context.Context, assets, kubeconfig, stdin string, args ...string) error {
	cmd := exec.CommandContext(ctx, filepath.Join(assets, "kubectl"), args...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+kubeconfig)
	cmd.Stdin = strings.NewReader(stdin)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stdout
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("kubectl %s: %w", strings.Join(args, " "), err)
	}
	return nil
}

// showMetrics prints the operator's own series from its metrics endpoint.
func showMetrics(ctx context.Context, operator *devcluster.Operator) error {
	raw, err := operator.MetricsText(ctx)
	if err != nil {
		return err
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if strings.HasPrefix(line, "responsibility_") && !strings.Contains(line, "_bucket{") {
			fmt.Println(line)
		}
	}
	return nil
}

// resourceNames returns the workloads' kinds as kubectl resource names,
// comma-separated (virtualmachines.kubevirt.io,clusters.postgresql.cnpg.io,...).
func resourceNames(c client.Client, workloads []samples.Workload) (string, error) {
	seen := map[string]bool{}
	var names []string
	for _, w := range workloads {
		gvk := w.GroupVersionKind()
		mapping, err := c.RESTMapper().RESTMapping(gvk.GroupKind(), gvk.Version)
		if err != nil {
			return "", fmt.Errorf("map %s: %w", gvk, err)
		}
		name := mapping.Resource.Resource
		if mapping.Resource.Group != "" {
			name += "." + mapping.Resource.Group
		}
		if !seen[name] {
			seen[name] = true
			names = append(names, name)
		}
	}
	return strings.Join(names, ","), nil
}

// waitAnnotated waits until every sample workload carries the status its
// sample file promises and every model's status counts its samples.
func waitAnnotated(ctx context.Context, c client.Client, workloads []samples.Workload, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	wantMatched := map[string]int32{}
	for _, w := range workloads {
		for _, m := range w.Models {
			wantMatched[m.Name]++
		}
	}
	for {
		var pending []string
		models := &v1alpha1.ResponsibilityModelList{}
		if err := c.List(ctx, models); err != nil {
			return err
		}
		for _, m := range models.Items {
			if m.Status.MatchedObjects != wantMatched[m.Name] {
				pending = append(pending, fmt.Sprintf("model %s (status counts %d matched, want %d)", m.Name, m.Status.MatchedObjects, wantMatched[m.Name]))
			}
		}
		for _, w := range workloads {
			u := &unstructured.Unstructured{}
			u.SetGroupVersionKind(w.GroupVersionKind())
			err := c.Get(ctx, client.ObjectKeyFromObject(w), u)
			if got := u.GetLabels()[v1alpha1.LabelStatus]; err != nil || got != w.Status() {
				pending = append(pending, fmt.Sprintf("%s %s/%s (status %q, want %q)", w.GetKind(), w.GetNamespace(), w.GetName(), got, w.Status()))
			}
		}
		if len(pending) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("after %s still waiting for: %s", timeout, strings.Join(pending, "; "))
		}
		select {
		case <-ctx.Done():
			return errors.New("interrupted")
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func showAnnotations(ctx context.Context, c client.Client, w samples.Workload) error {
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(w.GroupVersionKind())
	if err := c.Get(ctx, client.ObjectKeyFromObject(w), u); err != nil {
		return err
	}
	for _, key := range v1alpha1.OwnedAnnotations {
		v, ok := u.GetAnnotations()[key]
		if !ok {
			continue
		}
		var pretty bytes.Buffer
		if json.Indent(&pretty, []byte(v), "    ", "  ") == nil {
			v = pretty.String()
		}
		fmt.Printf("  %s: %s\n", key, v)
	}
	fmt.Printf("  label %s: %s\n", v1alpha1.LabelStatus, u.GetLabels()[v1alpha1.LabelStatus])
	return nil
}

// grantWaiver applies the sample DutyWaiver, as a platform team would, and
// waits until the operator reports the waived duties on the workload and
// the objects on the waiver.
func grantWaiver(ctx context.Context, c client.Client, kubectl func(args ...string) error, path string) error {
	step("A platform team grants an exception: kubectl apply -f config/samples/dutywaiver.yaml")
	if err := kubectl("apply", "-f", path); err != nil {
		return err
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		dw := &v1alpha1.DutyWaiver{}
		err := c.Get(ctx, client.ObjectKey{Namespace: "legacy", Name: "scratch-db-backups"}, dw)
		if err == nil && dw.Status.WaivedObjects == 1 && dw.Spec.GrantedBy != nil {
			break
		}
		if time.Now().After(deadline) {
			if err != nil {
				return fmt.Errorf("get the DutyWaiver legacy/scratch-db-backups: %w", err)
			}
			return fmt.Errorf("the DutyWaiver legacy/scratch-db-backups does not waive scratch-db after 30s: status %+v", dw.Status)
		}
		select {
		case <-ctx.Done():
			return errors.New("interrupted")
		case <-time.After(250 * time.Millisecond):
		}
	}
	step("The exception, who granted it, and what it waives (kubectl get dutywaivers -n legacy)")
	if err := kubectl("get", "dutywaivers", "-n", "legacy", "-o", "wide"); err != nil {
		return err
	}
	return kubectl("get", "dutywaiver", "-n", "legacy", "scratch-db-backups", "-o", "jsonpath={.spec.grantedBy}{\"\\n\"}{.status.objects}{\"\\n\"}")
}

// exportEvidence writes what an auditor is handed for the legacy tenant:
// OSCAL assessment results and the HTML report, and the matrices as an
// OSCAL component definition, into dir.
func exportEvidence(ctx context.Context, dir string, plugin func(args ...string) error) error {
	step("Evidence for an auditor: kubectl responsibility export -n legacy --format oscal-ar|html, and the matrices as OSCAL")
	for _, e := range []struct{ format, file string }{
		{"oscal-ar", "legacy-assessment-results.json"},
		{"html", "legacy-report.html"},
		{"oscal-component", "component-definition.json"},
	} {
		path := filepath.Join(dir, e.file)
		if err := plugin("export", "-n", "legacy", "--format", e.format, "-o", path); err != nil {
			return err
		}
		info, err := os.Stat(path)
		if err != nil {
			return fmt.Errorf("export --format %s wrote no file: %w", e.format, err)
		}
		fmt.Printf("%s: %d bytes\n", path, info.Size())
	}
	return ctx.Err()
}

// settle waits until the operator has annotated every sample workload as
// its sample file promises and each tenant has seen its findings.
func settle(ctx context.Context, c client.Client, workloads []samples.Workload, timeout time.Duration) error {
	step(fmt.Sprintf("Waiting for the operator to annotate the %d sample workloads", len(workloads)))
	if err := waitAnnotated(ctx, c, workloads, timeout); err != nil {
		return err
	}
	step(fmt.Sprintf("Waiting for the workloads' event grace period (the operator's --event-grace-period, %s) to end", controller.DefaultEventGracePeriod))
	return waitFindings(ctx, c, workloads, timeout)
}

// waitFindings waits until no workload's duty events are held any more
// and each tenant has seen each of its findings once: one event per unmet
// duty of an object or, for a namespace-wide duty, of the namespace, and
// none for a duty met once everything was applied (kubectl apply -k applies
// the workloads before the ScheduledBackups and snapshots that meet their
// duties). It prints the count, which test/e2e checks.
func waitFindings(ctx context.Context, c client.Client, workloads []samples.Workload, timeout time.Duration) error {
	objects := make([]*unstructured.Unstructured, 0, len(workloads))
	for _, w := range workloads {
		objects = append(objects, w.Unstructured)
	}
	for _, ns := range []string{"shop", "legacy"} {
		f, err := devcluster.WaitFindings(ctx, c, ns, objects, timeout)
		if err != nil {
			return err
		}
		fmt.Printf("namespace %s: %d findings (%d of them namespace-wide), each reported by one event, none for a duty met in the end\n", ns, len(f.Unmet), f.NamespaceWide())
	}
	return nil
}

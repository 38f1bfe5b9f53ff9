package clustertest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/responsibility-operator/responsibility-operator/api/v1alpha1"
	"github.com/responsibility-operator/responsibility-operator/internal/plugin"
)

// run runs kubectl-responsibility with a kubeconfig, as a user would.
func run(t *testing.T, kubeconfig string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errOut bytes.Buffer
	cmd := plugin.NewCommand(genericiooptions.IOStreams{In: strings.NewReader(""), Out: &out, ErrOut: &errOut})
	cmd.SetArgs(append([]string{"--kubeconfig", kubeconfig, "--cache-dir", cacheDir}, args...))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err = cmd.ExecuteContext(ctx)
	return out.String(), errOut.String(), err
}

// mustRun runs a command that must succeed.
func mustRun(t *testing.T, kubeconfig string, args ...string) (stdout, stderr string) {
	t.Helper()
	stdout, stderr, err := run(t, kubeconfig, args...)
	if err != nil {
		t.Fatalf("kubectl responsibility %s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, stdout, stderr)
	}
	return stdout, stderr
}

// wantLegacyRows are the unmet and unknown duties of namespace legacy, as
// name model/duty=state.
var wantLegacyRows = []string{
	"forged-db acme-postgres/backup-scheduled=Unmet",
	"forged-db acme-postgres/monitoring-enabled=Unknown",
	"forged-db acme-postgres/tls-enforced=Unmet",
	"reports-db acme-postgres/monitoring-enabled=Unknown",
	"scratch-db acme-baseline/superuser-disabled=Unmet",
	"scratch-db acme-postgres/backup-scheduled=Unmet",
	"scratch-db acme-postgres/monitoring-enabled=Unmet",
	"scratch-db acme-postgres/replicas=Unmet",
	"web-vm acme-vps/run-strategy-set=Unmet",
}

func unmetRows(t *testing.T, stdout string) []string {
	t.Helper()
	var rows []plugin.UnmetRow
	if err := json.Unmarshal([]byte(stdout), &rows); err != nil {
		t.Fatalf("decode %q: %v", stdout, err)
	}
	out := make([]string, 0, len(rows))
	for _, r := range rows {
		if r.Namespace != tenantNamespace {
			t.Errorf("row of namespace %q: %+v", r.Namespace, r)
		}
		if r.Message == "" {
			t.Errorf("row without a message: %+v", r)
		}
		out = append(out, fmt.Sprintf("%s %s/%s=%s", r.Name, r.Model, r.Duty, r.State))
	}
	sort.Strings(out)
	return out
}

func TestTenantUnmet(t *testing.T) {
	stdout, _ := mustRun(t, tenantKubeconfig, "unmet", "-n", tenantNamespace, "-o", "json")
	if got := unmetRows(t, stdout); strings.Join(got, "\n") != strings.Join(wantLegacyRows, "\n") {
		t.Errorf("rows\n  got  %q\n  want %q", got, wantLegacyRows)
	}

	table, _ := mustRun(t, tenantKubeconfig, "unmet", "-n", tenantNamespace)
	t.Logf("kubectl responsibility unmet -n %s (as %s):\n%s", tenantNamespace, tenant, table)
	lines := strings.Split(strings.TrimSpace(table), "\n")
	if len(lines) != len(wantLegacyRows)+1 || !strings.HasPrefix(lines[0], "NAMESPACE") {
		t.Errorf("table has %d lines, want a header and %d rows:\n%s", len(lines), len(wantLegacyRows), table)
	}
	if !strings.Contains(table, "VirtualMachine.kubevirt.io   web-vm") || strings.Contains(table, "\x1b[") {
		t.Errorf("table without the VM row, or coloured although not a terminal:\n%s", table)
	}
}

func TestTenantUnmetAllNamespaces(t *testing.T) {
	stdout, stderr := mustRun(t, tenantKubeconfig, "unmet", "-A", "-o", "json")
	if strings.TrimSpace(stdout) != "[]" {
		t.Errorf("a tenant listed rows across namespaces:\n%s", stdout)
	}
	if !strings.Contains(stderr, "you may not list any of the") || !strings.Contains(stderr, "use -n NAMESPACE") {
		t.Errorf("no permission warning:\n%s", stderr)
	}
}

func TestTenantShow(t *testing.T) {
	stdout, _ := mustRun(t, tenantKubeconfig, "show", "clusters.postgresql.cnpg.io/scratch-db", "-n", tenantNamespace, "-o", "json")
	var view plugin.ObjectView
	if err := json.Unmarshal([]byte(stdout), &view); err != nil {
		t.Fatal(err)
	}
	if view.Status != v1alpha1.StatusUnmet || len(view.Matrix) != 6 || len(view.Duties) != 6 || len(view.Problems) != 0 {
		t.Errorf("status %q, %d matrix rows, %d duties, problems %q", view.Status, len(view.Matrix), len(view.Duties), view.Problems)
	}
	waive := map[string]string{}
	for _, d := range view.Duties {
		waive[d.Duty] = d.Waive
	}
	// The tenant may not read models: that acme-baseline ignores the waiver
	// annotation is read from the ignored-waivers annotation.
	if waive["superuser-disabled"] != "model acme-baseline ignores the waiver annotation: see the WaiverIgnored event" ||
		waive["backup-scheduled"] != v1alpha1.AnnotationWaivePrefix+`backup-scheduled="<reason>"` ||
		waive["tls-enforced"] != "" {
		t.Errorf("waive hints: %q", waive)
	}
	reasons := map[string]bool{}
	for _, e := range view.Events {
		reasons[e.Reason] = true
	}
	if !reasons[v1alpha1.EventCustomerDutyUnmet] || !reasons[v1alpha1.EventWaiverIgnored] {
		t.Errorf("events: %+v", view.Events)
	}

	table, _ := mustRun(t, tenantKubeconfig, "show", "vm/web-vm", "-n", tenantNamespace)
	for _, want := range []string{
		"Object:     VirtualMachine.kubevirt.io legacy/web-vm",
		"acme-vps   Operating System   Hypervisor and host kernel",
		"run-strategy-set   Unmet   Set spec.runStrategy, for example Always",
		"kubectl annotate -n legacy virtualmachine.kubevirt.io/web-vm responsibility.io/waive.run-strategy-set=",
		"CustomerDutyUnmet",
	} {
		if !strings.Contains(table, want) {
			t.Errorf("show vm/web-vm lacks %q:\n%s", want, table)
		}
	}
	mustRun(t, tenantKubeconfig, "show", "Cluster.postgresql.cnpg.io", "reports-db", "-n", tenantNamespace)

	_, _, err := run(t, tenantKubeconfig, "show", "cluster/orders-db", "-n", "shop")
	if err == nil || !strings.Contains(err.Error(), "forbidden") {
		t.Errorf("show in a namespace the tenant may not read: %v", err)
	}
}

func TestTenantModels(t *testing.T) {
	for _, args := range [][]string{{"models"}, {"explain", "acme-postgres"}} {
		_, _, err := run(t, tenantKubeconfig, args...)
		if err == nil {
			t.Fatalf("%s: a tenant read the models", args)
		}
		t.Logf("kubectl responsibility %s (as %s): error: %v", strings.Join(args, " "), tenant, err)
		for _, want := range []string{"you may not", "ResponsibilityModels", "forbidden", "ClusterRoleBinding", "unmet -n NAMESPACE"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("%s: the error lacks %q: %v", args, want, err)
			}
		}
	}
}

func TestAdmin(t *testing.T) {
	stdout, _ := mustRun(t, adminKubeconfig, "unmet", "-A", "-o", "json")
	if got := unmetRows(t, stdout); strings.Join(got, "\n") != strings.Join(wantLegacyRows, "\n") {
		t.Errorf("rows\n  got  %q\n  want %q", got, wantLegacyRows)
	}

	stdout, _ = mustRun(t, adminKubeconfig, "models", "-o", "json")
	var models []plugin.ModelRow
	if err := json.Unmarshal([]byte(stdout), &models); err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, m := range models {
		got[m.Name] = fmt.Sprintf("%s matched=%d unmet=%d duties=%d", strings.Join(m.Targets, ","), m.Matched, m.Unmet, m.Duties)
	}
	want := map[string]string{
		"acme-baseline": "Cluster.postgresql.cnpg.io matched=4 unmet=1 duties=1",
		"acme-postgres": "Cluster.postgresql.cnpg.io matched=4 unmet=2 duties=5",
		"acme-vps":      "VirtualMachine.kubevirt.io matched=1 unmet=1 duties=1",
	}
	for name, w := range want {
		if got[name] != w {
			t.Errorf("models: %s: got %q, want %q", name, got[name], w)
		}
	}

	table, _ := mustRun(t, adminKubeconfig, "explain", "acme-postgres")
	for _, want := range []string{"Ready:         True", "monitoring-enabled", "object.spec.monitoring.enablePodMonitor", "related.schedules = postgresql.cnpg.io/v1 ScheduledBackup"} {
		if !strings.Contains(table, want) {
			t.Errorf("explain lacks %q:\n%s", want, table)
		}
	}
}

// waiverRows decodes waivers -o json into source name duties=active
// (waived objects).
func waiverRows(t *testing.T, stdout string) []string {
	t.Helper()
	var rows []plugin.WaiverRow
	if err := json.Unmarshal([]byte(stdout), &rows); err != nil {
		t.Fatalf("decode %q: %v", stdout, err)
	}
	out := make([]string, 0, len(rows))
	for _, r := range rows {
		out = append(out, fmt.Sprintf("%s %s %s %s=%s (%d)", r.Namespace, r.Source, r.Name, strings.Join(r.Duties, ","), r.Active, r.WaivedObjects))
	}
	return out
}

// wantLegacyAnnotationWaivers are the waiver annotations of namespace
// legacy (testdata/objects.yaml), as waiverRows prints them.
var wantLegacyAnnotationWaivers = []string{
	"legacy annotation cluster.postgresql.cnpg.io/scratch-db superuser-disabled=NotAccepted (0)",
	"legacy annotation cluster.postgresql.cnpg.io/scratch-db tls-enforced=True (1)",
}

// TestTenantWaivers: a tenant whose Role does not grant DutyWaivers gets a
// note and the waiver annotations of the objects it may read.
func TestTenantWaivers(t *testing.T) {
	stdout, stderr := mustRun(t, tenantKubeconfig, "waivers", "-n", tenantNamespace, "-o", "json")
	if got := waiverRows(t, stdout); strings.Join(got, "\n") != strings.Join(wantLegacyAnnotationWaivers, "\n") {
		t.Errorf("rows\n  got  %q\n  want %q", got, wantLegacyAnnotationWaivers)
	}
	if !strings.Contains(stderr, "you may not list DutyWaivers in namespace legacy") || strings.Count(strings.TrimSpace(stderr), "\n") != 0 {
		t.Errorf("want a one-line note, got:\n%s", stderr)
	}
}

// TestAdminWaivers: the DutyWaivers an administrator lists carry the
// operator's verdict: one for a model that forbids waivers is NotAccepted,
// one for a duty that is met is active and waives no object.
func TestAdminWaivers(t *testing.T) {
	ctx := context.Background()
	waivers := []*v1alpha1.DutyWaiver{
		{
			ObjectMeta: metav1.ObjectMeta{Name: "superuser-exception", Namespace: tenantNamespace},
			Spec: v1alpha1.DutyWaiverSpec{Model: "acme-baseline", Duties: []string{"superuser-disabled"},
				Objects: v1alpha1.WaiverObjects{Names: []string{"scratch-db"}}, Reason: "the legacy app logs in as postgres"},
		},
		{
			ObjectMeta: metav1.ObjectMeta{Name: "orders-replicas", Namespace: "shop"},
			Spec: v1alpha1.DutyWaiverSpec{Model: "acme-postgres", Duties: []string{"replicas"},
				Objects: v1alpha1.WaiverObjects{Names: []string{"orders-db"}}, Reason: "three already", Ticket: "OPS-1",
				Expires: &metav1.Time{Time: time.Now().Add(365 * 24 * time.Hour).Truncate(time.Second)}},
		},
	}
	for _, dw := range waivers {
		if err := admin.Create(ctx, dw); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if err := admin.Delete(context.Background(), dw); err != nil {
				t.Errorf("delete %s: %v", dw.Name, err)
			}
		})
	}
	var stdout string
	want := append([]string{"shop DutyWaiver orders-replicas replicas=True (0)", "legacy DutyWaiver superuser-exception superuser-disabled=NotAccepted (0)"},
		wantLegacyAnnotationWaivers...)
	err := waitFor(ctx, time.Minute, func(context.Context) error {
		stdout, _ = mustRun(t, adminKubeconfig, "waivers", "-A", "-o", "json")
		if got := waiverRows(t, stdout); strings.Join(got, "\n") != strings.Join(want, "\n") {
			return fmt.Errorf("rows\n  got  %q\n  want %q", got, want)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	table, stderr := mustRun(t, adminKubeconfig, "waivers", "-A")
	t.Logf("kubectl responsibility waivers -A:\n%s%s", table, stderr)
	for _, want := range []string{"orders-replicas", "(in 364d)", "OPS-1", "superuser-exception", "never"} {
		if !strings.Contains(table, want) {
			t.Errorf("the table lacks %q:\n%s", want, table)
		}
	}
}

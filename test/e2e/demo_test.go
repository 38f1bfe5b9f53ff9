// Package e2e runs the operator's binaries end to end on a local control
// plane: what `make demo` shows is what this test asserts.
package e2e

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/responsibility-operator/responsibility-operator/internal/evidence/oscaltest"
)

// TestDemo builds the manager binary and runs the demo program against it,
// so that a broken `make demo` fails `make test`.
func TestDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the operator binary")
	}
	root, assets := paths(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	dir := t.TempDir()
	manager := filepath.Join(dir, "manager")
	build := exec.CommandContext(ctx, "go", "build", "-o", manager, "./cmd/manager")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build manager: %v\n%s", err, out)
	}

	plugin := filepath.Join(dir, "kubectl-responsibility")
	build = exec.CommandContext(ctx, "go", "build", "-o", plugin, "./cmd/kubectl-responsibility")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build plugin: %v\n%s", err, out)
	}

	demo := exec.CommandContext(ctx, "go", "run", "./hack/demo", "-hold=false",
		"-manager="+manager, "-plugin="+plugin, "-assets="+assets, "-dir="+dir)
	demo.Dir = root
	var out bytes.Buffer
	demo.Stdout, demo.Stderr = &out, &out
	if err := demo.Run(); err != nil {
		log, _ := os.ReadFile(filepath.Join(dir, "manager.log"))
		t.Fatalf("demo: %v\n%s\nmanager log:\n%s", err, out.String(), log)
	}
	got := out.String()
	// The demo itself fails unless every sample workload reaches the status
	// its sample file promises; here, check that it showed the result.
	for _, want := range []string{
		"==> The workloads of tenants shop and legacy",
		// what lands on a workload, and the events
		"responsibility.io/matrix:", `"state": "Unmet"`, "CustomerDutyUnmet",
		// the webhook refusing a broken rule with its position
		`"broken-example" is invalid: spec.areas[0].duties[0].rule`, "<input>:1:",
		// a DutyWaiver granted, its grantor recorded by the webhook, the
		// object it waives reported by the operator
		"==> A platform team grants an exception", `"user":"`, `"name":"scratch-db"`,
		"scratch-db-backups", "PLAT-1234",
		// the evidence an auditor is handed, written by the real plugin
		"legacy-assessment-results.json:", "legacy-report.html:", "component-definition.json:",
		// each tenant sees each finding once (the demo fails otherwise):
		// the namespace-wide ones once for the namespace, and no Warning
		// for a duty the related objects applied after the workloads meet
		"namespace shop: 0 findings", "namespace legacy: ", "each reported by one event, none for a duty met in the end",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("demo output lacks %q", want)
		}
	}
	// What the real plugin exported from the real cluster is what an
	// auditor can file: OSCAL valid against NIST's schemas, and a report
	// naming the waiver granted above.
	for file, model := range map[string]string{
		"legacy-assessment-results.json": oscaltest.AssessmentResults,
		"component-definition.json":      oscaltest.ComponentDefinition,
	} {
		raw, err := os.ReadFile(filepath.Join(dir, file))
		if err != nil {
			t.Errorf("export: %v", err)
			continue
		}
		if err := oscaltest.Validate(raw, model); err != nil {
			t.Errorf("%s: %v", file, err)
		}
	}
	if report, err := os.ReadFile(filepath.Join(dir, "legacy-report.html")); err != nil {
		t.Errorf("export: %v", err)
	} else if !bytes.Contains(report, []byte("scratch-db-backups")) || !bytes.Contains(report, []byte("scratch-db")) {
		t.Errorf("the HTML report of legacy does not name the waiver scratch-db-backups")
	}
	if t.Failed() {
		t.Logf("demo output:\n%s", got)
	}
}

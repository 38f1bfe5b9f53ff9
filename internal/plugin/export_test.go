package plugin

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/responsibility-operator/responsibility-operator/internal/evidence"
	"github.com/responsibility-operator/responsibility-operator/internal/evidence/oscaltest"
)

// runEvidence runs the plugin like runCommand, with stdin, at now, and
// returns what runCommand returns and standard output alone. The
// kubeconfig is one that does not exist, so that the name of the cluster
// (the kubeconfig's current context) is the machine's nowhere.
func runEvidence(t *testing.T, c Cluster, stdin string, now time.Time, args ...string) (shown string, stdout []byte) {
	t.Helper()
	t.Setenv("KUBECONFIG", filepath.Join(t.TempDir(), "no-kubeconfig"))
	return runWith(t, c, runOptions{stdin: stdin, now: now}, args...)
}

// checkGolden compares got with testdata/name.golden, or writes it with
// -update.
func checkGolden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o600); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./internal/plugin -run 'TestExportGolden|TestImportGolden' -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("output differs from %s (run go test ./internal/plugin -run 'TestExportGolden|TestImportGolden' -update and review the diff)\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

// TestExportGolden runs export on the fake cluster in every format but
// html (whose page the evidence package's tests check) and validates each
// OSCAL document it writes against NIST's schemas.
func TestExportGolden(t *testing.T) {
	tests := []struct {
		name                       string
		args                       []string
		model                      string // the OSCAL schema of the output
		forbidModels               bool
		forbidWaivers, noWaiverCRD bool
	}{
		{name: "export-oscal-component", args: []string{"export", "--format", "oscal-component"}, model: oscaltest.ComponentDefinition},
		{name: "export-oscal-component-model", args: []string{"export", "--format=oscal-component", "acme-buckets", "--context", "prod-eu"},
			model: oscaltest.ComponentDefinition},
		{name: "export-oscal-ar-legacy", args: []string{"export", "--format", "oscal-ar", "-n", "legacy"}, model: oscaltest.AssessmentResults},
		{name: "export-oscal-ar-media", args: []string{"export", "--format", "oscal-ar", "-n", "media", "--context", "prod-eu"}, model: oscaltest.AssessmentResults},
		{name: "export-oscal-ar-none", args: []string{"export", "--format", "oscal-ar"}, model: oscaltest.AssessmentResults},
		{name: "export-csv-all", args: []string{"export", "--format", "csv", "-A"}},
		{name: "export-csv-tenant", args: []string{"export", "--format", "csv", "-n", "legacy"}, forbidModels: true, forbidWaivers: true},
		{name: "export-csv-no-crd", args: []string{"export", "--format", "csv", "-n", "media"}, noWaiverCRD: true},
		{name: "export-oscal-component-forbidden", args: []string{"export", "--format", "oscal-component"}, forbidModels: true},
		{name: "export-no-format", args: []string{"export", "-A"}},
		{name: "export-bad-format", args: []string{"export", "--format", "oscal-ssp"}},
		{name: "export-model-not-component", args: []string{"export", "--format", "csv", "acme-postgres"}},
		{name: "export-unknown-model", args: []string{"export", "--format", "oscal-component", "acme-nope"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := loadFakeCluster(t)
			c.forbidModels, c.forbidWaivers, c.noWaiverCRD = tt.forbidModels, tt.forbidWaivers, tt.noWaiverCRD
			shown, stdout := runEvidence(t, c, "", goldenNow, tt.args...)
			checkGolden(t, tt.name, shown)
			if tt.model != "" {
				if err := oscaltest.Validate(stdout, tt.model); err != nil {
					t.Errorf("%s: %v", tt.name, err)
				}
			}
		})
	}
}

// TestExportValidates validates the OSCAL documents of every namespace of
// the fake cluster, and of all of them, as a cluster administrator and as a
// tenant who may read neither models nor DutyWaivers.
func TestExportValidates(t *testing.T) {
	for _, tenant := range []bool{false, true} {
		for _, scope := range [][]string{{"-A"}, {"-n", "legacy"}, {"-n", "media"}, {"-n", "shop"}, {"-n", "default"}} {
			c := loadFakeCluster(t)
			c.forbidModels, c.forbidWaivers = tenant, tenant
			args := append([]string{"export", "--format", "oscal-ar"}, scope...)
			shown, stdout := runEvidence(t, c, "", goldenNow, args...)
			if strings.Contains(shown, "--- error") {
				t.Fatalf("%s", shown)
			}
			if err := oscaltest.Validate(stdout, oscaltest.AssessmentResults); err != nil {
				t.Errorf("%v (tenant %v): %v", args, tenant, err)
			}
		}
	}
}

// TestExportDeterministic: the same cluster gives the same component
// definition but for its last-modified time, and assessment results whose
// UUIDs per subject (the document, the objects, the models) stay.
func TestExportDeterministic(t *testing.T) {
	stamp := regexp.MustCompile(`"last-modified": "[^"]*"`)
	_, first := runEvidence(t, loadFakeCluster(t), "", goldenNow, "export", "--format", "oscal-component")
	_, second := runEvidence(t, loadFakeCluster(t), "", goldenNow.Add(24*time.Hour), "export", "--format", "oscal-component")
	if !bytes.Equal(stamp.ReplaceAll(first, nil), stamp.ReplaceAll(second, nil)) || bytes.Equal(first, second) {
		t.Errorf("the component definitions of two collections differ beyond last-modified:\n%s\n%s", first, second)
	}
	_, ar1 := runEvidence(t, loadFakeCluster(t), "", goldenNow, "export", "--format", "oscal-ar", "-A")
	_, ar2 := runEvidence(t, loadFakeCluster(t), "", goldenNow.Add(time.Minute), "export", "--format", "oscal-ar", "-A")
	uuids := regexp.MustCompile(`"(uuid|subject-uuid|component-uuid)": "([^"]*)"`)
	perSubject := func(doc []byte) map[string]bool {
		out := map[string]bool{}
		for _, m := range uuids.FindAllSubmatch(doc, -1) {
			out[string(m[2])] = true
		}
		return out
	}
	a, b := perSubject(ar1), perSubject(ar2)
	kept := 0
	for u := range a {
		if b[u] {
			kept++
		}
	}
	// The document, 7 objects, 3 models, 2 tools, the platform, the plan's
	// resource, the provider, the risks of 3 waived duties.
	if kept != 19 {
		t.Errorf("%d UUIDs are the same in two collections, want 19", kept)
	}
}

// TestExportFile: -o FILE writes what standard output would have, and says
// so on standard error.
func TestExportFile(t *testing.T) {
	for _, format := range []string{formatOSCALComponent, formatOSCALAR, formatCSV, formatHTML} {
		file := filepath.Join(t.TempDir(), "evidence")
		shown, stdout := runEvidence(t, loadFakeCluster(t), "", goldenNow, "export", "--format", format, "-n", "legacy", "-o", file)
		if len(stdout) != 0 || !strings.Contains(shown, "--- stderr\nWrote "+file+" ("+format+"): ") {
			t.Errorf("%s: %s", format, shown)
		}
		_, want := runEvidence(t, loadFakeCluster(t), "", goldenNow, "export", "--format", format, "-n", "legacy")
		got, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s: the file differs from standard output", format)
		}
	}
}

// TestExportHTML: --format html writes evidence.RenderHTML of what the
// other formats are built from.
func TestExportHTML(t *testing.T) {
	c := loadFakeCluster(t)
	_, got := runEvidence(t, c, "", goldenNow, "export", "--format", "html", "-A")
	o := &Options{
		Streams:     genericiooptions.NewTestIOStreamsDiscard(),
		ConfigFlags: genericclioptions.NewConfigFlags(false),
		Now:         func() time.Time { return goldenNow },
	}
	s, err := o.collect(context.Background(), c, collectScope{all: true, objects: true})
	if err != nil {
		t.Fatal(err)
	}
	var want bytes.Buffer
	if err := evidence.RenderHTML(&want, s); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want.Bytes()) {
		t.Error("export --format html differs from evidence.RenderHTML of the collected snapshot")
	}
	if len(s.Namespaces) != 3 || len(s.Models) != 3 {
		t.Errorf("the snapshot holds %d namespaces and %d models, want 3 and 3", len(s.Namespaces), len(s.Models))
	}
}

func TestSnapshotSummary(t *testing.T) {
	s := evidence.Snapshot{CollectedAt: goldenNow, Models: make([]evidence.Model, 1), Namespaces: []evidence.Namespace{
		{Objects: []evidence.Object{{Duties: make([]evidence.DutyState, 3)}, {}}},
	}}
	tests := []struct {
		objects bool
		want    string
	}{
		{false, "1 model"},
		{true, "1 model, 2 objects, 3 duty states in 1 namespace, collected at 2026-08-01T12:00:00Z"},
	}
	for _, tt := range tests {
		if got := snapshotSummary(s, tt.objects); got != tt.want {
			t.Errorf("snapshotSummary(objects=%v) = %q, want %q", tt.objects, got, tt.want)
		}
	}
}

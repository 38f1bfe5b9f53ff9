package modeltest

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/responsibility-operator/responsibility-operator/internal/samples"
)

var root = filepath.Join("..", "..")

// runRequireAll runs the tests under dir as `kubectl responsibility test
// --require-all` does: every result must pass, and every duty evaluated on
// every object must be named by a result.
func runRequireAll(t *testing.T, dir string) *Report {
	t.Helper()
	tests, err := Load([]string{filepath.Join(root, dir)})
	if err != nil {
		t.Fatal(err)
	}
	r := Run(tests, Options{})
	for _, p := range r.Problems(true) {
		t.Error(p)
	}
	return r
}

// TestCatalog runs the catalog's own tests (config/catalog/tests): the
// sample tenants of config/samples/workloads.
func TestCatalog(t *testing.T) {
	r := runRequireAll(t, filepath.Join("config", "catalog", "tests"))
	t.Logf("%d tests, %d results", r.Tests, len(r.Verdicts))
}

// TestCatalogAtSampleEpoch: the catalog's tests evaluate the samples at
// the sample epoch, the instant their evidence is dated from, which is what
// the live tests and `make demo` move to the real now (samples.Load).
func TestCatalogAtSampleEpoch(t *testing.T) {
	tests, err := Load([]string{filepath.Join(root, "config", "catalog", "tests")})
	if err != nil {
		t.Fatal(err)
	}
	want := samples.Epoch.Format(time.RFC3339)
	for _, tc := range tests {
		if tc.Now != want {
			t.Errorf("%s has now: %q, want the sample epoch %q (internal/samples.Epoch)", tc.Name(), tc.Now, want)
		}
	}
}

// TestSamplesTargeted checks the samples themselves: every good or bad
// sample is in a namespace some sample creates, and is targeted by a model
// or read by a duty — else it is a sample for a kind the catalog forgot.
func TestSamplesTargeted(t *testing.T) {
	set, err := samples.Load(root)
	if err != nil {
		t.Fatal(err)
	}
	relatedKinds := map[schema.GroupVersionKind]bool{}
	for _, m := range set.Models {
		for _, src := range m.RelatedSources() {
			relatedKinds[src.GVK] = true
		}
	}
	targeted := map[string]bool{}
	for _, w := range set.Workloads() {
		targeted[w.File+"/"+w.GetNamespace()+"/"+w.GetName()] = true
		if ns := w.GetNamespace(); ns != "" && set.Namespaces[ns] == nil {
			t.Errorf("%s: %s %s is in namespace %q, which no sample creates", w.File, w.GetKind(), w.GetName(), ns)
		}
	}
	for _, o := range set.Objects {
		sample := strings.HasSuffix(o.File, "-good.yaml") || strings.HasSuffix(o.File, "-bad.yaml")
		if !sample || o.GetKind() == "Namespace" || relatedKinds[o.GroupVersionKind()] {
			continue
		}
		if !targeted[o.File+"/"+o.GetNamespace()+"/"+o.GetName()] {
			t.Errorf("%s: no catalog model targets %s %s, and no duty reads its kind", o.File, o.GetKind(), o.GetName())
		}
	}
}

// TestUpstreamCorpus runs the upstream corpus (test/upstream) offline: the
// catalog on the upstream projects' own examples, each duty's expected
// state judged from the project's documentation and cited in the test. The
// same tests run on a real API server with the full upstream CRDs in
// test/e2e (TestUpstreamCorpusOnCRDs).
func TestUpstreamCorpus(t *testing.T) {
	r := runRequireAll(t, filepath.Join("test", "upstream"))
	uncited := 0
	for _, v := range r.Verdicts {
		if strings.TrimSpace(v.Citation) == "" {
			uncited++
			t.Errorf("%s: %s %s/%s has no citation", v.Test, v.Object, v.Model, v.Duty)
		}
	}
	t.Logf("%d tests, %d results, %d without a citation", r.Tests, len(r.Verdicts), uncited)
}

// TestEveryDutyHasAFixTest checks that the corpus tests every catalog
// duty's advice: a test named fix-...<duty>... changes a failing upstream
// object (with patches, or with objects of a fix-*.yaml file of ours) the
// way the duty's message says, and expects that duty Met. The unchanged
// object's test expects it Unmet with that message.
func TestEveryDutyHasAFixTest(t *testing.T) {
	tests, err := Load([]string{filepath.Join(root, "test", "upstream")})
	if err != nil {
		t.Fatal(err)
	}
	fixed := map[string]bool{}
	for _, tt := range tests {
		if !strings.HasPrefix(tt.Metadata.Name, "fix-") {
			continue
		}
		changes := len(tt.Patches) > 0
		for _, r := range tt.Resources {
			changes = changes || strings.HasPrefix(filepath.Base(r), "fix-")
		}
		if !changes {
			t.Errorf("%s: a fix test changes nothing: patch the failing object or add a fix-*.yaml resource", tt.Name())
		}
		for _, r := range tt.Results {
			if r.State == "Met" && strings.Contains(tt.Metadata.Name, r.Duty) {
				fixed[r.Model+"/"+r.Duty] = true
			}
		}
	}
	set, err := samples.Load(root)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range set.Models {
		for _, d := range m.Duties {
			if !fixed[m.Name+"/"+d.Name] {
				t.Errorf("%s/%s: no fix-... test in test/upstream applies its message's advice and expects Met", m.Name, d.Name)
			}
		}
	}
}

// TestCatalogJoins: the catalog's duties that look for a workload's own
// related objects join them on the field that names it
// (evaluate.Model.RelatedJoin), so that a related object's change
// re-evaluates its own workload only, and a rule walks that workload's
// objects rather than every one of the namespace. Without the join a
// CloudNativePG Cluster's evaluation at 50,000 workloads in 20 namespaces
// took 6 ms, most of it walking 750 ScheduledBackups (make bench, its CPU
// profile); the join needs every selection of the field optional
// (s.?spec.?cluster.?name), see internal/evaluate/join.go.
func TestCatalogJoins(t *testing.T) {
	set, err := samples.Load(root)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		model string
		kind  schema.GroupVersionKind
		join  string
	}{
		{"danubedata-managed-databases", schema.GroupVersionKind{Group: "postgresql.cnpg.io", Version: "v1", Kind: "Backup"}, "spec.cluster.name"},
		{"danubedata-managed-databases", schema.GroupVersionKind{Group: "postgresql.cnpg.io", Version: "v1", Kind: "ScheduledBackup"}, "spec.cluster.name"},
		{"danubedata-vps", schema.GroupVersionKind{Group: "snapshot.kubevirt.io", Version: "v1beta1", Kind: "VirtualMachineSnapshot"}, "spec.source.name"},
	}
	for _, tt := range tests {
		t.Run(tt.model+"/"+tt.kind.Kind, func(t *testing.T) {
			for _, m := range set.Models {
				if m.Name != tt.model {
					continue
				}
				for _, src := range m.RelatedSources() {
					if src.GVK == tt.kind {
						if got := strings.Join(m.RelatedJoin(src), "."); got != tt.join {
							t.Errorf("%s reads %s joined on %q, want %s", m.Name, tt.kind.Kind, got, tt.join)
						}
						return
					}
				}
			}
			t.Errorf("%s reads no %s", tt.model, tt.kind.Kind)
		})
	}
}

package plugin

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/yaml"

	"github.com/responsibility-operator/responsibility-operator/api/v1alpha1"
	"github.com/responsibility-operator/responsibility-operator/internal/evidence"
	"github.com/responsibility-operator/responsibility-operator/internal/evidence/oscaltest"
	"github.com/responsibility-operator/responsibility-operator/internal/samples"
)

func TestImportGolden(t *testing.T) {
	_, exported := runEvidence(t, loadFakeCluster(t), "", goldenNow, "export", "--format", "oscal-component")
	tests := []struct {
		name  string
		args  []string
		stdin string
	}{
		{name: "import-fake-cluster", args: []string{"import", "-"}, stdin: string(exported)},
		{name: "import-foreign", args: []string{"import", "testdata/import-foreign.yaml"}},
		{name: "import-foreign-json", args: []string{"import", "testdata/import-foreign.yaml", "-o", "json"}},
		{name: "import-not-component-definition", args: []string{"import", "testdata/models.yaml"}},
		{name: "import-missing", args: []string{"import", "testdata/missing.json"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			shown, _ := runEvidence(t, loadFakeCluster(t), tt.stdin, goldenNow, tt.args...)
			checkGolden(t, tt.name, shown)
		})
	}
}

// readModels reads the ResponsibilityModels of YAML documents.
func readModels(t *testing.T, raw []byte) []v1alpha1.ResponsibilityModel {
	t.Helper()
	docs, err := samples.Documents(raw)
	if err != nil {
		t.Fatal(err)
	}
	var out []v1alpha1.ResponsibilityModel
	for _, doc := range docs {
		var rm v1alpha1.ResponsibilityModel
		if err := yaml.UnmarshalStrict(doc, &rm); err != nil {
			t.Fatalf("%v\n%s", err, doc)
		}
		if rm.Kind == "ResponsibilityModel" {
			out = append(out, rm)
		}
	}
	return out
}

// TestImportCatalogRoundTrip exports the catalog (config/catalog) as a
// component definition, which must validate, and imports it back: the same
// models, services, providers and descriptions, the same areas in the same
// order with the same provider and customer text and controls, and nothing
// lint would refuse but the targets the author must add.
func TestImportCatalogRoundTrip(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("..", "..", "config", "catalog", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var catalog []v1alpha1.ResponsibilityModel
	s := evidence.Snapshot{CollectedAt: goldenNow}
	for _, f := range files {
		objs, err := samples.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, u := range objs {
			if u.GetKind() != "ResponsibilityModel" {
				continue
			}
			var rm v1alpha1.ResponsibilityModel
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &rm); err != nil {
				t.Fatal(err)
			}
			catalog = append(catalog, rm)
			s.Models = append(s.Models, evidenceModel(&rm))
		}
	}
	if len(catalog) < 10 {
		t.Fatalf("read %d models of config/catalog", len(catalog))
	}
	var doc bytes.Buffer
	if err := evidence.WriteComponentDefinition(&doc, s); err != nil {
		t.Fatal(err)
	}
	if err := oscaltest.Validate(doc.Bytes(), oscaltest.ComponentDefinition); err != nil {
		t.Fatal(err)
	}
	shown, out := runEvidence(t, loadFakeCluster(t), doc.String(), goldenNow, "import", "-")
	if strings.Contains(shown, "--- error") || strings.Contains(shown, "Note:") {
		t.Fatalf("%s", shown)
	}
	imported := readModels(t, out)
	if len(imported) != len(catalog) {
		t.Fatalf("imported %d models, want %d", len(imported), len(catalog))
	}
	for i, want := range catalog {
		got := imported[i]
		if got.Name != want.Name || got.Spec.Service != want.Spec.Service || got.Spec.Provider != want.Spec.Provider ||
			got.Spec.Description != want.Spec.Description || got.Spec.Waivers != orAllowed(want.Spec.Waivers) {
			t.Errorf("model %s: got %s %q %q %q %q", want.Name, got.Name, got.Spec.Service, got.Spec.Provider, got.Spec.Description, got.Spec.Waivers)
		}
		var wantAreas []v1alpha1.Area
		for _, a := range want.Spec.Areas {
			wantAreas = append(wantAreas, v1alpha1.Area{Name: a.Name, Provider: a.Provider, Customer: a.Customer, Controls: a.Controls})
		}
		if !reflect.DeepEqual(got.Spec.Areas, wantAreas) {
			t.Errorf("model %s: areas\n got %+v\nwant %+v", want.Name, got.Spec.Areas, wantAreas)
		}
		for _, p := range checkShape(&got) {
			if p.Path != "spec.targets" {
				t.Errorf("model %s: lint would refuse %s: %s", want.Name, p.Path, p.Message)
			}
		}
	}
}

func orAllowed(p v1alpha1.WaiverPolicy) v1alpha1.WaiverPolicy {
	if p == "" {
		return v1alpha1.WaiversAllowed
	}
	return p
}

// TestImportedYAML: the YAML import writes reads back as the models it
// holds, whatever the text: quotes, YAML's special words, several lines,
// leading spaces, long lines.
func TestImportedYAML(t *testing.T) {
	texts := []string{
		"N/A", "yes", "123", "- a dash", "#hash", "key: value", `"quoted" and 'single'`, "trailing space ",
		"line one\nline two", "  two leading spaces\nand a second line", "ends with a line break\n",
		strings.Repeat("a long line of words ", 20), strings.Repeat("x", 300) + " y", "tab\tinside", "ü unicode — dashes",
		"\nstarts with a line break", "many\n\n\nblank lines",
	}
	var models []importedModel
	var imported []evidence.ImportedModel
	for i, text := range texts {
		m := importedModel{APIVersion: v1alpha1.GroupVersion.String(), Kind: "ResponsibilityModel"}
		m.Metadata.Name = "m" + string(rune('a'+i))
		m.Spec = v1alpha1.ResponsibilityModelSpec{
			Service: text, Provider: text, Description: text, Targets: []v1alpha1.Target{},
			Areas: []v1alpha1.Area{{Name: text, Provider: text, Customer: text,
				Controls: []v1alpha1.ControlReference{{Framework: text, ID: text, URL: text}}}},
		}
		models = append(models, m)
		imported = append(imported, evidence.ImportedModel{ComponentTitle: text, ComponentUUID: "u"})
	}
	var b strings.Builder
	if err := writeImportedYAML(&b, "f.json", imported, models); err != nil {
		t.Fatal(err)
	}
	got := readModels(t, []byte(b.String()))
	if len(got) != len(texts) {
		t.Fatalf("read %d models, want %d:\n%s", len(got), len(texts), b.String())
	}
	for i, text := range texts {
		s := got[i].Spec
		a := s.Areas[0]
		c := a.Controls[0]
		for _, v := range []string{s.Service, s.Provider, s.Description, a.Name, a.Provider, a.Customer, c.Framework, c.ID, c.URL} {
			if v != text {
				t.Errorf("text %q reads back as %q in\n%s", text, v, b.String())
				break
			}
		}
		if s.Targets == nil || len(s.Targets) != 0 {
			t.Errorf("targets %v", s.Targets)
		}
	}
	if !strings.Contains(b.String(), "  "+importTargetsTODO+"\n  targets: []\n") {
		t.Error("the targets' TODO is missing")
	}
}

func TestImportForeignFixtureIsTheEvidenceOne(t *testing.T) {
	// testdata/import-foreign.yaml is the evidence package's JSON fixture
	// in YAML: the same document.
	y, err := os.ReadFile(filepath.Join("testdata", "import-foreign.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	j, err := os.ReadFile(filepath.Join("..", "evidence", "testdata", "component-definition-foreign.json"))
	if err != nil {
		t.Fatal(err)
	}
	var a, b any
	if err := yaml.Unmarshal(y, &a); err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(j, &b); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(a, b) {
		t.Error("testdata/import-foreign.yaml differs from internal/evidence/testdata/component-definition-foreign.json")
	}
}

// TestCheckShapeControls: lint checks an area's controls against the CRD's
// limits, which import relies on to tell the author what to fix.
func TestCheckShapeControls(t *testing.T) {
	rm := v1alpha1.ResponsibilityModel{Spec: v1alpha1.ResponsibilityModelSpec{
		Service: "s", Provider: "p", Targets: []v1alpha1.Target{{APIVersion: "v1", Kind: "ConfigMap"}},
		Areas: []v1alpha1.Area{{Name: "a", Provider: "p", Customer: "c", Controls: []v1alpha1.ControlReference{
			{Framework: "NIST SP 800-53 Rev. 5", ID: "sc-8"},
			{Framework: "", ID: strings.Repeat("x", 65), URL: "https://example.com"},
		}}},
	}}
	rm.Name = "m"
	var got []string
	for _, p := range checkShape(&rm) {
		got = append(got, p.Path+": "+p.Message)
	}
	want := []string{
		"spec.areas[0].controls[1].framework: required",
		"spec.areas[0].controls[1].id: must be at most 64 characters, has 65",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}

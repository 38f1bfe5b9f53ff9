package evaluate

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/yaml"

	"github.com/responsibility-operator/responsibility-operator/api/v1alpha1"
)

// TestCatalogOnSamples compiles every model of config/catalog and evaluates
// it on the sample workloads: every duty must be Met on a *-good.yaml sample
// and Unmet on a *-bad.yaml one. This is the catalog's contract with the
// real field paths of the projects whose kinds it targets.
func TestCatalogOnSamples(t *testing.T) {
	var models []*Model
	catalog, err := filepath.Glob(filepath.Join("..", "..", "config", "catalog", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range catalog {
		if filepath.Base(path) == "kustomization.yaml" {
			continue
		}
		rm := &v1alpha1.ResponsibilityModel{}
		readYAML(t, path, rm)
		models = append(models, mustCompile(t, rm))
	}
	if len(models) == 0 {
		t.Fatal("no model in config/catalog")
	}

	samples, err := filepath.Glob(filepath.Join("..", "..", "config", "samples", "workloads", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	related := map[schema.GroupVersionKind][]map[string]any{}
	var workloads []*unstructured.Unstructured
	for _, path := range samples {
		base := filepath.Base(path)
		if base == "kustomization.yaml" || base == "namespace.yaml" {
			continue
		}
		u := &unstructured.Unstructured{}
		readYAML(t, path, &u.Object)
		related[u.GroupVersionKind()] = append(related[u.GroupVersionKind()], u.Object)
		if strings.HasSuffix(base, "-good.yaml") || strings.HasSuffix(base, "-bad.yaml") {
			u.SetAnnotations(map[string]string{"sample": base})
			workloads = append(workloads, u)
		}
	}

	checked := 0
	for _, u := range workloads {
		base := u.GetAnnotations()["sample"]
		matched := Match(models, u.GroupVersionKind(), u.GetLabels(), namespace(nil), true)
		if len(matched) == 0 {
			continue // e.g. a ScheduledBackup: related, not a target
		}
		want := v1alpha1.DutyMet
		if strings.HasSuffix(base, "-bad.yaml") {
			want = v1alpha1.DutyUnmet
		}
		res := Evaluate(matched, Input{GVK: u.GroupVersionKind(), Object: u.Object, Namespace: namespace(nil), Related: related})
		for _, d := range res.Duties {
			checked++
			if d.State != want {
				t.Errorf("%s: %s/%s is %s (%s), want %s", base, d.Model, d.Duty.Name, d.State, d.Message, want)
			}
		}
	}
	if checked == 0 {
		t.Fatal("no duty was checked on any sample")
	}
	t.Logf("%d duty evaluations on %d samples", checked, len(workloads))
}

func readYAML(t *testing.T, path string, into any) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(raw, into); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

package evaluate

import (
	"bytes"
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
// real field paths of the projects whose kinds it targets. Related objects
// and namespaces come from the same sample files, by namespace, as the
// operator would read them from its cache.
func TestCatalogOnSamples(t *testing.T) {
	models := catalogModels(t)
	samples := sampleObjects(t)

	namespaces := map[string]map[string]any{}
	related := map[string]map[schema.GroupVersionKind][]map[string]any{} // namespace → kind → objects
	relatedKinds := map[schema.GroupVersionKind]bool{}
	for _, m := range models {
		for _, gvk := range m.RelatedKinds() {
			relatedKinds[gvk] = true
		}
	}
	for _, s := range samples {
		u := s.obj
		if u.GetKind() == "Namespace" {
			namespaces[u.GetName()] = u.Object
			continue
		}
		if related[u.GetNamespace()] == nil {
			related[u.GetNamespace()] = map[schema.GroupVersionKind][]map[string]any{}
		}
		related[u.GetNamespace()][u.GroupVersionKind()] = append(related[u.GetNamespace()][u.GroupVersionKind()], u.Object)
	}

	checked, workloads := 0, 0
	for _, s := range samples {
		u := s.obj
		good, bad := strings.HasSuffix(s.file, "-good.yaml"), strings.HasSuffix(s.file, "-bad.yaml")
		if !good && !bad {
			continue
		}
		ns := namespaces[u.GetNamespace()]
		if u.GetNamespace() != "" && ns == nil {
			t.Errorf("%s: %s %s is in namespace %q, which no sample creates", s.file, u.GetKind(), u.GetName(), u.GetNamespace())
			continue
		}
		matched := Match(models, u.GroupVersionKind(), u.GetLabels(), ns, u.GetNamespace() != "")
		if len(matched) == 0 {
			if !relatedKinds[u.GroupVersionKind()] {
				t.Errorf("%s: no catalog model matches %s %s, and no duty reads its kind", s.file, u.GetKind(), u.GetName())
			}
			continue // e.g. a ScheduledBackup: related, not a target
		}
		workloads++
		want := v1alpha1.DutyMet
		if bad {
			want = v1alpha1.DutyUnmet
		}
		res := Evaluate(matched, Input{GVK: u.GroupVersionKind(), Object: u.Object, Namespace: ns, Related: relatedFrom(related, matched, u.GetNamespace())})
		for _, d := range res.Duties {
			checked++
			if d.State != want {
				t.Errorf("%s: %s/%s is %s (%s), want %s", s.file, d.Model, d.Duty.Name, d.State, d.Message, want)
			}
		}
	}
	if checked == 0 {
		t.Fatal("no duty was checked on any sample")
	}
	t.Logf("%d duty evaluations on %d sample workloads", checked, workloads)
}

// relatedFrom returns what the operator lists for a workload: for each
// related source of the matching models, the objects of that kind in the
// workload's namespace or in the source's fixed namespace.
func relatedFrom(byNamespace map[string]map[schema.GroupVersionKind][]map[string]any, matched []*Model, namespace string) map[RelatedSource][]map[string]any {
	out := map[RelatedSource][]map[string]any{}
	for _, m := range matched {
		for _, src := range m.RelatedSources() {
			ns := src.Namespace
			if ns == "" {
				ns = namespace
			}
			out[src] = byNamespace[ns][src.GVK]
		}
	}
	return out
}

type sample struct {
	file string
	obj  *unstructured.Unstructured
}

func catalogModels(t testing.TB) []*Model {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("..", "..", "config", "catalog", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var models []*Model
	for _, path := range files {
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
	return models
}

// sampleObjects reads every object of config/samples/workloads (files may
// hold several documents).
func sampleObjects(t testing.TB) []sample {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("..", "..", "config", "samples", "workloads", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var out []sample
	for _, path := range files {
		if filepath.Base(path) == "kustomization.yaml" {
			continue
		}
		raw, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		for _, doc := range bytes.Split(raw, []byte("\n---")) {
			u := &unstructured.Unstructured{}
			if err := yaml.Unmarshal(doc, &u.Object); err != nil {
				t.Fatalf("%s: %v", path, err)
			}
			if len(u.Object) == 0 {
				continue
			}
			out = append(out, sample{file: filepath.Base(path), obj: u})
		}
	}
	return out
}

func readYAML(t testing.TB, path string, into any) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(raw, into); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

package evaluate_test

import (
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/responsibility-operator/responsibility-operator/internal/evaluate"
	"github.com/responsibility-operator/responsibility-operator/internal/samples"
)

// TestCatalogOnSamples compiles every model of config/catalog and evaluates
// it on the sample workloads: every duty must be Met on a *-good.yaml sample
// and Unmet on a *-bad.yaml one. This is the catalog's contract with the
// real field paths of the projects whose kinds it targets. Related objects
// and namespaces come from the same sample files, by namespace, as the
// operator would read them from its cache.
func TestCatalogOnSamples(t *testing.T) {
	set, err := samples.Load(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	related := map[string]map[schema.GroupVersionKind][]map[string]any{} // namespace → kind → objects
	relatedKinds := map[schema.GroupVersionKind]bool{}
	for _, m := range set.Models {
		for _, src := range m.RelatedSources() {
			relatedKinds[src.GVK] = true
		}
	}
	for _, o := range set.Objects {
		if related[o.GetNamespace()] == nil {
			related[o.GetNamespace()] = map[schema.GroupVersionKind][]map[string]any{}
		}
		related[o.GetNamespace()][o.GroupVersionKind()] = append(related[o.GetNamespace()][o.GroupVersionKind()], o.Object)
	}

	workloads := set.Workloads()
	checked := 0
	for _, w := range workloads {
		if ns := w.GetNamespace(); ns != "" && set.Namespaces[ns] == nil {
			t.Errorf("%s: %s %s is in namespace %q, which no sample creates", w.File, w.GetKind(), w.GetName(), ns)
			continue
		}
		res := evaluate.Evaluate(w.Models, evaluate.Input{
			GVK: w.GroupVersionKind(), Object: w.Object.Object, Namespace: set.Namespaces[w.GetNamespace()],
			Related: relatedFrom(related, w.Models, w.GetNamespace()),
		})
		for _, d := range res.Duties {
			checked++
			if d.State != w.Want {
				t.Errorf("%s: %s/%s is %s (%s), want %s", w.File, d.Model, d.Duty.Name, d.State, d.Message, w.Want)
			}
		}
	}
	// A good or bad sample that no model targets and no duty reads is a
	// sample for a kind the catalog forgot.
	for _, o := range set.Objects {
		sample := strings.HasSuffix(o.File, "-good.yaml") || strings.HasSuffix(o.File, "-bad.yaml")
		if !sample || o.GetKind() == "Namespace" || relatedKinds[o.GroupVersionKind()] {
			continue
		}
		found := false
		for _, w := range workloads {
			if w.File == o.File && w.GetName() == o.GetName() && w.GetNamespace() == o.GetNamespace() {
				found = true
			}
		}
		if !found {
			t.Errorf("%s: no catalog model targets %s %s, and no duty reads its kind", o.File, o.GetKind(), o.GetName())
		}
	}
	if checked == 0 {
		t.Fatal("no duty was checked on any sample")
	}
	t.Logf("%d duty evaluations on %d sample workloads", checked, len(workloads))
}

// relatedFrom returns what the operator lists for a workload: for each
// related source of the matching models, the objects of that kind in the
// workload's namespace or in the source's fixed namespace.
func relatedFrom(byNamespace map[string]map[schema.GroupVersionKind][]map[string]any, matched []*evaluate.Model, namespace string) map[evaluate.RelatedSource][]map[string]any {
	// The lister never fails, so neither does RelatedInput.
	out, _, _ := evaluate.RelatedInput(matched, namespace, func(gvk schema.GroupVersionKind, ns string) ([]map[string]any, bool, error) {
		return byNamespace[ns][gvk], true, nil
	})
	return out
}

// Package benchkit is what the benchmarks share (`make bench`, hack/bench, and
// `make bench-peers`, hack/bench-peers): the generated workloads of three
// kinds, the models that judge them, the oracle of the metadata each must end
// up with (the operator's own evaluation library), and the watch that sees
// when they carry it.
package benchkit

import (
	"fmt"
	"path/filepath"
	"slices"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/responsibility-operator/responsibility-operator/api/v1alpha1"
	"github.com/responsibility-operator/responsibility-operator/internal/samples"
)

// Kind is one of the benchmark's three target kinds: a sample workload
// as the template, the catalog model that targets it, two more duties that
// bring the model to five, and how a "neglected" object breaks one duty.
type Kind struct {
	Short    string
	Template string // sample file of a compliant workload
	// Related is the sample file of the related object a compliant workload
	// needs (one per workload), empty if none.
	Related string
	// Relate points a related object at its workload.
	Relate func(related *unstructured.Unstructured, workload string)
	Model  string // catalog file
	// Duties are the catalog duties the benchmark keeps, so that its models
	// stay the same as the catalog grows; Extra adds two of its own.
	Duties []string
	Extra  []v1alpha1.Duty
	// Evidence is a catalog duty that reads `now`, which only the recheck
	// phase of hack/bench adds; empty for kinds it does not measure.
	Evidence string
	// Neglect breaks exactly one duty of a workload; it returns false when
	// the workload is instead neglected by leaving out its related object.
	Neglect func(obj *unstructured.Unstructured) bool
	// Drift turns a compliant workload into one with one unmet duty, for the
	// latency stream; nil for kinds the stream does not update.
	Drift func(obj *unstructured.Unstructured)
}

// Kinds are the benchmark's three target kinds: CloudNativePG Clusters,
// KubeVirt VirtualMachines and Knative Services.
var Kinds = []Kind{
	{
		Short:    "db",
		Template: "cnpg-cluster-good.yaml",
		Related:  "cnpg-scheduledbackup-good.yaml",
		Relate: func(r *unstructured.Unstructured, w string) {
			_ = unstructured.SetNestedField(r.Object, w, "spec", "cluster", "name")
		},
		Model:    "managed-databases.yaml",
		Duties:   []string{"tls-enforced", "superuser-access-restricted", "backup-scheduled"},
		Evidence: "backup-recent",
		Extra: []v1alpha1.Duty{
			{Name: "high-availability", Rule: "object.kind != 'Cluster' || object.spec.?instances.orValue(1) >= 2", Message: "Run at least two instances"},
			{Name: "storage-class-set", Rule: "object.kind != 'Cluster' || has(object.spec.storage.storageClass)", Message: "Choose a storage class"},
		},
		Neglect: func(*unstructured.Unstructured) bool { return false },
	},
	{
		Short:    "vm",
		Template: "virtualmachine-good.yaml",
		Related:  "virtualmachinesnapshot-good.yaml",
		Relate: func(r *unstructured.Unstructured, w string) {
			_ = unstructured.SetNestedField(r.Object, w, "spec", "source", "name")
		},
		Model:  "vps.yaml",
		Duties: []string{"vm-snapshot-taken", "ssh-keys-managed", "no-inline-passwords"},
		Extra: []v1alpha1.Duty{
			{Name: "run-strategy-set", Rule: "has(object.spec.runStrategy)", Message: "Set spec.runStrategy"},
			{Name: "resource-limits-set", Rule: "has(object.spec.template.spec.domain.resources.limits)", Message: "Set resource limits"},
		},
		Neglect: func(*unstructured.Unstructured) bool { return false },
	},
	{
		Short:    "svc",
		Template: "knative-service-good.yaml",
		Model:    "serverless-containers.yaml",
		Duties:   []string{"resource-limits-set", "image-pinned", "no-literal-secrets"},
		Extra: []v1alpha1.Duty{
			{Name: "non-root", Rule: "object.spec.template.spec.containers.all(c, c.?securityContext.?runAsNonRoot.orValue(false))", Message: "Run containers as non-root"},
			{Name: "min-scale-set", Rule: "'autoscaling.knative.dev/min-scale' in object.spec.template.metadata.?annotations.orValue({})", Message: "Set a minimum scale"},
		},
		Neglect: func(obj *unstructured.Unstructured) bool {
			SetImage(obj, "ghcr.io/example/shop-frontend:latest")
			return true
		},
		Drift: func(obj *unstructured.Unstructured) { SetImage(obj, "ghcr.io/example/shop-frontend:latest") },
	},
}

// SetImage sets the image of every container of a Knative Service.
func SetImage(obj *unstructured.Unstructured, image string) {
	containers, _, _ := unstructured.NestedSlice(obj.Object, "spec", "template", "spec", "containers")
	for _, c := range containers {
		c.(map[string]any)["image"] = image
	}
	_ = unstructured.SetNestedSlice(obj.Object, containers, "spec", "template", "spec", "containers")
}

// Workload is one benchmark target object and what it should end up with.
type Workload struct {
	Kind      *Kind
	Obj       *unstructured.Unstructured
	Related   *unstructured.Unstructured // nil when neglected or not needed
	Compliant bool
}

// Key identifies the workload.
func (w *Workload) Key() ObjectKey {
	return ObjectKey{GVK: w.Obj.GroupVersionKind(), Namespace: w.Obj.GetNamespace(), Name: w.Obj.GetName()}
}

// ObjectKey identifies a workload by kind, namespace and name.
type ObjectKey struct {
	GVK             schema.GroupVersionKind
	Namespace, Name string
}

func (k ObjectKey) String() string {
	return fmt.Sprintf("%s %s/%s", k.GVK.Kind, k.Namespace, k.Name)
}

// NamespaceName is the name of the benchmark's i-th namespace.
func NamespaceName(i int) string { return fmt.Sprintf("bench-%02d", i) }

// Generate builds n workloads, spread round-robin over the kinds and the
// namespaces; every tenth one is neglected (one unmet duty).
func Generate(root string, n, namespaces int) ([]*Workload, error) {
	dir := filepath.Join(root, "config", "samples", "workloads")
	templates := make([]*unstructured.Unstructured, len(Kinds))
	relatedTemplates := make([]*unstructured.Unstructured, len(Kinds))
	for i := range Kinds {
		t, err := readOne(filepath.Join(dir, Kinds[i].Template))
		if err != nil {
			return nil, err
		}
		templates[i] = t
		if Kinds[i].Related != "" {
			if relatedTemplates[i], err = readOne(filepath.Join(dir, Kinds[i].Related)); err != nil {
				return nil, err
			}
		}
	}
	out := make([]*Workload, n)
	for i := range n {
		k := i % len(Kinds)
		spec := &Kinds[k]
		obj := templates[k].DeepCopy()
		name := fmt.Sprintf("%s-%05d", spec.Short, i)
		obj.SetName(name)
		obj.SetNamespace(NamespaceName((i / len(Kinds)) % namespaces))
		obj.SetLabels(map[string]string{"app.kubernetes.io/name": name, "bench.responsibility.io/index": fmt.Sprint(i)})
		w := &Workload{Kind: spec, Obj: obj, Compliant: i%10 != 9}
		needsRelated := relatedTemplates[k] != nil
		if !w.Compliant && !spec.Neglect(obj) {
			needsRelated = false // neglected by leaving out its related object
		}
		if needsRelated {
			r := relatedTemplates[k].DeepCopy()
			r.SetName(name + "-backup")
			r.SetNamespace(obj.GetNamespace())
			spec.Relate(r, name)
			w.Related = r
		}
		out[i] = w
	}
	return out, nil
}

func readOne(path string) (*unstructured.Unstructured, error) {
	objs, err := samples.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if len(objs) != 1 {
		return nil, fmt.Errorf("%s: want one object, found %d", path, len(objs))
	}
	u := objs[0]
	u.SetAnnotations(nil)
	return u, nil
}

// BenchModels are the catalog models of the three kinds, renamed, each with
// the duties its kind keeps and two more, so that every model has five.
func BenchModels(root string) ([]*v1alpha1.ResponsibilityModel, error) {
	out := make([]*v1alpha1.ResponsibilityModel, 0, len(Kinds))
	for i := range Kinds {
		rm, err := CatalogModel(root, Kinds[i].Model)
		if err != nil {
			return nil, err
		}
		rm.Name = "bench-" + rm.Name
		for a := range rm.Spec.Areas {
			rm.Spec.Areas[a].Duties = slices.DeleteFunc(rm.Spec.Areas[a].Duties, func(d v1alpha1.Duty) bool {
				return !slices.Contains(Kinds[i].Duties, d.Name)
			})
		}
		last := &rm.Spec.Areas[len(rm.Spec.Areas)-1]
		last.Duties = append(last.Duties, Kinds[i].Extra...)
		if got := countDuties(rm); got != 5 {
			return nil, fmt.Errorf("model %s has %d duties, the benchmark wants 5", rm.Name, got)
		}
		out = append(out, rm)
	}
	return out, nil
}

// CatalogModel reads a model of config/catalog.
func CatalogModel(root, file string) (*v1alpha1.ResponsibilityModel, error) {
	path := filepath.Join(root, "config", "catalog", file)
	objs, err := samples.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if len(objs) != 1 {
		return nil, fmt.Errorf("%s: want one model, found %d", path, len(objs))
	}
	rm := &v1alpha1.ResponsibilityModel{}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(objs[0].Object, rm); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return rm, nil
}

func countDuties(rm *v1alpha1.ResponsibilityModel) int {
	n := 0
	for _, a := range rm.Spec.Areas {
		n += len(a.Duties)
	}
	return n
}

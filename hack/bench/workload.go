package main

import (
	"fmt"
	"path/filepath"
	"slices"
	"sort"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/responsibility-operator/responsibility-operator/api/v1alpha1"
	"github.com/responsibility-operator/responsibility-operator/internal/evaluate"
	"github.com/responsibility-operator/responsibility-operator/internal/samples"
)

// kindSpec is one of the benchmark's three target kinds: a sample workload
// as the template, the catalog model that targets it, two more duties that
// bring the model to five, and how a "neglected" object breaks one duty.
type kindSpec struct {
	short    string
	template string // sample file of a compliant workload
	// related is the sample file of the related object a compliant workload
	// needs (one per workload), empty if none.
	related string
	// relate points a related object at its workload.
	relate func(related *unstructured.Unstructured, workload string)
	model  string // catalog file
	// duties are the catalog duties the benchmark keeps, so that its models
	// stay the same as the catalog grows; extra adds two of its own.
	duties []string
	extra  []v1alpha1.Duty
	// evidence is a catalog duty that reads `now`, which only the recheck
	// phase adds (recheck.go); empty for kinds it does not measure.
	evidence string
	// neglect breaks exactly one duty of a workload; it returns false when
	// the workload is instead neglected by leaving out its related object.
	neglect func(obj *unstructured.Unstructured) bool
	// drift turns a compliant workload into one with one unmet duty, for the
	// latency stream; nil for kinds the stream does not update.
	drift func(obj *unstructured.Unstructured)
}

var kinds = []kindSpec{
	{
		short:    "db",
		template: "cnpg-cluster-good.yaml",
		related:  "cnpg-scheduledbackup-good.yaml",
		relate: func(r *unstructured.Unstructured, w string) {
			_ = unstructured.SetNestedField(r.Object, w, "spec", "cluster", "name")
		},
		model:    "managed-databases.yaml",
		duties:   []string{"tls-enforced", "superuser-access-restricted", "backup-scheduled"},
		evidence: "backup-recent",
		extra: []v1alpha1.Duty{
			{Name: "high-availability", Rule: "object.kind != 'Cluster' || object.spec.?instances.orValue(1) >= 2", Message: "Run at least two instances"},
			{Name: "storage-class-set", Rule: "object.kind != 'Cluster' || has(object.spec.storage.storageClass)", Message: "Choose a storage class"},
		},
		neglect: func(*unstructured.Unstructured) bool { return false },
	},
	{
		short:    "vm",
		template: "virtualmachine-good.yaml",
		related:  "virtualmachinesnapshot-good.yaml",
		relate: func(r *unstructured.Unstructured, w string) {
			_ = unstructured.SetNestedField(r.Object, w, "spec", "source", "name")
		},
		model:  "vps.yaml",
		duties: []string{"vm-snapshot-taken", "ssh-keys-managed", "no-inline-passwords"},
		extra: []v1alpha1.Duty{
			{Name: "run-strategy-set", Rule: "has(object.spec.runStrategy)", Message: "Set spec.runStrategy"},
			{Name: "resource-limits-set", Rule: "has(object.spec.template.spec.domain.resources.limits)", Message: "Set resource limits"},
		},
		neglect: func(*unstructured.Unstructured) bool { return false },
	},
	{
		short:    "svc",
		template: "knative-service-good.yaml",
		model:    "serverless-containers.yaml",
		duties:   []string{"resource-limits-set", "image-pinned", "no-literal-secrets"},
		extra: []v1alpha1.Duty{
			{Name: "non-root", Rule: "object.spec.template.spec.containers.all(c, c.?securityContext.?runAsNonRoot.orValue(false))", Message: "Run containers as non-root"},
			{Name: "min-scale-set", Rule: "'autoscaling.knative.dev/min-scale' in object.spec.template.metadata.?annotations.orValue({})", Message: "Set a minimum scale"},
		},
		neglect: func(obj *unstructured.Unstructured) bool {
			setImage(obj, "ghcr.io/example/shop-frontend:latest")
			return true
		},
		drift: func(obj *unstructured.Unstructured) { setImage(obj, "ghcr.io/example/shop-frontend:latest") },
	},
}

func setImage(obj *unstructured.Unstructured, image string) {
	containers, _, _ := unstructured.NestedSlice(obj.Object, "spec", "template", "spec", "containers")
	for _, c := range containers {
		c.(map[string]any)["image"] = image
	}
	_ = unstructured.SetNestedSlice(obj.Object, containers, "spec", "template", "spec", "containers")
}

// workload is one benchmark target object and what it should end up with.
type workload struct {
	kind      *kindSpec
	obj       *unstructured.Unstructured
	related   *unstructured.Unstructured // nil when neglected or not needed
	compliant bool
}

func (w *workload) key() objectKey {
	return objectKey{gvk: w.obj.GroupVersionKind(), namespace: w.obj.GetNamespace(), name: w.obj.GetName()}
}

type objectKey struct {
	gvk             schema.GroupVersionKind
	namespace, name string
}

func (k objectKey) String() string {
	return fmt.Sprintf("%s %s/%s", k.gvk.Kind, k.namespace, k.name)
}

func namespaceName(i int) string { return fmt.Sprintf("bench-%02d", i) }

// generate builds n workloads, spread round-robin over the kinds and the
// namespaces; every tenth one is neglected (one unmet duty).
func generate(root string, n, namespaces int) ([]*workload, error) {
	dir := filepath.Join(root, "config", "samples", "workloads")
	templates := make([]*unstructured.Unstructured, len(kinds))
	relatedTemplates := make([]*unstructured.Unstructured, len(kinds))
	for i := range kinds {
		t, err := readOne(filepath.Join(dir, kinds[i].template))
		if err != nil {
			return nil, err
		}
		templates[i] = t
		if kinds[i].related != "" {
			if relatedTemplates[i], err = readOne(filepath.Join(dir, kinds[i].related)); err != nil {
				return nil, err
			}
		}
	}
	out := make([]*workload, n)
	for i := range n {
		k := i % len(kinds)
		spec := &kinds[k]
		obj := templates[k].DeepCopy()
		name := fmt.Sprintf("%s-%05d", spec.short, i)
		obj.SetName(name)
		obj.SetNamespace(namespaceName((i / len(kinds)) % namespaces))
		obj.SetLabels(map[string]string{"app.kubernetes.io/name": name, "bench.responsibility.io/index": fmt.Sprint(i)})
		w := &workload{kind: spec, obj: obj, compliant: i%10 != 9}
		needsRelated := relatedTemplates[k] != nil
		if !w.compliant && !spec.neglect(obj) {
			needsRelated = false // neglected by leaving out its related object
		}
		if needsRelated {
			r := relatedTemplates[k].DeepCopy()
			r.SetName(name + "-backup")
			r.SetNamespace(obj.GetNamespace())
			spec.relate(r, name)
			w.related = r
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

// benchModels are the catalog models of the three kinds, renamed, each with
// the duties its kind keeps and two more, so that every model has five.
func benchModels(root string) ([]*v1alpha1.ResponsibilityModel, error) {
	out := make([]*v1alpha1.ResponsibilityModel, 0, len(kinds))
	for i := range kinds {
		rm, err := catalogModel(root, kinds[i].model)
		if err != nil {
			return nil, err
		}
		rm.Name = "bench-" + rm.Name
		for a := range rm.Spec.Areas {
			rm.Spec.Areas[a].Duties = slices.DeleteFunc(rm.Spec.Areas[a].Duties, func(d v1alpha1.Duty) bool {
				return !slices.Contains(kinds[i].duties, d.Name)
			})
		}
		last := &rm.Spec.Areas[len(rm.Spec.Areas)-1]
		last.Duties = append(last.Duties, kinds[i].extra...)
		if got := countDuties(rm); got != 5 {
			return nil, fmt.Errorf("model %s has %d duties, the benchmark wants 5", rm.Name, got)
		}
		out = append(out, rm)
	}
	return out, nil
}

// catalogModel reads a model of config/catalog.
func catalogModel(root, file string) (*v1alpha1.ResponsibilityModel, error) {
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

// oracle computes, with the operator's own evaluation library, the metadata
// each workload must end up with: the benchmark's definition of "converged".
type oracle struct {
	models     []*evaluate.Model
	namespaces map[string]map[string]any
	// related lists relatedObjects, as the operator's cache does.
	related        evaluate.RelatedLister
	relatedObjects []*unstructured.Unstructured
}

func newOracle(models []*v1alpha1.ResponsibilityModel, namespaces map[string]map[string]any, workloads []*workload) (*oracle, error) {
	o := &oracle{namespaces: namespaces}
	if err := o.setModels(models); err != nil {
		return nil, err
	}
	var related []*unstructured.Unstructured
	for _, w := range workloads {
		if w.related != nil {
			related = append(related, w.related)
		}
	}
	o.addRelated(related)
	return o, nil
}

// with returns an oracle for other models over the same objects.
func (o *oracle) with(models []*v1alpha1.ResponsibilityModel) (*oracle, error) {
	cp := &oracle{namespaces: o.namespaces, related: o.related, relatedObjects: o.relatedObjects}
	if err := cp.setModels(models); err != nil {
		return nil, err
	}
	return cp, nil
}

func (o *oracle) setModels(models []*v1alpha1.ResponsibilityModel) error {
	o.models = o.models[:0]
	for _, rm := range models {
		m, err := evaluate.Compile(rm)
		if err != nil {
			return fmt.Errorf("compile %s: %w", rm.Name, err)
		}
		o.models = append(o.models, m)
	}
	sort.Slice(o.models, func(i, j int) bool { return o.models[i].Name < o.models[j].Name })
	return nil
}

// want returns the digest of the metadata the operator must write.
func (o *oracle) want(obj *unstructured.Unstructured) uint64 {
	return evaluate.OwnedDigest(o.desired(obj))
}

// desired returns the annotations and labels the operator must write.
func (o *oracle) desired(obj *unstructured.Unstructured) (annotations, labels map[string]string) {
	// The lister never fails and is always complete.
	res, _, _ := evaluate.EvaluateWorkload(o.models, obj, o.namespaces[obj.GetNamespace()], o.related, nil, time.Now())
	return res.Annotations, res.Labels
}

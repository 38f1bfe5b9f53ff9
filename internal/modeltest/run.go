package modeltest

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	jsonpatch "github.com/evanphx/json-patch/v5"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utiljson "k8s.io/apimachinery/pkg/util/json"

	"github.com/responsibility-operator/responsibility-operator/api/v1alpha1"
	"github.com/responsibility-operator/responsibility-operator/internal/evaluate"
	"github.com/responsibility-operator/responsibility-operator/internal/samples"
)

// Options change how tests run.
type Options struct {
	// Namespaced tells whether objects of a kind are namespaced. Without it,
	// every kind is namespaced but the cluster-scoped kinds of Kubernetes and
	// of the projects the catalog reads.
	Namespaced func(schema.GroupVersionKind) bool
	// Store, when set, is given the objects of a test once namespaces and
	// patches are applied, and returns the objects to evaluate. The corpus
	// test stores them in a real API server and returns what it read back:
	// defaulted and validated by the full upstream CRDs.
	Store func(t *Test, objects []*unstructured.Unstructured) ([]*unstructured.Unstructured, error)
}

// ObjectRef names one object.
type ObjectRef struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Namespace  string `json:"namespace,omitempty"`
	Name       string `json:"name"`
}

// RefOf names an object.
func RefOf(u *unstructured.Unstructured) ObjectRef {
	return ObjectRef{APIVersion: u.GetAPIVersion(), Kind: u.GetKind(), Namespace: u.GetNamespace(), Name: u.GetName()}
}

// String is "Kind namespace/name".
func (r ObjectRef) String() string {
	if r.Namespace == "" {
		return r.Kind + " " + r.Name
	}
	return r.Kind + " " + r.Namespace + "/" + r.Name
}

// Verdict is one duty of one model on one object: what the test expects and
// what the models said.
type Verdict struct {
	Test   string    `json:"test"`
	Object ObjectRef `json:"object"`
	Model  string    `json:"model"`
	Duty   string    `json:"duty"`
	// Want is the expected state; empty for a verdict no result names.
	Want        v1alpha1.DutyState `json:"want,omitempty"`
	WantMessage string             `json:"wantMessage,omitempty"`
	// Got is the state the models gave; empty when the object or duty was
	// not evaluated (see Problem).
	Got      v1alpha1.DutyState `json:"got,omitempty"`
	Message  string             `json:"message,omitempty"`
	Citation string             `json:"citation,omitempty"`
	// Problem says why the verdict failed; empty when it passed.
	Problem string `json:"problem,omitempty"`
}

// Passed is true for an expected verdict the models met.
func (v Verdict) Passed() bool { return v.Want != "" && v.Problem == "" }

// TestError is a test that could not run: a model that does not compile, a
// resource file that does not parse, a result that names nothing.
type TestError struct {
	Test  string `json:"test"`
	Error string `json:"error"`
}

// Report is the outcome of a run.
type Report struct {
	Tests int `json:"tests"`
	// Verdicts are the expected results, in the order of the tests.
	Verdicts []Verdict `json:"verdicts"`
	// Unchecked are the verdicts of the models that no result names.
	Unchecked []Verdict   `json:"unchecked,omitempty"`
	Errors    []TestError `json:"errors,omitempty"`
}

// Failed returns the verdicts that did not pass.
func (r *Report) Failed() []Verdict {
	var out []Verdict
	for _, v := range r.Verdicts {
		if !v.Passed() {
			out = append(out, v)
		}
	}
	return out
}

// Problems describes, one line each, the tests that could not run and the
// results that failed, and with requireAll the verdicts no result names.
func (r *Report) Problems(requireAll bool) []string {
	var out []string
	for _, e := range r.Errors {
		out = append(out, fmt.Sprintf("%s: cannot run: %s", e.Test, e.Error))
	}
	for _, v := range r.Failed() {
		out = append(out, fmt.Sprintf("%s: %s %s/%s: %s: %s", v.Test, v.Object, v.Model, v.Duty, v.Problem, v.Message))
	}
	if requireAll {
		for _, v := range r.Unchecked {
			out = append(out, fmt.Sprintf("%s: %s %s/%s is %s, and no result names it", v.Test, v.Object, v.Model, v.Duty, v.Got))
		}
	}
	return out
}

// OK is true when every test ran and every result passed.
func (r *Report) OK() bool { return len(r.Errors) == 0 && len(r.Failed()) == 0 }

// Run runs the tests.
func Run(tests []*Test, opts Options) *Report {
	r := &Report{Tests: len(tests), Verdicts: []Verdict{}}
	models := modelCache{}
	for _, t := range tests {
		verdicts, unchecked, err := runTest(t, opts, models)
		if err != nil {
			r.Errors = append(r.Errors, TestError{Test: t.Name(), Error: err.Error()})
			continue
		}
		r.Verdicts = append(r.Verdicts, verdicts...)
		r.Unchecked = append(r.Unchecked, unchecked...)
	}
	return r
}

// Scenario is a test's models and objects, ready to evaluate.
type Scenario struct {
	Models  []*evaluate.Model
	Objects []*unstructured.Unstructured
	// Now is the time of the evaluation.
	Now time.Time
}

// Prepare loads a test's models and resources, gives namespaced resources
// the test's namespace and applies the patches.
func Prepare(t *Test, opts Options) (*Scenario, error) {
	return prepare(t, opts, modelCache{})
}

func prepare(t *Test, opts Options, models modelCache) (*Scenario, error) {
	dir := filepath.Dir(t.File)
	s := &Scenario{Now: time.Now()}
	if t.Now != "" {
		now, err := time.Parse(time.RFC3339, t.Now)
		if err != nil {
			return nil, fmt.Errorf("now: %w", err)
		}
		s.Now = now
	}
	for _, p := range t.Models {
		ms, err := models.load(resolve(dir, p))
		if err != nil {
			return nil, err
		}
		s.Models = append(s.Models, ms...)
	}
	namespaced := opts.Namespaced
	if namespaced == nil {
		namespaced = guessNamespaced
	}
	seen := map[ObjectRef]string{}
	for _, p := range t.Resources {
		objs, err := readObjects(resolve(dir, p))
		if err != nil {
			return nil, err
		}
		for _, o := range objs {
			if o.Object.GetAPIVersion() == v1alpha1.GroupVersion.String() || o.Object.GetAPIVersion() == APIVersion {
				return nil, fmt.Errorf("%s: %s %s is a model or a test: list it under models, not resources", o.File, o.Object.GetKind(), o.Object.GetName())
			}
			if o.Object.GetNamespace() == "" && namespaced(o.Object.GroupVersionKind()) {
				o.Object.SetNamespace(t.namespace())
			}
			ref := RefOf(o.Object)
			if prev, dup := seen[ref]; dup {
				return nil, fmt.Errorf("%s: %s is already in %s", o.File, ref, prev)
			}
			seen[ref] = o.File
			s.Objects = append(s.Objects, o.Object)
		}
	}
	for i, p := range t.Patches {
		obj, err := s.find(t, p.ObjectSelector, p.Name)
		if err != nil {
			return nil, fmt.Errorf("patches[%d]: %w", i, err)
		}
		if err := mergePatch(obj, p.Patch); err != nil {
			return nil, fmt.Errorf("patches[%d]: %s: %w", i, RefOf(obj), err)
		}
	}
	if opts.Store != nil {
		stored, err := opts.Store(t, s.Objects)
		if err != nil {
			return nil, err
		}
		s.Objects = stored
	}
	return s, nil
}

// resolve makes a path of a test file relative to the file's directory.
func resolve(dir, path string) string {
	if filepath.IsAbs(path) {
		return path
	}
	return filepath.Join(dir, path)
}

// find returns the one object a selector names with name, or an error saying
// why there is none or more than one.
func (s *Scenario) find(t *Test, sel ObjectSelector, name string) (*unstructured.Unstructured, error) {
	var out []*unstructured.Unstructured
	for _, o := range s.Objects {
		if o.GetKind() != sel.Kind || o.GetName() != name || (sel.APIVersion != "" && o.GetAPIVersion() != sel.APIVersion) {
			continue
		}
		ns := sel.Namespace
		if ns == "" && o.GetNamespace() != "" {
			ns = t.namespace()
		}
		if o.GetNamespace() == ns {
			out = append(out, o)
		}
	}
	what := sel.Kind + " " + name
	if sel.APIVersion != "" {
		what = sel.APIVersion + " " + what
	}
	switch {
	case len(out) == 0:
		return nil, fmt.Errorf("no %s among the resources", what)
	case len(out) > 1:
		return nil, fmt.Errorf("%d objects are %s: give apiVersion", len(out), what)
	}
	return out[0], nil
}

func mergePatch(u *unstructured.Unstructured, patch map[string]any) error {
	doc, err := json.Marshal(u.Object)
	if err != nil {
		return fmt.Errorf("encode: %w", err)
	}
	p, err := json.Marshal(patch)
	if err != nil {
		return fmt.Errorf("encode patch: %w", err)
	}
	merged, err := jsonpatch.MergePatch(doc, p)
	if err != nil {
		return fmt.Errorf("merge patch: %w", err)
	}
	obj := map[string]any{}
	if err := utiljson.Unmarshal(merged, &obj); err != nil {
		return fmt.Errorf("decode patched: %w", err)
	}
	u.Object = obj
	return nil
}

// Evaluate evaluates the models on every object of the scenario they
// target, as the operator would with these objects in its cache: the
// object's Namespace from the resources (a bare one when none is there),
// and its related objects from the resources of its namespace.
func (s *Scenario) Evaluate() map[ObjectRef]evaluate.Result {
	namespaces := map[string]map[string]any{}
	for _, o := range s.Objects {
		if isNamespace(o.GroupVersionKind()) {
			namespaces[o.GetName()] = o.Object
		}
	}
	list := evaluate.ListerOf(s.Objects)
	out := map[ObjectRef]evaluate.Result{}
	for _, o := range s.Objects {
		ns := o.GetNamespace()
		nsObj := namespaces[ns]
		if ns != "" && nsObj == nil {
			nsObj = map[string]any{"apiVersion": "v1", "kind": kindNamespace, "metadata": map[string]any{"name": ns}}
		}
		// The lister never fails and is always complete.
		res, _, _ := evaluate.EvaluateWorkload(s.Models, o, nsObj, list, nil, s.Now)
		if len(res.Models) > 0 {
			out[RefOf(o)] = res
		}
	}
	return out
}

type verdictKey struct {
	object      ObjectRef
	model, duty string
}

func runTest(t *Test, opts Options, models modelCache) (verdicts, unchecked []Verdict, err error) {
	s, err := prepare(t, opts, models)
	if err != nil {
		return nil, nil, err
	}
	results := s.Evaluate()
	got := map[verdictKey]evaluate.DutyResult{}
	for ref, res := range results {
		for _, d := range res.Duties {
			got[verdictKey{ref, d.Model, d.Duty.Name}] = d
		}
	}
	var problems []string
	checked := map[verdictKey]bool{}
	for i, r := range t.Results {
		for _, name := range r.names() {
			obj, err := s.find(t, r.ObjectSelector, name)
			if err != nil {
				problems = append(problems, fmt.Sprintf("results[%d]: %v", i, err))
				continue
			}
			ref := RefOf(obj)
			key := verdictKey{ref, r.Model, r.Duty}
			if checked[key] {
				problems = append(problems, fmt.Sprintf("results[%d]: a second result for %s %s/%s", i, ref, r.Model, r.Duty))
				continue
			}
			checked[key] = true
			v := Verdict{Test: t.Name(), Object: ref, Model: r.Model, Duty: r.Duty, Want: r.State, WantMessage: r.Message, Citation: r.Citation}
			d, ok := got[key]
			switch {
			case ok:
				v.Got, v.Message = d.State, d.Message
				if d.State != r.State {
					v.Problem = fmt.Sprintf("is %s, want %s", d.State, r.State)
				} else if !strings.Contains(d.Message, r.Message) {
					v.Problem = fmt.Sprintf("message does not contain %q", r.Message)
				}
			default:
				v.Problem = notEvaluated(s, results[ref], ref, r.Model, r.Duty)
			}
			verdicts = append(verdicts, v)
		}
	}
	if len(problems) > 0 {
		return nil, nil, errors.New(strings.Join(problems, "; "))
	}
	for ref, res := range results {
		for _, d := range res.Duties {
			if !checked[verdictKey{ref, d.Model, d.Duty.Name}] {
				unchecked = append(unchecked, Verdict{Test: t.Name(), Object: ref, Model: d.Model, Duty: d.Duty.Name, Got: d.State, Message: d.Message})
			}
		}
	}
	sortVerdicts(unchecked)
	return verdicts, unchecked, nil
}

// notEvaluated says why a result's duty has no state on its object.
func notEvaluated(s *Scenario, res evaluate.Result, ref ObjectRef, model, duty string) string {
	var m *evaluate.Model
	for _, candidate := range s.Models {
		if candidate.Name == model {
			m = candidate
		}
	}
	if m == nil {
		return fmt.Sprintf("no model %s is loaded", model)
	}
	found := false
	for _, d := range m.Duties {
		found = found || d.Name == duty
	}
	if !found {
		return fmt.Sprintf("model %s has no duty %s", model, duty)
	}
	for _, matched := range res.Models {
		if matched.Name == model {
			return "not evaluated" // unreachable: a matching model evaluates every duty
		}
	}
	return fmt.Sprintf("model %s does not target %s (kind, labels or namespace labels)", model, ref)
}

func sortVerdicts(vs []Verdict) {
	sort.SliceStable(vs, func(i, j int) bool {
		a, b := vs[i], vs[j]
		if a.Object != b.Object {
			return a.Object.String() < b.Object.String()
		}
		if a.Model != b.Model {
			return a.Model < b.Model
		}
		return a.Duty < b.Duty
	})
}

// modelCache compiles each model file once per run.
type modelCache map[string][]*evaluate.Model

func (c modelCache) load(path string) ([]*evaluate.Model, error) {
	if ms, ok := c[path]; ok {
		return ms, nil
	}
	objs, err := readObjects(path)
	if err != nil {
		return nil, err
	}
	var out []*evaluate.Model
	for _, o := range objs {
		if o.Object.GetAPIVersion() != v1alpha1.GroupVersion.String() || o.Object.GetKind() != "ResponsibilityModel" {
			return nil, fmt.Errorf("%s: %s %s is not a ResponsibilityModel: list it under resources", o.File, o.Object.GetKind(), o.Object.GetName())
		}
		rm := &v1alpha1.ResponsibilityModel{}
		if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(o.Object.Object, rm, true); err != nil {
			return nil, fmt.Errorf("%s: model %s: %w", o.File, o.Object.GetName(), err)
		}
		m, err := evaluate.Compile(rm)
		if err != nil {
			return nil, fmt.Errorf("%s: %w (kubectl responsibility lint shows every problem)", o.File, err)
		}
		out = append(out, m)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no ResponsibilityModel", path)
	}
	c[path] = out
	return out, nil
}

type fileObject struct {
	File   string
	Object *unstructured.Unstructured
}

// readObjects reads the YAML documents of a file, or of every *.yaml file of
// a directory but kustomization.yaml, in name order.
func readObjects(path string) ([]fileObject, error) {
	info, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("read: %w", err)
	}
	files := []string{path}
	if info.IsDir() {
		if files, err = filepath.Glob(filepath.Join(path, "*.yaml")); err != nil {
			return nil, fmt.Errorf("list %s: %w", path, err)
		}
	}
	var out []fileObject
	for _, f := range files {
		if info.IsDir() && filepath.Base(f) == "kustomization.yaml" {
			continue
		}
		docs, err := samples.ReadFile(f)
		if err != nil {
			return nil, err
		}
		for _, u := range docs {
			if u.GetKind() == "" || u.GetAPIVersion() == "" || u.GetName() == "" {
				return nil, fmt.Errorf("%s: a document without apiVersion, kind or metadata.name", f)
			}
			out = append(out, fileObject{File: f, Object: u})
		}
	}
	return out, nil
}

// clusterScoped are the cluster-scoped kinds a test's resources are likely
// to hold: of Kubernetes and of the projects the catalog reads. Every other
// kind is taken for namespaced; `kubectl responsibility test` has no cluster
// to ask.
var clusterScoped = map[schema.GroupKind]bool{
	{Kind: kindNamespace}:                                                          true,
	{Kind: "Node"}:                                                                 true,
	{Kind: "PersistentVolume"}:                                                     true,
	{Group: "storage.k8s.io", Kind: "StorageClass"}:                                true,
	{Group: "rbac.authorization.k8s.io", Kind: "ClusterRole"}:                      true,
	{Group: "rbac.authorization.k8s.io", Kind: "ClusterRoleBinding"}:               true,
	{Group: "apiextensions.k8s.io", Kind: "CustomResourceDefinition"}:              true,
	{Group: "networking.k8s.io", Kind: "IngressClass"}:                             true,
	{Group: "scheduling.k8s.io", Kind: "PriorityClass"}:                            true,
	{Group: "snapshot.storage.k8s.io", Kind: "VolumeSnapshotClass"}:                true,
	{Group: "snapshot.storage.k8s.io", Kind: "VolumeSnapshotContent"}:              true,
	{Group: "responsibility.io", Kind: "ResponsibilityModel"}:                      true,
	{Group: "postgresql.cnpg.io", Kind: "ClusterImageCatalog"}:                     true,
	{Group: "objectbucket.io", Kind: "ObjectBucket"}:                               true,
	{Group: "instancetype.kubevirt.io", Kind: "VirtualMachineClusterInstancetype"}: true,
	{Group: "instancetype.kubevirt.io", Kind: "VirtualMachineClusterPreference"}:   true,
	{Group: "cert-manager.io", Kind: "ClusterIssuer"}:                              true,
}

const kindNamespace = "Namespace"

func isNamespace(gvk schema.GroupVersionKind) bool {
	return gvk.Group == "" && gvk.Kind == kindNamespace
}

func guessNamespaced(gvk schema.GroupVersionKind) bool {
	return !clusterScoped[gvk.GroupKind()]
}

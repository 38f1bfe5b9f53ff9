// Package samples reads the catalog (config/catalog) and the sample
// workloads (config/samples/workloads) the way the catalog test, the e2e
// test and `make demo` need them: which sample each model targets, and what
// state its duties must reach. A *-good.yaml sample meets every duty of every
// model that targets it, a *-bad.yaml sample none.
package samples

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/responsibility-operator/responsibility-operator/api/v1alpha1"
	"github.com/responsibility-operator/responsibility-operator/internal/evaluate"
)

// Object is one YAML document of a sample file.
type Object struct {
	File string
	*unstructured.Unstructured
}

// Workload is a sample some catalog model targets.
type Workload struct {
	Object
	// Want is the state every duty of Models must reach: Met for a
	// *-good.yaml sample, Unmet for a *-bad.yaml one.
	Want v1alpha1.DutyState
	// Models are the catalog models that target it, sorted by name.
	Models []*evaluate.Model
}

// Status is the value of the status label the workload must reach.
func (w Workload) Status() string {
	if w.Want == v1alpha1.DutyUnmet {
		return v1alpha1.StatusUnmet
	}
	return v1alpha1.StatusMet
}

// ExpectedDuties lists model/duty=state for every duty of the models that
// target the workload, sorted: what its duties annotation must say once
// the operator has evaluated it.
func (w Workload) ExpectedDuties() []string {
	var out []string
	for _, m := range w.Models {
		for _, d := range m.Duties {
			out = append(out, fmt.Sprintf("%s/%s=%s", m.Name, d.Name, w.Want))
		}
	}
	slices.Sort(out)
	return out
}

// DutyStates reads model/duty=state, sorted, from the duties annotation of
// the workload as stored.
func DutyStates(ctx context.Context, c client.Reader, w Workload) ([]string, error) {
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(w.GroupVersionKind())
	if err := c.Get(ctx, client.ObjectKeyFromObject(w), u); err != nil {
		return nil, fmt.Errorf("get %s %s/%s: %w", w.GetKind(), w.GetNamespace(), w.GetName(), err)
	}
	var out []string
	for model, duties := range evaluate.ParseDuties(u.GetAnnotations()[v1alpha1.AnnotationDuties]) {
		for duty, a := range duties {
			out = append(out, fmt.Sprintf("%s/%s=%s", model, duty, a.State))
		}
	}
	slices.Sort(out)
	return out, nil
}

// Set is the compiled catalog and every sample object.
type Set struct {
	Models     []*evaluate.Model
	Objects    []Object
	Namespaces map[string]map[string]any
}

// Epoch is the sample epoch: the samples' evidence (a backup's completion, a
// snapshot's creation, a certificate's expiry) is dated relative to it, and
// the catalog's own test (config/catalog/tests) evaluates them at this
// instant. Load moves those times by the time elapsed since, so that on a
// live cluster, whose rules read the real `now`, the evidence is exactly as
// recent as in the test.
var Epoch = time.Date(2026, time.January, 1, 0, 0, 0, 0, time.UTC)

// Load reads and compiles config/catalog and reads config/samples/workloads
// below the repository root, with every time in a sample's status moved by
// the time elapsed since Epoch (see Shift).
func Load(root string) (*Set, error) {
	return LoadAt(root, time.Now())
}

// LoadAt is Load for evaluation at now: the samples' status times are moved
// by now - Epoch, whole seconds.
func LoadAt(root string, now time.Time) (*Set, error) {
	set := &Set{Namespaces: map[string]map[string]any{}}
	catalog, err := ReadDir(filepath.Join(root, "config", "catalog"))
	if err != nil {
		return nil, err
	}
	for _, o := range catalog {
		rm := &v1alpha1.ResponsibilityModel{}
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, rm); err != nil {
			return nil, fmt.Errorf("%s: %w", o.File, err)
		}
		m, err := evaluate.Compile(rm)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", o.File, err)
		}
		set.Models = append(set.Models, m)
	}
	if len(set.Models) == 0 {
		return nil, errors.New("no model in config/catalog")
	}
	if set.Objects, err = ReadDir(filepath.Join(root, "config", "samples", "workloads")); err != nil {
		return nil, err
	}
	by := now.Sub(Epoch).Truncate(time.Second)
	for _, o := range set.Objects {
		Shift(o.Object, by)
	}
	for _, o := range set.Objects {
		if o.GetKind() == "Namespace" && o.GetAPIVersion() == "v1" {
			set.Namespaces[o.GetName()] = o.Object
		}
	}
	return set, nil
}

// Shift moves every RFC 3339 time in obj's status by d, in place, keeping
// each value's precision (seconds, or fractions when it had them). Other
// strings, and everything outside status, are left alone.
func Shift(obj map[string]any, d time.Duration) {
	if status, ok := obj["status"]; ok && d != 0 {
		obj["status"] = shift(status, d)
	}
}

func shift(v any, d time.Duration) any {
	switch v := v.(type) {
	case map[string]any:
		for k, e := range v {
			v[k] = shift(e, d)
		}
	case []any:
		for i, e := range v {
			v[i] = shift(e, d)
		}
	case string:
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			return v
		}
		layout := time.RFC3339
		if strings.Contains(v, ".") {
			layout = time.RFC3339Nano
		}
		return t.Add(d).UTC().Format(layout)
	}
	return v
}

// Unstructured returns every sample object.
func (s *Set) Unstructured() []*unstructured.Unstructured {
	out := make([]*unstructured.Unstructured, len(s.Objects))
	for i, o := range s.Objects {
		out[i] = o.Unstructured
	}
	return out
}

// Workloads returns the good and bad samples some model targets, with the
// models that target them. Samples no model targets (related objects such
// as a ScheduledBackup) are left out.
func (s *Set) Workloads() []Workload {
	var out []Workload
	for _, o := range s.Objects {
		var want v1alpha1.DutyState
		switch {
		case strings.HasSuffix(o.File, "-good.yaml"):
			want = v1alpha1.DutyMet
		case strings.HasSuffix(o.File, "-bad.yaml"):
			want = v1alpha1.DutyUnmet
		default:
			continue
		}
		matched := evaluate.Match(s.Models, o.GroupVersionKind(), o.GetLabels(), s.Namespaces[o.GetNamespace()], o.GetNamespace() != "")
		if len(matched) == 0 {
			continue
		}
		out = append(out, Workload{Object: o, Want: want, Models: matched})
	}
	return out
}

// ReadDir reads the YAML documents of every *.yaml file in a directory but
// kustomization.yaml, in file name order.
func ReadDir(dir string) ([]Object, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", dir, err)
	}
	var out []Object
	for _, path := range files {
		if filepath.Base(path) == "kustomization.yaml" {
			continue
		}
		docs, err := ReadFile(path)
		if err != nil {
			return nil, err
		}
		for _, u := range docs {
			out = append(out, Object{File: filepath.Base(path), Unstructured: u})
		}
	}
	return out, nil
}

// ReadFile reads the YAML documents of a file.
func ReadFile(path string) ([]*unstructured.Unstructured, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	docs, err := Documents(raw)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	var out []*unstructured.Unstructured
	for i, doc := range docs {
		// Decoded as client-go decodes what the API server sends (integers
		// as int64, not float64), so that a rule sees the same values in a
		// file as in the cluster: lists.range(object.spec.replicas) needs an
		// int.
		u := &unstructured.Unstructured{}
		js, err := yaml.YAMLToJSON(doc)
		if err != nil {
			return nil, fmt.Errorf("%s: document %d: %w", path, i+1, err)
		}
		if err := utiljson.Unmarshal(js, &u.Object); err != nil {
			return nil, fmt.Errorf("%s: document %d: %w", path, i+1, err)
		}
		if len(u.Object) > 0 {
			out = append(out, u)
		}
	}
	return out, nil
}

// Documents splits a YAML stream into its documents, as kubectl does.
func Documents(raw []byte) ([][]byte, error) {
	reader := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(raw)))
	var out [][]byte
	for i := 1; ; i++ {
		doc, err := reader.Read()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("read document %d: %w", i, err)
		}
		out = append(out, doc)
	}
}

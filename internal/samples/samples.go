// Package samples reads the catalog (config/catalog) and the sample
// workloads (config/samples/workloads) the way the catalog test, the e2e
// test and `make demo` need them: which sample each model targets, and what
// state its duties must reach. A *-good.yaml sample meets every duty of every
// model that targets it, a *-bad.yaml sample none.
package samples

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
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

// Set is the compiled catalog and every sample object.
type Set struct {
	Models     []*evaluate.Model
	Objects    []Object
	Namespaces map[string]map[string]any
}

// Load reads and compiles config/catalog and reads config/samples/workloads
// below the repository root.
func Load(root string) (*Set, error) {
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
	for _, o := range set.Objects {
		if o.GetKind() == "Namespace" && o.GetAPIVersion() == "v1" {
			set.Namespaces[o.GetName()] = o.Object
		}
	}
	return set, nil
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

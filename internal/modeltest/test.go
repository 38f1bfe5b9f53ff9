// Package modeltest runs declarative tests of ResponsibilityModels: files
// that name models, the objects to evaluate them on (workloads, the related
// objects beside them, their namespaces) and the state each duty must reach
// on each object. It is what `kubectl responsibility test` runs, offline, and
// what the catalog's own tests and the upstream corpus are written in, like
// `kyverno test` and `gator verify` for their policies.
package modeltest

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"

	"github.com/responsibility-operator/responsibility-operator/api/v1alpha1"
	"github.com/responsibility-operator/responsibility-operator/internal/samples"
)

// APIVersion and Kind of a test document. Tests are read by the plugin
// only; the API server never sees them.
const (
	APIVersion = "cli.responsibility.io/v1alpha1"
	Kind       = "Test"
)

// DefaultNamespace is the namespace of namespaced resources that name none,
// as with kubectl apply.
const DefaultNamespace = "default"

// Test is one scenario: models evaluated on a set of objects, and the state
// every duty must reach on every object.
type Test struct {
	APIVersion string   `json:"apiVersion"`
	Kind       string   `json:"kind"`
	Metadata   Metadata `json:"metadata"`
	// Description says what the scenario is.
	Description string `json:"description,omitempty"`
	// Models are files or directories of ResponsibilityModels, relative to
	// the test file. A directory means every *.yaml file in it but
	// kustomization.yaml.
	Models []string `json:"models"`
	// Resources are files or directories of objects, relative to the test
	// file: the workloads, the objects their duties read, and Namespaces
	// (with labels, for namespace selectors). All are evaluated together,
	// as if applied to one cluster.
	Resources []string `json:"resources"`
	// Namespace is given to namespaced resources that name none.
	Namespace string `json:"namespace,omitempty"`
	// Now is the time of the evaluation, RFC 3339: what rules read as `now`
	// and what waivers' expiries are compared with. Absent, the time the
	// test runs; a test of a rule that reads `now` sets it, so that its
	// verdicts do not change with the date.
	Now string `json:"now,omitempty"`
	// Patches change loaded resources before the evaluation: a JSON merge
	// patch on one object. A test of a fix patches the failing object with
	// exactly the change the duty's message asks for.
	Patches []Patch `json:"patches,omitempty"`
	// Results are the expected states, one per (object, duty).
	Results []Result `json:"results"`

	// File is the file the test was read from; paths are relative to its
	// directory.
	File string `json:"-"`
}

// Metadata names a test.
type Metadata struct {
	Name string `json:"name"`
}

// ObjectSelector names objects by kind and name. APIVersion is needed only
// where two kinds of the same name are loaded (a Knative Service and a core
// Service); Namespace defaults to the test's.
type ObjectSelector struct {
	APIVersion string `json:"apiVersion,omitempty"`
	Kind       string `json:"kind"`
	Name       string `json:"name,omitempty"`
	// Names lists several objects of the kind, for one result each.
	Names     []string `json:"names,omitempty"`
	Namespace string   `json:"namespace,omitempty"`
}

// Patch is a JSON merge patch on one object (Name, not Names).
type Patch struct {
	ObjectSelector `json:",inline"`
	Patch          map[string]any `json:"patch"`
}

// Result is the state one duty of one model must reach on the objects
// named.
type Result struct {
	ObjectSelector `json:",inline"`
	Model          string             `json:"model"`
	Duty           string             `json:"duty"`
	State          v1alpha1.DutyState `json:"state"`
	// Message is a substring the duty's message must contain.
	Message string `json:"message,omitempty"`
	// Citation says why this is the expected state: for an upstream object,
	// the upstream documentation that decides it.
	Citation string `json:"citation,omitempty"`
}

// Name is "file: test", how failures name a test.
func (t *Test) Name() string {
	return filepath.ToSlash(t.File) + ": " + t.Metadata.Name
}

func (t *Test) namespace() string {
	if t.Namespace != "" {
		return t.Namespace
	}
	return DefaultNamespace
}

func (s ObjectSelector) names() []string {
	if s.Name != "" {
		return append([]string{s.Name}, s.Names...)
	}
	return s.Names
}

// ErrNoTests is returned when the paths hold no test file.
var ErrNoTests = errors.New("no test found")

// Load reads the tests of the given files and directories. A directory is
// searched recursively for YAML files whose documents are Tests; other
// YAML files there (models, resources) are passed over. A file named
// explicitly must hold only Tests.
func Load(paths []string) ([]*Test, error) {
	var tests []*Test
	for _, p := range paths {
		info, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("read tests: %w", err)
		}
		if !info.IsDir() {
			ts, err := readFile(p, true)
			if err != nil {
				return nil, err
			}
			tests = append(tests, ts...)
			continue
		}
		err = filepath.WalkDir(p, func(path string, d os.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() || !isYAML(path) {
				return nil
			}
			ts, err := readFile(path, false)
			tests = append(tests, ts...)
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("read tests in %s: %w", p, err)
		}
	}
	if len(tests) == 0 {
		return nil, fmt.Errorf("%w in %s: a test file holds documents of apiVersion %s, kind %s", ErrNoTests, strings.Join(paths, ", "), APIVersion, Kind)
	}
	return tests, nil
}

func isYAML(path string) bool {
	ext := filepath.Ext(path)
	return ext == ".yaml" || ext == ".yml"
}

// readFile reads the Tests of a file. With strict, every document must be a
// Test; without, a file whose first document is not a Test is not a test
// file and yields nothing.
func readFile(path string, strict bool) ([]*Test, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read tests: %w", err)
	}
	docs, err := samples.Documents(raw)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	var out []*Test
	names := map[string]bool{}
	for i, doc := range docs {
		var head struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
		}
		if err := yaml.Unmarshal(doc, &head); err != nil {
			if !strict && len(out) == 0 {
				return nil, nil
			}
			return nil, fmt.Errorf("%s: document %d: %w", path, i+1, err)
		}
		if head.APIVersion == "" && head.Kind == "" {
			continue // an empty document
		}
		if head.APIVersion != APIVersion || head.Kind != Kind {
			if !strict && len(out) == 0 {
				return nil, nil
			}
			return nil, fmt.Errorf("%s: document %d is apiVersion %q, kind %q, not a test (apiVersion: %s, kind: %s)", path, i+1, head.APIVersion, head.Kind, APIVersion, Kind)
		}
		t := &Test{}
		if err := yaml.UnmarshalStrict(doc, t); err != nil {
			return nil, fmt.Errorf("%s: document %d: %w", path, i+1, err)
		}
		t.File = path
		if err := t.validate(); err != nil {
			return nil, fmt.Errorf("%s: document %d: %w", path, i+1, err)
		}
		if names[t.Metadata.Name] {
			return nil, fmt.Errorf("%s: document %d: a second test named %q", path, i+1, t.Metadata.Name)
		}
		names[t.Metadata.Name] = true
		out = append(out, t)
	}
	return out, nil
}

// validate checks what the schema of a test requires, so that a typo is an
// error and not a test that checks nothing.
func (t *Test) validate() error {
	var errs []string
	if t.Metadata.Name == "" {
		errs = append(errs, "metadata.name is required")
	}
	if len(t.Models) == 0 {
		errs = append(errs, "models: name at least one model file or directory")
	}
	if len(t.Resources) == 0 {
		errs = append(errs, "resources: name at least one file or directory of objects")
	}
	if t.Namespace != "" {
		for _, msg := range validation.IsDNS1123Label(t.Namespace) {
			errs = append(errs, "namespace: "+msg)
		}
	}
	if t.Now != "" {
		if _, err := time.Parse(time.RFC3339, t.Now); err != nil {
			errs = append(errs, fmt.Sprintf("now: %q is not an RFC 3339 time, e.g. 2026-12-03T10:00:00Z", t.Now))
		}
	}
	for i, p := range t.Patches {
		field := fmt.Sprintf("patches[%d]", i)
		if p.Kind == "" || p.Name == "" || len(p.Names) > 0 {
			errs = append(errs, field+": kind and name (one object) are required")
		}
		if p.Patch == nil {
			errs = append(errs, field+".patch is required")
		}
	}
	if len(t.Results) == 0 {
		errs = append(errs, "results: expect at least one duty state")
	}
	states := []v1alpha1.DutyState{v1alpha1.DutyMet, v1alpha1.DutyUnmet, v1alpha1.DutyUnknown, v1alpha1.DutyWaived}
	for i, r := range t.Results {
		field := fmt.Sprintf("results[%d]", i)
		if r.Kind == "" || len(r.names()) == 0 {
			errs = append(errs, field+": kind and name (or names) are required")
		}
		if r.Model == "" || r.Duty == "" {
			errs = append(errs, field+": model and duty are required")
		}
		if !slices.Contains(states, r.State) {
			errs = append(errs, fmt.Sprintf("%s.state: %q is not one of Met, Unmet, Unknown, Waived", field, r.State))
		}
	}
	if len(errs) > 0 {
		return errors.New(strings.Join(errs, "; "))
	}
	return nil
}

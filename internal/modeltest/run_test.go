package modeltest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// model is a small model: a Cluster must have 2 instances, and a
// ScheduledBackup of its namespace must name it; namespaces labelled
// tier=scratch are not targeted.
const model = `apiVersion: responsibility.io/v1alpha1
kind: ResponsibilityModel
metadata:
  name: pg
spec:
  service: PostgreSQL
  provider: ACME
  targets:
  - apiVersion: postgresql.cnpg.io/v1
    kind: Cluster
    namespaceSelector:
      matchExpressions:
      - {key: tier, operator: NotIn, values: [scratch]}
  areas:
  - name: Replication
    provider: Failover
    customer: Replicas
    duties:
    - name: replicated
      rule: object.spec.?instances.orValue(1) >= 2
      messageExpression: '"Set spec.instances of " + object.metadata.name + " to 2 or more"'
    - name: backed-up
      related:
      - {name: schedules, apiVersion: postgresql.cnpg.io/v1, kind: ScheduledBackup}
      rule: related.schedules.exists(s, s.spec.cluster.name == object.metadata.name)
      message: Create a ScheduledBackup
`

const objects = `apiVersion: postgresql.cnpg.io/v1
kind: Cluster
metadata:
  name: one
spec:
  instances: 1
---
apiVersion: postgresql.cnpg.io/v1
kind: Cluster
metadata:
  name: three
spec:
  instances: 3
---
apiVersion: postgresql.cnpg.io/v1
kind: ScheduledBackup
metadata:
  name: nightly
spec:
  cluster: {name: three}
`

const header = `apiVersion: cli.responsibility.io/v1alpha1
kind: Test
metadata:
  name: t
models: [model.yaml]
resources: [objects.yaml]
`

// allMet is a results block that passes on objects.yaml.
const allResults = `results:
- {kind: Cluster, name: one, model: pg, duty: replicated, state: Unmet, message: "instances of one"}
- {kind: Cluster, name: one, model: pg, duty: backed-up, state: Unmet}
- {kind: Cluster, name: three, model: pg, duty: replicated, state: Met}
- {kind: Cluster, name: three, model: pg, duty: backed-up, state: Met}
`

func writeFiles(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		path := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestRun(t *testing.T) {
	tests := []struct {
		name string
		test string
		// extra files beside model.yaml and objects.yaml
		extra map[string]string
		opts  Options
		// want: failed verdicts as "object model/duty: problem", errors, unchecked count
		failed    []string
		errorPart string
		unchecked int
		passed    int
	}{
		{name: "every result passes", test: header + allResults, passed: 4},
		{
			name: "names lists several objects",
			test: header + `results:
- {kind: Cluster, names: [one, three], model: pg, duty: backed-up, state: Met}
`,
			failed:    []string{"Cluster default/one pg/backed-up: is Unmet, want Met"},
			passed:    1,
			unchecked: 2,
		},
		{
			name: "a wrong message fails",
			test: header + `results:
- {kind: Cluster, name: one, model: pg, duty: replicated, state: Unmet, message: "to 5"}
`,
			failed:    []string{`Cluster default/one pg/replicated: message does not contain "to 5"`},
			unchecked: 3,
		},
		{
			name: "a patch is applied before the evaluation: the fix the message asks for",
			test: header + `patches:
- kind: Cluster
  name: one
  patch: {spec: {instances: 2}}
results:
- {kind: Cluster, name: one, model: pg, duty: replicated, state: Met}
`,
			passed: 1, unchecked: 3,
		},
		{
			name:   "a related object in another namespace is not read",
			test:   strings.Replace(header, "[objects.yaml]", "[objects.yaml, elsewhere.yaml]", 1) + allResults,
			extra:  map[string]string{"elsewhere.yaml": "apiVersion: postgresql.cnpg.io/v1\nkind: ScheduledBackup\nmetadata: {name: b, namespace: other}\nspec: {cluster: {name: one}}\n"},
			passed: 4,
		},
		{
			name: "a namespace label excludes the objects from the model",
			test: strings.Replace(header, "[objects.yaml]", "[objects.yaml, ns.yaml]", 1) + `results:
- {kind: Cluster, name: three, model: pg, duty: replicated, state: Met}
`,
			extra:  map[string]string{"ns.yaml": "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: default\n  labels: {tier: scratch}\n"},
			failed: []string{"Cluster default/three pg/replicated: model pg does not target Cluster default/three (kind, labels or namespace labels)"},
		},
		{
			name: "an unknown duty fails the result",
			test: header + `results:
- {kind: Cluster, name: one, model: pg, duty: encrypted, state: Met}
`,
			failed:    []string{"Cluster default/one pg/encrypted: model pg has no duty encrypted"},
			unchecked: 4,
		},
		{
			name: "a model that is not loaded fails the result",
			test: header + `results:
- {kind: Cluster, name: one, model: mysql, duty: replicated, state: Met}
`,
			failed:    []string{"Cluster default/one mysql/replicated: no model mysql is loaded"},
			unchecked: 4,
		},
		{
			name: "an object that is not among the resources stops the test",
			test: header + `results:
- {kind: Cluster, name: two, model: pg, duty: replicated, state: Met}
`,
			errorPart: "results[0]: no Cluster two among the resources",
		},
		{
			name:      "two results for one verdict stop the test",
			test:      header + allResults + "- {kind: Cluster, name: one, model: pg, duty: backed-up, state: Met}\n",
			errorPart: "a second result for Cluster default/one pg/backed-up",
		},
		{
			name: "a patch of a missing object stops the test",
			test: header + `patches:
- {kind: Cluster, name: two, patch: {spec: {instances: 2}}}
` + allResults,
			errorPart: "patches[0]: no Cluster two among the resources",
		},
		{
			name:      "a model that does not compile stops the test",
			test:      strings.Replace(header, "[model.yaml]", "[broken.yaml]", 1) + allResults,
			extra:     map[string]string{"broken.yaml": strings.Replace(model, "orValue(1) >= 2", "orValue(1) >=", 1)},
			errorPart: "broken.yaml: ",
		},
		{
			name:      "a model listed as a resource stops the test",
			test:      strings.Replace(header, "[objects.yaml]", "[objects.yaml, model.yaml]", 1) + allResults,
			errorPart: "is a model or a test: list it under models",
		},
		{
			name:      "the same object twice stops the test",
			test:      strings.Replace(header, "[objects.yaml]", "[objects.yaml, objects.yaml]", 1) + allResults,
			errorPart: "Cluster default/one is already in",
		},
		{
			name: "Store replaces the objects: what the API server stored is evaluated",
			test: header + allResults,
			opts: Options{Store: func(_ *Test, objs []*unstructured.Unstructured) ([]*unstructured.Unstructured, error) {
				for _, o := range objs {
					if o.GetName() == "one" {
						_ = unstructured.SetNestedField(o.Object, int64(2), "spec", "instances")
					}
				}
				return objs, nil
			}},
			failed: []string{"Cluster default/one pg/replicated: is Met, want Unmet"},
			passed: 3,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			files := map[string]string{"model.yaml": model, "objects.yaml": objects, "test.yaml": tt.test}
			for k, v := range tt.extra {
				files[k] = v
			}
			dir := writeFiles(t, files)
			loaded, err := Load([]string{filepath.Join(dir, "test.yaml")})
			if err != nil {
				t.Fatal(err)
			}
			r := Run(loaded, tt.opts)
			if tt.errorPart != "" {
				if len(r.Errors) != 1 || !strings.Contains(r.Errors[0].Error, tt.errorPart) {
					t.Fatalf("errors %+v, want one containing %q", r.Errors, tt.errorPart)
				}
				return
			}
			if len(r.Errors) > 0 {
				t.Fatalf("errors: %+v", r.Errors)
			}
			var failed []string
			for _, v := range r.Failed() {
				failed = append(failed, v.Object.String()+" "+v.Model+"/"+v.Duty+": "+v.Problem)
			}
			if strings.Join(failed, "\n") != strings.Join(tt.failed, "\n") {
				t.Errorf("failed:\n%s\nwant:\n%s", strings.Join(failed, "\n"), strings.Join(tt.failed, "\n"))
			}
			if got := len(r.Verdicts) - len(r.Failed()); got != tt.passed {
				t.Errorf("%d passed, want %d", got, tt.passed)
			}
			if len(r.Unchecked) != tt.unchecked {
				t.Errorf("%d unchecked (%+v), want %d", len(r.Unchecked), r.Unchecked, tt.unchecked)
			}
			if r.OK() != (len(tt.failed) == 0) {
				t.Errorf("OK() = %v with failures %v", r.OK(), tt.failed)
			}
		})
	}
}

func TestLoad(t *testing.T) {
	tests := []struct {
		name      string
		files     map[string]string
		path      string
		tests     []string
		errorPart string
	}{
		{
			name:  "a directory yields its test files and passes over models and objects",
			files: map[string]string{"a/test.yaml": header + allResults, "model.yaml": model, "b/objects.yaml": objects, "b/c/more-test.yaml": strings.Replace(header, "name: t", "name: u", 1) + allResults},
			path:  ".",
			tests: []string{"a/test.yaml: t", "b/c/more-test.yaml: u"},
		},
		{
			name:      "a file named explicitly must hold tests",
			files:     map[string]string{"model.yaml": model},
			path:      "model.yaml",
			errorPart: `document 1 is apiVersion "responsibility.io/v1alpha1", kind "ResponsibilityModel", not a test`,
		},
		{
			name:      "a directory without tests is an error",
			files:     map[string]string{"model.yaml": model},
			path:      ".",
			errorPart: "no test found",
		},
		{
			name:      "unknown fields are refused",
			files:     map[string]string{"test.yaml": header + "result: []\n" + allResults},
			path:      "test.yaml",
			errorPart: `unknown field "result"`,
		},
		{
			name:      "a state that does not exist is refused",
			files:     map[string]string{"test.yaml": header + "results:\n- {kind: Cluster, name: one, model: pg, duty: replicated, state: Pass}\n"},
			path:      "test.yaml",
			errorPart: `results[0].state: "Pass" is not one of Met, Unmet, Unknown, Waived`,
		},
		{
			name:      "a result without a name is refused",
			files:     map[string]string{"test.yaml": header + "results:\n- {kind: Cluster, model: pg, duty: replicated, state: Met}\n"},
			path:      "test.yaml",
			errorPart: "results[0]: kind and name (or names) are required",
		},
		{
			name:      "two tests of one name are refused",
			files:     map[string]string{"test.yaml": header + allResults + "---\n" + header + allResults},
			path:      "test.yaml",
			errorPart: `a second test named "t"`,
		},
		{
			name:      "a patch needs one object",
			files:     map[string]string{"test.yaml": header + "patches:\n- {kind: Cluster, names: [a, b], patch: {}}\n" + allResults},
			path:      "test.yaml",
			errorPart: "patches[0]: kind and name (one object) are required",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := writeFiles(t, tt.files)
			wd, _ := os.Getwd()
			if err := os.Chdir(dir); err != nil {
				t.Fatal(err)
			}
			defer func() { _ = os.Chdir(wd) }()
			loaded, err := Load([]string{tt.path})
			if tt.errorPart != "" {
				if err == nil || !strings.Contains(err.Error(), tt.errorPart) {
					t.Fatalf("error %v, want one containing %q", err, tt.errorPart)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, l := range loaded {
				names = append(names, l.Name())
			}
			if strings.Join(names, ",") != strings.Join(tt.tests, ",") {
				t.Errorf("tests %v, want %v", names, tt.tests)
			}
		})
	}
}

// TestNumbersAreIntegers: integers of a file, and of a patch, reach the
// rules as int, as they do from the API server (client-go decodes them as
// int64), not as the double a plain JSON decoder makes of them.
func TestNumbersAreIntegers(t *testing.T) {
	intModel := strings.Replace(model, "object.spec.?instances.orValue(1) >= 2", "type(object.spec.instances) == int && lists.range(object.spec.instances).size() >= 2", 1)
	for name, patch := range map[string]string{
		"from the file":  "",
		"from the patch": "patches:\n- {kind: Cluster, name: three, patch: {spec: {instances: 4}}}\n",
	} {
		t.Run(name, func(t *testing.T) {
			dir := writeFiles(t, map[string]string{"model.yaml": intModel, "objects.yaml": objects, "test.yaml": header + patch +
				"results:\n- {kind: Cluster, name: three, model: pg, duty: replicated, state: Met}\n"})
			loaded, err := Load([]string{filepath.Join(dir, "test.yaml")})
			if err != nil {
				t.Fatal(err)
			}
			r := Run(loaded, Options{})
			if p := r.Problems(false); len(p) > 0 {
				t.Error(strings.Join(p, "\n"))
			}
		})
	}
}

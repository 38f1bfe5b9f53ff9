package plugin

import (
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"testing"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"sigs.k8s.io/yaml"
)

// TestSchemaLimitsMatchCRD keeps lint's schema table equal to the generated
// CRD: every length, pattern, enum and item limit under spec, except inside
// label selectors (evaluate.Compile parses those).
func TestSchemaLimitsMatchCRD(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("..", "..", "config", "crd", "bases", "responsibility.io_responsibilitymodels.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	crd := &apiextensionsv1.CustomResourceDefinition{}
	if err := yaml.Unmarshal(raw, crd); err != nil {
		t.Fatal(err)
	}
	spec := crd.Spec.Versions[0].Schema.OpenAPIV3Schema.Properties["spec"]
	got := map[string]fieldLimit{}
	collectLimits("spec", &spec, got)

	for path, want := range got {
		if have, ok := schemaLimits[path]; !ok || !reflect.DeepEqual(have, want) {
			t.Errorf("%s: the CRD says %+v, schemaLimits says %+v (ok=%v): update schema.go", path, want, have, ok)
		}
	}
	for path := range schemaLimits {
		if _, ok := got[path]; !ok {
			t.Errorf("%s: in schemaLimits but not limited by the CRD", path)
		}
	}
}

func collectLimits(path string, s *apiextensionsv1.JSONSchemaProps, out map[string]fieldLimit) {
	var l fieldLimit
	if s.MinLength != nil {
		l.minLength = int(*s.MinLength)
	}
	if s.MaxLength != nil {
		l.maxLength = int(*s.MaxLength)
	}
	if s.MinItems != nil {
		l.minItems = int(*s.MinItems)
	}
	if s.MaxItems != nil {
		l.maxItems = int(*s.MaxItems)
	}
	l.pattern = s.Pattern
	for _, e := range s.Enum {
		var v string
		if err := yaml.Unmarshal(e.Raw, &v); err == nil {
			l.enum = append(l.enum, v)
		}
	}
	if !reflect.DeepEqual(l, fieldLimit{}) {
		out[path] = l
	}
	names := make([]string, 0, len(s.Properties))
	for name := range s.Properties {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if name == "selector" || name == "namespaceSelector" {
			continue
		}
		child := s.Properties[name]
		collectLimits(path+"."+name, &child, out)
	}
	if s.Items != nil && s.Items.Schema != nil {
		collectLimits(path+"[]", s.Items.Schema, out)
	}
}

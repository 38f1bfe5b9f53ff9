// Package oscaltest validates OSCAL documents against NIST's published OSCAL
// JSON schemas, vendored in internal/evidence/testdata/oscal-schema (see its
// README for their provenance), for the tests of the packages that write
// them. Only tests import it: the plugin's binary carries no schema.
//
// The schemas are JSON Schema draft-07, compiled with
// github.com/santhosh-tekuri/jsonschema/v6:
//
//   - Regular expressions: every pattern of these schemas (the token,
//     string, UUID, date-time, URI and email patterns, \p{L} and \p{N}
//     included) is within RE2's syntax, so the library's default engine, Go's
//     regexp, compiles them all; no ECMA-262 engine (regexp2) is needed. Go's
//     \S and \s are ASCII where ECMA-262's are Unicode: a value with a
//     non-ASCII space at an end would pass here and fail in an ECMA-262
//     validator, which is why the writers collapse every Unicode space run of
//     one-line fields.
//   - Formats: draft-07 makes "format" an annotation; AssertFormat makes the
//     compiler check date-time, uri, uri-reference and email as well, which
//     is stricter than the schemas' patterns alone.
package oscaltest

import (
	"bytes"
	"fmt"
	"path/filepath"
	"runtime"
	"sync"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// Models whose schemas are vendored, by their file name's part.
const (
	ComponentDefinition = "component"
	AssessmentResults   = "assessment-results"
)

// Versions are the OSCAL releases whose schemas are vendored; every document
// is validated against each.
var Versions = []string{"v1.1.3", "v1.2.1"}

// Dir is the directory of the vendored schemas.
func Dir() string {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		panic("oscaltest: no caller information")
	}
	return filepath.Join(filepath.Dir(file), "..", "testdata", "oscal-schema")
}

// SchemaPath is the path of one model's schema of one version.
func SchemaPath(version, model string) string {
	return filepath.Join(Dir(), version, "oscal_"+model+"_schema.json")
}

var (
	mu       sync.Mutex
	compiled = map[string]*jsonschema.Schema{}
)

// Schema compiles (once) the schema of a model of a version.
func Schema(version, model string) (*jsonschema.Schema, error) {
	mu.Lock()
	defer mu.Unlock()
	path := SchemaPath(version, model)
	if s, ok := compiled[path]; ok {
		return s, nil
	}
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	s, err := c.Compile(path)
	if err != nil {
		return nil, fmt.Errorf("compile %s: %w", path, err)
	}
	compiled[path] = s
	return s, nil
}

// Validate validates a JSON document against the schema of model in every
// vendored version.
func Validate(doc []byte, model string) error {
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(doc))
	if err != nil {
		return fmt.Errorf("read the document: %w", err)
	}
	for _, v := range Versions {
		s, err := Schema(v, model)
		if err != nil {
			return err
		}
		if err := s.Validate(inst); err != nil {
			return fmt.Errorf("OSCAL %s %s schema: %w", v, model, err)
		}
	}
	return nil
}

package plugin

import (
	"fmt"
	"regexp"
	"strings"
	"unicode/utf8"

	"github.com/responsibility-operator/responsibility-operator/api/v1alpha1"
	"github.com/responsibility-operator/responsibility-operator/internal/evaluate"
)

// fieldLimit is what the CRD schema allows for one field: the
// +kubebuilder:validation markers of api/v1alpha1, which the CRD and the
// API server enforce. lint checks them offline; TestSchemaLimitsMatchCRD
// keeps this table equal to config/crd/bases.
type fieldLimit struct {
	minLength, maxLength int
	minItems, maxItems   int
	pattern              string
	enum                 []string
}

// Patterns of the API's markers.
const (
	patternAPIVersion = `^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?v[0-9]+((alpha|beta)[0-9]+)?$`
	patternKind       = `^[A-Z][A-Za-z0-9]*$`
	patternDNSLabel   = `^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	patternIdentifier = `^[a-zA-Z_][a-zA-Z0-9_]*$`
)

// schemaLimits are the limits by field path, list indexes written as [].
// admissionActions are the values of spec.admission and a duty's admission.
var admissionActions = []string{string(v1alpha1.AdmissionNone), string(v1alpha1.AdmissionWarn), string(v1alpha1.AdmissionDeny), string(v1alpha1.AdmissionAudit)}

// waiverPolicyValues are the values of spec.waivers.
var waiverPolicyValues = []string{string(v1alpha1.WaiversAllowed), string(v1alpha1.WaiversAnnotations), string(v1alpha1.WaiversDutyWaivers), string(v1alpha1.WaiversForbidden)}

var schemaLimits = map[string]fieldLimit{
	"spec.service":                               {minLength: 1, maxLength: 256},
	"spec.provider":                              {minLength: 1, maxLength: 128},
	"spec.description":                           {maxLength: 4096},
	"spec.waivers":                               {enum: waiverPolicyValues},
	"spec.admission":                             {enum: admissionActions},
	"spec.targets":                               {minItems: 1, maxItems: 32},
	"spec.targets[].apiVersion":                  {minLength: 1, maxLength: 253, pattern: patternAPIVersion},
	"spec.targets[].kind":                        {minLength: 1, maxLength: 63, pattern: patternKind},
	"spec.areas":                                 {minItems: 1, maxItems: 32},
	"spec.areas[].name":                          {minLength: 1, maxLength: 128},
	"spec.areas[].provider":                      {minLength: 1, maxLength: 1024},
	"spec.areas[].customer":                      {minLength: 1, maxLength: 1024},
	"spec.areas[].controls":                      {maxItems: 32},
	"spec.areas[].controls[].framework":          {minLength: 1, maxLength: 128},
	"spec.areas[].controls[].id":                 {minLength: 1, maxLength: 64},
	"spec.areas[].controls[].url":                {maxLength: 2048},
	"spec.areas[].duties":                        {maxItems: 16},
	"spec.areas[].duties[].name":                 {minLength: 1, maxLength: 57, pattern: patternDNSLabel},
	"spec.areas[].duties[].description":          {maxLength: 1024},
	"spec.areas[].duties[].rule":                 {minLength: 1, maxLength: 4096},
	"spec.areas[].duties[].message":              {maxLength: 1024},
	"spec.areas[].duties[].messageExpression":    {maxLength: 4096},
	"spec.areas[].duties[].severity":             {enum: []string{string(v1alpha1.SeverityWarning), string(v1alpha1.SeverityInfo)}},
	"spec.areas[].duties[].admission":            {enum: admissionActions},
	"spec.areas[].duties[].related":              {maxItems: 8},
	"spec.areas[].duties[].related[].name":       {minLength: 1, maxLength: 63, pattern: patternIdentifier},
	"spec.areas[].duties[].related[].apiVersion": {minLength: 1, maxLength: 253, pattern: patternAPIVersion},
	"spec.areas[].duties[].related[].kind":       {minLength: 1, maxLength: 63, pattern: patternKind},
	"spec.areas[].duties[].related[].namespace":  {maxLength: 63, pattern: patternDNSLabel},
	"spec.parameters":                            {maxItems: 32},
	"spec.parameters[].name":                     {minLength: 1, maxLength: 63, pattern: patternIdentifier},
	"spec.parameters[].value":                    {maxLength: 1024},
	"spec.parameters[].description":              {maxLength: 1024},
}

var (
	compiledPatterns = map[string]*regexp.Regexp{}
	listIndex        = regexp.MustCompile(`\[[0-9]+\]`)
)

func init() {
	for _, l := range schemaLimits {
		if l.pattern != "" {
			compiledPatterns[l.pattern] = regexp.MustCompile(l.pattern)
		}
	}
}

// shapeChecker collects the schema problems of a model.
type shapeChecker struct {
	problems []evaluate.FieldError
}

func (c *shapeChecker) fail(path, format string, args ...any) {
	c.problems = append(c.problems, evaluate.FieldError{Path: path, Message: fmt.Sprintf(format, args...)})
}

func limitOf(path string) fieldLimit { return schemaLimits[listIndex.ReplaceAllString(path, "[]")] }

func (c *shapeChecker) str(path, value string) {
	l := limitOf(path)
	n := utf8.RuneCountInString(value)
	switch {
	case n < l.minLength:
		c.fail(path, "required")
	case l.maxLength > 0 && n > l.maxLength:
		c.fail(path, "must be at most %d characters, has %d", l.maxLength, n)
	case value != "" && l.pattern != "" && !compiledPatterns[l.pattern].MatchString(value):
		c.fail(path, "%q must match %s", value, l.pattern)
	case value != "" && len(l.enum) > 0 && !contains(l.enum, value):
		c.fail(path, "%q must be one of %s", value, strings.Join(l.enum, ", "))
	}
}

// strs checks the string fields of one object: pairs of field name and value.
func (c *shapeChecker) strs(prefix string, pairs ...string) {
	for i := 0; i+1 < len(pairs); i += 2 {
		c.str(prefix+"."+pairs[i], pairs[i+1])
	}
}

func (c *shapeChecker) items(path string, n int) {
	l := limitOf(path)
	switch {
	case n < l.minItems:
		c.fail(path, "at least %d required", l.minItems)
	case l.maxItems > 0 && n > l.maxItems:
		c.fail(path, "at most %d allowed, has %d", l.maxItems, n)
	}
}

// checkShape checks a model against the CRD schema's limits: what the API
// server would refuse before the webhook compiles the rules.
func checkShape(rm *v1alpha1.ResponsibilityModel) []evaluate.FieldError {
	c := &shapeChecker{}
	if rm.Name == "" {
		c.fail("metadata.name", "required")
	}
	s := &rm.Spec
	c.strs("spec", "service", s.Service, "provider", s.Provider, "description", s.Description, "waivers", string(s.Waivers), "admission", string(s.Admission))
	c.items("spec.targets", len(s.Targets))
	for i, t := range s.Targets {
		c.strs(fmt.Sprintf("spec.targets[%d]", i), "apiVersion", t.APIVersion, "kind", t.Kind)
	}
	c.items("spec.areas", len(s.Areas))
	for i, a := range s.Areas {
		p := fmt.Sprintf("spec.areas[%d]", i)
		c.strs(p, "name", a.Name, "provider", a.Provider, "customer", a.Customer)
		c.items(p+".controls", len(a.Controls))
		for j, ctl := range a.Controls {
			c.strs(fmt.Sprintf("%s.controls[%d]", p, j), "framework", ctl.Framework, "id", ctl.ID, "url", ctl.URL)
		}
		c.items(p+".duties", len(a.Duties))
		for j, d := range a.Duties {
			dp := fmt.Sprintf("%s.duties[%d]", p, j)
			c.strs(dp, "name", d.Name, "description", d.Description, "rule", d.Rule, "message", d.Message,
				"messageExpression", d.MessageExpression, "severity", string(d.Severity), "admission", string(d.Admission))
			c.items(dp+".related", len(d.Related))
			for k, r := range d.Related {
				c.strs(fmt.Sprintf("%s.related[%d]", dp, k), "name", r.Name, "apiVersion", r.APIVersion, "kind", r.Kind, "namespace", r.Namespace)
			}
		}
	}
	return c.problems
}

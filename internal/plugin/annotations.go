package plugin

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/responsibility-operator/responsibility-operator/api/v1alpha1"
	"github.com/responsibility-operator/responsibility-operator/internal/evaluate"
)

// MatrixRow is one area of one model in the matrix annotation.
type MatrixRow struct {
	Model    string `json:"model"`
	Area     string `json:"area"`
	Provider string `json:"provider"`
	Customer string `json:"customer"`
}

// DutyRow is one duty of one model in the duties annotation.
type DutyRow struct {
	Model   string             `json:"model"`
	Duty    string             `json:"duty"`
	State   v1alpha1.DutyState `json:"state"`
	Message string             `json:"message,omitempty"`
	// Waiver names the DutyWaiver (of the object's namespace) that waives
	// the duty, when one does; its message says until when and why.
	Waiver string `json:"waiver,omitempty"`
	// Scope is "Namespace" for a namespace-wide duty: every object of the
	// model in the namespace shares its state.
	Scope string `json:"scope,omitempty"`
	// Waive says how to waive an unmet duty (the annotation to add, or that
	// the model accepts DutyWaivers only), or why it cannot be waived.
	Waive string `json:"waive,omitempty"`
	// WaiverExpires is the expiry of the object's waiver of the duty, when
	// it has one: in the future on a Waived duty, past on one whose waiver
	// expired.
	WaiverExpires *time.Time `json:"waiverExpires,omitempty"`
}

// annotations is what the operator wrote on an object, read back. An
// annotation that does not parse (a tenant may edit them) adds a problem
// and reads as empty; it never fails the command.
type annotations struct {
	Models         []string
	Provider       string
	Service        string
	Matrix         []MatrixRow
	Duties         []DutyRow
	IgnoredWaivers []string
	// MatrixProblem and DutiesProblem say why an annotation could not be read.
	MatrixProblem string
	DutiesProblem string
}

func readAnnotations(a map[string]string) annotations {
	out := annotations{
		Models:         splitList(a[v1alpha1.AnnotationModels]),
		Provider:       a[v1alpha1.AnnotationProvider],
		Service:        a[v1alpha1.AnnotationService],
		IgnoredWaivers: splitList(a[v1alpha1.AnnotationIgnoredWaivers]),
	}
	var err error
	if out.Matrix, err = parseMatrix(a[v1alpha1.AnnotationMatrix]); err != nil {
		out.MatrixProblem = err.Error()
	}
	if out.Duties, err = parseDuties(a[v1alpha1.AnnotationDuties]); err != nil {
		out.DutiesProblem = err.Error()
	}
	return out
}

// malformed is the problem of an annotation that is not the operator's JSON.
func malformed(key string, err error) error {
	return fmt.Errorf("the annotation %s is not the operator's JSON (%w): it was edited by someone else; the operator rewrites it when it next evaluates the object", key, err)
}

func parseMatrix(value string) ([]MatrixRow, error) {
	return parseByModel(v1alpha1.AnnotationMatrix, value, func(model, area string, cell MatrixRow) MatrixRow {
		cell.Model, cell.Area = model, area
		return cell
	})
}

// parseDuties reads the duties annotation like evaluate.ParseDuties, but
// reports a malformed value instead of reading it as empty.
func parseDuties(value string) ([]DutyRow, error) {
	return parseByModel(v1alpha1.AnnotationDuties, value, func(model, duty string, d evaluate.DutyAnnotation) DutyRow {
		return DutyRow{Model: model, Duty: duty, State: d.State, Message: d.Message, Waiver: d.Waiver, Scope: d.Scope}
	})
}

// parseByModel decodes an annotation of JSON keyed by model, then by area
// or duty, into rows sorted by both keys.
func parseByModel[V, R any](key, value string, row func(model, name string, v V) R) ([]R, error) {
	if value == "" {
		return nil, nil
	}
	var byModel map[string]map[string]V
	if err := json.Unmarshal([]byte(value), &byModel); err != nil {
		return nil, malformed(key, err)
	}
	var out []R
	for _, model := range sortedKeys(byModel) {
		for _, name := range sortedKeys(byModel[model]) {
			out = append(out, row(model, name, byModel[model][name]))
		}
	}
	return out, nil
}

func splitList(value string) []string {
	var out []string
	for _, s := range strings.Split(value, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// waiveHint says how to waive a duty on an object: the annotation to add,
// that only a DutyWaiver can, or why a waiver has no effect. policies holds
// the waiver policy of the models the user may read; without it, a duty
// listed in ignored-waivers whose waiver annotation is on the object is one
// whose model does not accept that annotation (it forbids waivers, accepts
// DutyWaivers only, or refuses the annotation's expiry): the object's
// WaiverIgnored event says which. A DutyWaiver selects objects of its own
// namespace, so none waives a duty of a cluster-scoped object.
func waiveHint(d DutyRow, objAnnotations map[string]string, ignored []string, policies map[string]v1alpha1.WaiverPolicy, namespaced bool) string {
	if d.State != v1alpha1.DutyUnmet {
		return ""
	}
	policy, known := policies[d.Model]
	switch {
	case known && !policy.AcceptsAnnotations() && policy.AcceptsDutyWaivers() && !namespaced:
		return "model " + d.Model + " accepts DutyWaivers only, which cannot select a cluster-scoped object"
	case known && !policy.AcceptsAnnotations() && policy.AcceptsDutyWaivers():
		return dutyWaiverHint(d.Model)
	case known && !policy.AcceptsAnnotations():
		return "model " + d.Model + " forbids waivers"
	}
	if _, waived := objAnnotations[v1alpha1.AnnotationWaivePrefix+d.Duty]; !known && waived && contains(ignored, d.Duty) {
		return "model " + d.Model + " ignores the waiver annotation: see the WaiverIgnored event"
	}
	return v1alpha1.AnnotationWaivePrefix + d.Duty + `="<reason>"`
}

// dutyWaiverHint is the hint of an unmet duty whose model ignores waiver
// annotations but accepts DutyWaivers.
func dutyWaiverHint(model string) string {
	return "ask for a DutyWaiver (model " + model + " accepts DutyWaivers only)"
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// Package report turns the duty states the operator wrote on a namespace's
// objects into policy reports in the format of the Kubernetes policy working
// group — openreports.io/v1alpha1 Report, or its predecessor
// wgpolicyk8s.io/v1alpha2 PolicyReport, which share their results schema —
// so that existing report UIs (Policy Reporter) show the duties. It is pure:
// objects in, report contents out.
package report

import (
	"fmt"
	"sort"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/responsibility-operator/responsibility-operator/api/v1alpha1"
	"github.com/responsibility-operator/responsibility-operator/internal/evaluate"
)

// The report kinds, newest first.
var (
	OpenReports = schema.GroupVersionKind{Group: "openreports.io", Version: "v1alpha1", Kind: "Report"}
	WGPolicy    = schema.GroupVersionKind{Group: "wgpolicyk8s.io", Version: "v1alpha2", Kind: "PolicyReport"}
)

// Source names the operator in every report and result.
const Source = "responsibility-operator"

// Name is the name of a namespace's first report; further chunks are
// Name-2, Name-3, ...
const Name = "responsibility-operator"

// LabelManagedBy marks the reports the operator owns.
const LabelManagedBy = "app.kubernetes.io/managed-by"

// MaxResults bounds the results of one report. A result takes about 500
// bytes, so a report stays near 0.5 MiB, far below etcd's 1.5 MiB request
// limit, however many objects a namespace holds.
const MaxResults = 1000

// Object is what a report needs of one annotated object.
type Object struct {
	APIVersion, Kind, Namespace, Name, UID string
	// Duties is the parsed duties annotation.
	Duties map[string]map[string]evaluate.DutyAnnotation
}

// Result values of the report format.
const (
	resultPass  = "pass"
	resultFail  = "fail"
	resultError = "error"
	resultSkip  = "skip"
)

func resultOf(s v1alpha1.DutyState) string {
	switch s {
	case v1alpha1.DutyMet:
		return resultPass
	case v1alpha1.DutyUnmet:
		return resultFail
	case v1alpha1.DutyWaived:
		return resultSkip
	default:
		return resultError
	}
}

// severityOf maps a duty's severity to the report format's: medium for
// Warning, low for Info ("info" is not in every PolicyReport version's enum).
func severityOf(s v1alpha1.Severity) string {
	if s == v1alpha1.SeverityInfo {
		return "low"
	}
	return "medium"
}

// Build returns the contents of a namespace's reports of kind gvk: every
// object × duty as one result, sorted, in chunks of at most maxResults.
// models gives each duty its area (category) and severity; a duty of a model
// that is gone is reported without them. A namespace without results has no
// report.
func Build(gvk schema.GroupVersionKind, namespace string, objects []Object, models map[string]*evaluate.Model, maxResults int) []*unstructured.Unstructured {
	type row struct {
		obj         Object
		model, duty string
		state       evaluate.DutyAnnotation
	}
	var rows []row
	for _, o := range objects {
		for model, duties := range o.Duties {
			for duty, st := range duties {
				rows = append(rows, row{o, model, duty, st})
			}
		}
	}
	sort.Slice(rows, func(i, j int) bool {
		a, b := rows[i], rows[j]
		for _, p := range [][2]string{{a.obj.Kind, b.obj.Kind}, {a.obj.Name, b.obj.Name}, {a.obj.APIVersion, b.obj.APIVersion}, {a.model, b.model}, {a.duty, b.duty}} {
			if p[0] != p[1] {
				return p[0] < p[1]
			}
		}
		return false
	})
	if maxResults <= 0 {
		maxResults = MaxResults
	}
	var out []*unstructured.Unstructured
	for start := 0; start < len(rows); start += maxResults {
		end := min(start+maxResults, len(rows))
		results := make([]any, 0, end-start)
		summary := map[string]int64{resultPass: 0, resultFail: 0, "warn": 0, resultError: 0, resultSkip: 0}
		for _, r := range rows[start:end] {
			res := map[string]any{
				"source": Source,
				"policy": r.model,
				"rule":   r.duty,
				"result": resultOf(r.state.State),
				"scored": true,
				"resources": []any{map[string]any{
					"apiVersion": r.obj.APIVersion, "kind": r.obj.Kind,
					"namespace": r.obj.Namespace, "name": r.obj.Name, "uid": r.obj.UID,
				}},
			}
			if r.state.Message != "" {
				res["message"] = r.state.Message
			}
			if d := dutyOf(models[r.model], r.duty); d != nil {
				res["category"] = d.Area
				res["severity"] = severityOf(d.Severity)
			}
			summary[res["result"].(string)]++
			results = append(results, res)
		}
		u := &unstructured.Unstructured{Object: map[string]any{
			"summary": toAny(summary),
			"results": results,
		}}
		if gvk == OpenReports {
			u.Object["source"] = Source // wgpolicyk8s.io/v1alpha2 has no report-level source
		}
		u.SetGroupVersionKind(gvk)
		u.SetNamespace(namespace)
		u.SetName(ChunkName(len(out)))
		u.SetLabels(map[string]string{LabelManagedBy: Source})
		out = append(out, u)
	}
	return out
}

// ChunkName is the name of a namespace's i-th report (from 0).
func ChunkName(i int) string {
	if i == 0 {
		return Name
	}
	return fmt.Sprintf("%s-%d", Name, i+1)
}

func dutyOf(m *evaluate.Model, name string) *evaluate.Duty {
	if m == nil {
		return nil
	}
	for _, d := range m.Duties {
		if d.Name == name {
			return d
		}
	}
	return nil
}

func toAny(m map[string]int64) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// Content is what decides whether a report must be written: its results and
// summary (the server adds metadata; a pruned unknown field must not cause a
// write on every pass).
func Content(u *unstructured.Unstructured) map[string]any {
	return map[string]any{"results": u.Object["results"], "summary": u.Object["summary"]}
}

// Lists reports whether a stored report has a result of a model (its
// policy).
func Lists(u *unstructured.Unstructured, model string) bool {
	results, _ := u.Object["results"].([]any)
	for _, r := range results {
		if m, ok := r.(map[string]any); ok && m["policy"] == model {
			return true
		}
	}
	return false
}

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
// A namespace-wide duty (its annotation's scope is Namespace) is one finding
// of the namespace: the objects with the same state and message share one
// result that lists them all as its resources. A chunk holds at most
// maxResults resources, so its size stays bounded however results group.
// models gives each duty its area (category) and severity; a duty of a model
// that is gone is reported without them. A namespace without results has no
// report.
func Build(gvk schema.GroupVersionKind, namespace string, objects []Object, models map[string]*evaluate.Model, maxResults int) []*unstructured.Unstructured {
	if maxResults <= 0 {
		maxResults = MaxResults
	}
	rows := groupRows(objects, maxResults)
	var out []*unstructured.Unstructured
	for start := 0; start < len(rows); {
		end, weight := start, 0
		for end < len(rows) && (end == start || weight+len(rows[end].objs) <= maxResults) {
			weight += len(rows[end].objs)
			end++
		}
		results := make([]any, 0, end-start)
		summary := map[string]int64{resultPass: 0, resultFail: 0, "warn": 0, resultError: 0, resultSkip: 0}
		for _, r := range rows[start:end] {
			resources := make([]any, 0, len(r.objs))
			for _, o := range r.objs {
				resources = append(resources, map[string]any{
					"apiVersion": o.APIVersion, "kind": o.Kind,
					"namespace": o.Namespace, "name": o.Name, "uid": o.UID,
				})
			}
			res := map[string]any{
				"source":    Source,
				"policy":    r.model,
				"rule":      r.duty,
				"result":    resultOf(r.state.State),
				"scored":    true,
				"resources": resources,
			}
			if r.state.Scope == evaluate.ScopeNamespace {
				res["properties"] = map[string]any{"scope": evaluate.ScopeNamespace, "objects": fmt.Sprint(len(r.objs))}
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
		start = end
	}
	return out
}

// row is one result: a duty's state on one object, or on the objects that
// share a namespace-wide finding (at most maxResults of them).
type row struct {
	objs        []Object
	model, duty string
	state       evaluate.DutyAnnotation
}

// groupRows is every object × duty, the namespace-wide ones grouped by
// model, duty, state, message and waiver, sorted by the first object's kind
// and name, then model and duty.
func groupRows(objects []Object, maxResults int) []row {
	var rows []row
	groups := map[[5]string]int{}
	sorted := append([]Object(nil), objects...)
	sort.Slice(sorted, func(i, j int) bool {
		a, b := sorted[i], sorted[j]
		for _, p := range [][2]string{{a.Kind, b.Kind}, {a.Name, b.Name}, {a.APIVersion, b.APIVersion}} {
			if p[0] != p[1] {
				return p[0] < p[1]
			}
		}
		return false
	})
	for _, o := range sorted {
		for model, duties := range o.Duties {
			for duty, st := range duties {
				if st.Scope != evaluate.ScopeNamespace {
					rows = append(rows, row{[]Object{o}, model, duty, st})
					continue
				}
				key := [5]string{model, duty, string(st.State), st.Message, st.Waiver}
				if i, ok := groups[key]; ok && len(rows[i].objs) < maxResults {
					rows[i].objs = append(rows[i].objs, o)
					continue
				}
				groups[key] = len(rows)
				rows = append(rows, row{[]Object{o}, model, duty, st})
			}
		}
	}
	sort.SliceStable(rows, func(i, j int) bool {
		a, b := rows[i], rows[j]
		for _, p := range [][2]string{{a.objs[0].Kind, b.objs[0].Kind}, {a.objs[0].Name, b.objs[0].Name}, {a.objs[0].APIVersion, b.objs[0].APIVersion}, {a.model, b.model}, {a.duty, b.duty}} {
			if p[0] != p[1] {
				return p[0] < p[1]
			}
		}
		return false
	})
	return rows
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

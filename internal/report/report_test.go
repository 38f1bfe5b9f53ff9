package report

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/responsibility-operator/responsibility-operator/api/v1alpha1"
	"github.com/responsibility-operator/responsibility-operator/internal/evaluate"
)

func model(t *testing.T) *evaluate.Model {
	t.Helper()
	m, err := evaluate.Compile(&v1alpha1.ResponsibilityModel{
		Spec: v1alpha1.ResponsibilityModelSpec{
			Service: "s", Provider: "p",
			Targets: []v1alpha1.Target{{APIVersion: "postgresql.cnpg.io/v1", Kind: "Cluster"}},
			Areas: []v1alpha1.Area{
				{Name: "Connection Security", Duties: []v1alpha1.Duty{{Name: "tls", Rule: "true"}}},
				{Name: "Backups", Duties: []v1alpha1.Duty{{Name: "backup", Rule: "true", Severity: v1alpha1.SeverityInfo}}},
			},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	m.Name = "db"
	return m
}

func obj(name string, states map[string]v1alpha1.DutyState) Object {
	duties := map[string]evaluate.DutyAnnotation{}
	for d, s := range states {
		duties[d] = evaluate.DutyAnnotation{State: s, Message: "fix " + d}
	}
	return Object{APIVersion: "postgresql.cnpg.io/v1", Kind: "Cluster", Namespace: "team-a", Name: name, UID: "uid-" + name,
		Duties: map[string]map[string]evaluate.DutyAnnotation{"db": duties}}
}

func TestBuild(t *testing.T) {
	models := map[string]*evaluate.Model{"db": model(t)}
	objects := []Object{
		obj("orders", map[string]v1alpha1.DutyState{"tls": v1alpha1.DutyMet, "backup": v1alpha1.DutyUnmet}),
		obj("audit", map[string]v1alpha1.DutyState{"tls": v1alpha1.DutyUnknown, "backup": v1alpha1.DutyWaived}),
	}
	tests := []struct {
		name        string
		gvk         schema.GroupVersionKind
		max         int
		wantReports []string
		wantSummary []map[string]int64
		wantOrder   []string // name/rule of every result, in order
	}{
		{
			name: "one report", gvk: OpenReports, max: 100, wantReports: []string{"responsibility-operator"},
			wantSummary: []map[string]int64{{"pass": 1, "fail": 1, "warn": 0, "error": 1, "skip": 1}},
			wantOrder:   []string{"audit/backup", "audit/tls", "orders/backup", "orders/tls"},
		},
		{
			name: "chunks of at most max results", gvk: WGPolicy, max: 3, wantReports: []string{"responsibility-operator", "responsibility-operator-2"},
			wantSummary: []map[string]int64{{"pass": 0, "fail": 1, "warn": 0, "error": 1, "skip": 1}, {"pass": 1, "fail": 0, "warn": 0, "error": 0, "skip": 0}},
			wantOrder:   []string{"audit/backup", "audit/tls", "orders/backup", "orders/tls"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reports := Build(tt.gvk, "team-a", objects, models, tt.max)
			if len(reports) != len(tt.wantReports) {
				t.Fatalf("%d reports, want %d", len(reports), len(tt.wantReports))
			}
			var order []string
			for i, r := range reports {
				if r.GetName() != tt.wantReports[i] || r.GetNamespace() != "team-a" || r.GroupVersionKind() != tt.gvk {
					t.Errorf("report %d is %s %s/%s", i, r.GroupVersionKind(), r.GetNamespace(), r.GetName())
				}
				if _, has := r.Object["source"]; has != (tt.gvk == OpenReports) {
					t.Errorf("report-level source present = %v for %s", has, tt.gvk.Kind)
				}
				summary := r.Object["summary"].(map[string]any)
				for k, v := range tt.wantSummary[i] {
					if summary[k] != v {
						t.Errorf("report %d summary %s = %v, want %d", i, k, summary[k], v)
					}
				}
				for _, res := range r.Object["results"].([]any) {
					m := res.(map[string]any)
					ref := m["resources"].([]any)[0].(map[string]any)
					order = append(order, ref["name"].(string)+"/"+m["rule"].(string))
				}
			}
			if len(order) != len(tt.wantOrder) {
				t.Fatalf("results %v, want %v", order, tt.wantOrder)
			}
			for i := range order {
				if order[i] != tt.wantOrder[i] {
					t.Fatalf("results %v, want %v", order, tt.wantOrder)
				}
			}
		})
	}
}

func TestResultFields(t *testing.T) {
	reports := Build(OpenReports, "team-a", []Object{obj("orders", map[string]v1alpha1.DutyState{"backup": v1alpha1.DutyUnmet})},
		map[string]*evaluate.Model{"db": model(t)}, 0)
	res := reports[0].Object["results"].([]any)[0].(map[string]any)
	want := map[string]any{"policy": "db", "rule": "backup", "result": "fail", "category": "Backups", "severity": "low", "message": "fix backup", "source": Source}
	for k, v := range want {
		if res[k] != v {
			t.Errorf("%s = %v, want %v", k, res[k], v)
		}
	}
	ref := res["resources"].([]any)[0].(map[string]any)
	if ref["kind"] != "Cluster" || ref["uid"] != "uid-orders" || ref["namespace"] != "team-a" {
		t.Errorf("resource = %v", ref)
	}
	// A duty of a model that is gone keeps its result, without category.
	reports = Build(OpenReports, "team-a", []Object{obj("orders", map[string]v1alpha1.DutyState{"backup": v1alpha1.DutyUnmet})}, nil, 0)
	if _, has := reports[0].Object["results"].([]any)[0].(map[string]any)["category"]; has {
		t.Error("category for a duty whose model is unknown")
	}
	if got := Build(OpenReports, "team-a", nil, nil, 0); len(got) != 0 {
		t.Errorf("%d reports for a namespace without results", len(got))
	}
}

// A namespace-wide duty is one result of the namespace, listing the objects
// that share its state and message; another state (a waiver on one object)
// is a result of its own. A chunk counts resources, so a group never makes a
// report larger than maxResults object results would.
func TestBuildNamespaceFindings(t *testing.T) {
	models := map[string]*evaluate.Model{"db": model(t)}
	nsWide := func(o Object, s v1alpha1.DutyState) Object {
		o.Duties["db"]["backup"] = evaluate.DutyAnnotation{State: s, Message: "no backup in team-a", Scope: evaluate.ScopeNamespace}
		return o
	}
	var objects []Object
	for _, name := range []string{"e", "d", "c", "b"} {
		objects = append(objects, nsWide(obj(name, map[string]v1alpha1.DutyState{"tls": v1alpha1.DutyMet}), v1alpha1.DutyUnmet))
	}
	objects = append(objects, nsWide(obj("a", map[string]v1alpha1.DutyState{"tls": v1alpha1.DutyMet}), v1alpha1.DutyWaived))

	describe := func(reports []*unstructured.Unstructured) (out []string) {
		for _, r := range reports {
			var results []string
			for _, res := range r.Object["results"].([]any) {
				m := res.(map[string]any)
				var names []string
				for _, ref := range m["resources"].([]any) {
					names = append(names, ref.(map[string]any)["name"].(string))
				}
				p := ""
				if props, ok := m["properties"].(map[string]any); ok {
					p = fmt.Sprintf(" %v/%v", props["scope"], props["objects"])
				}
				results = append(results, fmt.Sprintf("%s %s [%s]%s", m["rule"], m["result"], strings.Join(names, " "), p))
			}
			out = append(out, strings.Join(results, "; "))
		}
		return out
	}
	for _, tt := range []struct {
		max  int
		want []string
	}{
		{100, []string{"backup skip [a] Namespace/1; tls pass [a]; backup fail [b c d e] Namespace/4; tls pass [b]; tls pass [c]; tls pass [d]; tls pass [e]"}},
		{3, []string{
			"backup skip [a] Namespace/1; tls pass [a]",
			"backup fail [b c d] Namespace/3",
			"tls pass [b]; tls pass [c]; tls pass [d]",
			"backup fail [e] Namespace/1; tls pass [e]",
		}},
	} {
		got := describe(Build(OpenReports, "team-a", objects, models, tt.max))
		if !slices.Equal(got, tt.want) {
			t.Errorf("max %d:\n got %q\nwant %q", tt.max, got, tt.want)
		}
	}
}

package evaluate

import (
	"strings"
	"testing"

	"github.com/responsibility-operator/responsibility-operator/api/v1alpha1"
)

func TestAdmissionExpr(t *testing.T) {
	params := map[string]any{"minTLS": "TLSv1.3", "quoted": `it's "quoted" \ here`, "maxAge": "26h"}
	for _, tc := range []struct {
		name, expr        string
		want, wantOld     string
		why               string
		wantErrorContains string
	}{
		{name: "object only", expr: `object.spec.replicas > 1`,
			want: `object.spec.replicas > 1`, wantOld: `oldObject.spec.replicas > 1`},
		{name: "a parameter becomes a literal", expr: `object.spec.?tls.orValue("") == params.minTLS`,
			want: `object.spec.?tls.orValue("") == "TLSv1.3"`, wantOld: `oldObject.spec.?tls.orValue("") == "TLSv1.3"`},
		{name: "quotes and backslashes survive", expr: `object.metadata.name != params.quoted`,
			want: `object.metadata.name != "it's \"quoted\" \\ here"`, wantOld: `oldObject.metadata.name != "it's \"quoted\" \\ here"`},
		{name: "a parameter inside a macro", expr: `object.spec.items.all(i, i.size() < int(params.maxAge.size()))`,
			want: `object.spec.items.all(i, i.size() < int("26h".size()))`, wantOld: `oldObject.spec.items.all(i, i.size() < int("26h".size()))`},
		{name: "a conversion of a parameter", expr: `duration(params.maxAge) > duration("1h")`,
			want: `duration("26h") > duration("1h")`, wantOld: `duration("26h") > duration("1h")`},
		{name: "namespaceObject stays", expr: `namespaceObject.metadata.name != "default" && has(object.spec.x)`,
			want: `namespaceObject.metadata.name != "default" && has(object.spec.x)`, wantOld: `namespaceObject.metadata.name != "default" && has(oldObject.spec.x)`},
		{name: "related objects", expr: `related.schedules.exists(s, s.spec.cluster.name == object.metadata.name)`, why: "reads related objects"},
		{name: "now", expr: `timestamp(object.spec.until) > now - duration(params.maxAge)`, why: "reads now"},
		{name: "params as a whole", expr: `"minTLS" in params`, why: "reads params other than as params.<name>"},
		{name: "status", expr: `object.status.phase == "Ready"`, why: "reads status, which the object's controller writes after it is admitted"},
		{name: "optional status", expr: `object.?status.?ready.orValue(false)`, why: "reads status, which the object's controller writes after it is admitted"},
		{name: "has status", expr: `!has(object.status) || has(object.spec.x)`, why: "reads status, which the object's controller writes after it is admitted"},
		{name: "a field named status elsewhere", expr: `object.spec.status == "on"`, want: `object.spec.status == "on"`, wantOld: `oldObject.spec.status == "on"`},
		{name: "a syntax error", expr: `object.spec.(`, wantErrorContains: "Syntax error"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, old, why, err := admissionExpr(tc.expr, params)
			if tc.wantErrorContains != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErrorContains) {
					t.Fatalf("error %v, want one with %q", err, tc.wantErrorContains)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want || old != tc.wantOld || why != tc.why {
				t.Errorf("admissionExpr(%s)\n got  %q, %q, why %q\n want %q, %q, why %q", tc.expr, got, old, why, tc.want, tc.wantOld, tc.why)
			}
		})
	}
}

// TestAdmissionActions compiles models with admission actions: the duty's
// own action wins over the model's, None leaves a duty out, and Deny on a
// duty the API server cannot evaluate is refused while Warn on it is kept
// as NotEvaluable.
func TestAdmissionActions(t *testing.T) {
	related := []v1alpha1.RelatedResource{{Name: "schedules", APIVersion: "postgresql.cnpg.io/v1", Kind: "ScheduledBackup"}}
	model := func(def v1alpha1.AdmissionAction, duties ...v1alpha1.Duty) *v1alpha1.ResponsibilityModel {
		return &v1alpha1.ResponsibilityModel{Spec: v1alpha1.ResponsibilityModelSpec{
			Service: "s", Provider: "p", Admission: def,
			Targets: []v1alpha1.Target{{APIVersion: "v1", Kind: "ConfigMap"}},
			Areas:   []v1alpha1.Area{{Name: "a", Provider: "p", Customer: "c", Duties: duties}},
		}}
	}
	objectDuty := func(name string, a v1alpha1.AdmissionAction) v1alpha1.Duty {
		return v1alpha1.Duty{Name: name, Rule: `has(object.data)`, Message: "m", Admission: a}
	}
	relatedDuty := func(name string, a v1alpha1.AdmissionAction) v1alpha1.Duty {
		return v1alpha1.Duty{Name: name, Rule: `related.schedules.size() > 0`, Related: related, Admission: a}
	}
	for _, tc := range []struct {
		name    string
		rm      *v1alpha1.ResponsibilityModel
		want    string // name=action[!] per admission duty, ! for NotEvaluable
		wantErr string
	}{
		{"no admission", model("", objectDuty("a", "")), "", ""},
		{"the model's default", model(v1alpha1.AdmissionWarn, objectDuty("a", ""), objectDuty("b", "")), "a=Warn b=Warn", ""},
		{"a duty's own action wins", model(v1alpha1.AdmissionWarn, objectDuty("a", v1alpha1.AdmissionDeny), objectDuty("b", v1alpha1.AdmissionNone)), "a=Deny", ""},
		{"Warn on a related duty is the operator's only", model(v1alpha1.AdmissionWarn, relatedDuty("r", "")), "r=Warn!", ""},
		{"a default Deny on a related duty is refused too (override it with Warn or None)", model(v1alpha1.AdmissionDeny, relatedDuty("r", ""), objectDuty("a", "")), "", "admission Deny needs a duty the API server can evaluate"},
		{"a default Deny with the related duty overridden", model(v1alpha1.AdmissionDeny, relatedDuty("r", v1alpha1.AdmissionWarn), objectDuty("a", "")), "r=Warn! a=Deny", ""},
		{"Deny on a related duty is refused", model("", relatedDuty("r", v1alpha1.AdmissionDeny)), "", "spec.areas[0].duties[0].admission: admission Deny needs a duty the API server can evaluate, and its rule reads related objects"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := Compile(tc.rm)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Compile: %v, want an error with %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, d := range m.Admission() {
				s := d.Name + "=" + string(d.Action)
				if d.NotEvaluable != "" {
					s += "!"
				}
				got = append(got, s)
			}
			if strings.Join(got, " ") != tc.want {
				t.Errorf("admission duties %q, want %q", strings.Join(got, " "), tc.want)
			}
		})
	}
}

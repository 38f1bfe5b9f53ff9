package evaluate

import (
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/responsibility-operator/responsibility-operator/api/v1alpha1"
)

// evidenceModel has one duty that reads `now` and a parameter: the last
// successful backup of the object is younger than params.backupMaxAge.
func evidenceModel(mutate ...func(*v1alpha1.ResponsibilityModel)) *v1alpha1.ResponsibilityModel {
	return model("evidence", append([]func(*v1alpha1.ResponsibilityModel){func(rm *v1alpha1.ResponsibilityModel) {
		rm.Spec.Parameters = []v1alpha1.Parameter{{Name: "backupMaxAge", Value: "26h"}}
		rm.Spec.Areas = []v1alpha1.Area{{Name: "Backups", Provider: "Backup storage", Customer: "Backup verification",
			Duties: []v1alpha1.Duty{{Name: "backup-recent",
				Rule: `object.?status.?lastSuccessfulBackup.hasValue() &&
					now - timestamp(object.status.lastSuccessfulBackup) < duration(params.backupMaxAge)`,
				MessageExpression: `object.?status.?lastSuccessfulBackup.hasValue()
					? "The last successful backup finished at " + object.status.lastSuccessfulBackup + ", longer than " + params.backupMaxAge + " ago"
					: "No backup has succeeded yet"`}}}}
	}}, mutate...)...)
}

func TestRulesReadNowAndParams(t *testing.T) {
	now := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	withStatus := func(last string) map[string]any {
		obj := cluster("orders", nil, map[string]any{}, nil)
		if last != "" {
			obj["status"] = map[string]any{"lastSuccessfulBackup": last}
		}
		return obj
	}
	tests := []struct {
		name        string
		object      map[string]any
		maxAge      string
		wantState   v1alpha1.DutyState
		wantMessage string
	}{
		{"recent", withStatus("2026-12-03T02:00:00Z"), "26h", v1alpha1.DutyMet, ""},
		{"stale", withStatus("2026-12-01T02:00:00Z"), "26h", v1alpha1.DutyUnmet,
			"The last successful backup finished at 2026-12-01T02:00:00Z, longer than 26h ago"},
		{"stale for a longer window too", withStatus("2026-12-01T02:00:00Z"), "48h", v1alpha1.DutyUnmet, ""},
		{"recent for a longer window", withStatus("2026-12-01T12:00:00Z"), "48h", v1alpha1.DutyMet, ""},
		{"no evidence yet", withStatus(""), "26h", v1alpha1.DutyUnmet, "No backup has succeeded yet"},
		{"not a time", withStatus("yesterday"), "26h", v1alpha1.DutyUnknown, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := mustCompile(t, evidenceModel(func(rm *v1alpha1.ResponsibilityModel) {
				rm.Spec.Parameters[0].Value = tt.maxAge
			}))
			res := Evaluate([]*Model{m}, Input{GVK: clusterGVK, Object: tt.object, Now: now})
			d := res.Duties[0]
			if d.State != tt.wantState || (tt.wantMessage != "" && d.Message != tt.wantMessage) {
				t.Errorf("got %s %q, want %s %q", d.State, d.Message, tt.wantState, tt.wantMessage)
			}
			if res.Recheck != DefaultRecheckInterval {
				t.Errorf("Recheck = %s, want %s", res.Recheck, DefaultRecheckInterval)
			}
		})
	}
}

func TestRecheckOnlyForRulesThatReadNow(t *testing.T) {
	tests := []struct {
		name string
		rm   *v1alpha1.ResponsibilityModel
		want time.Duration
	}{
		{"time-free rules", model("plain"), 0},
		{"a rule reads now", evidenceModel(), DefaultRecheckInterval},
		{"a message reads now", model("message", func(rm *v1alpha1.ResponsibilityModel) {
			rm.Spec.Areas[0].Duties[0].MessageExpression = `"Checked at " + string(now)`
		}), DefaultRecheckInterval},
		{"a comprehension variable named now", model("shadow", func(rm *v1alpha1.ResponsibilityModel) {
			rm.Spec.Areas[0].Duties[0].Rule = `[1, 2].all(now, now > 0)`
		}), 0},
		{"an interval of its own", evidenceModel(func(rm *v1alpha1.ResponsibilityModel) {
			rm.Spec.RecheckInterval = &metav1.Duration{Duration: 30 * time.Second}
		}), 30 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := mustCompile(t, tt.rm).Recheck; got != tt.want {
				t.Errorf("Recheck = %s, want %s", got, tt.want)
			}
		})
	}
	// The shortest interval of the matching models applies.
	short := mustCompile(t, evidenceModel(func(rm *v1alpha1.ResponsibilityModel) {
		rm.Name = "short"
		rm.Spec.RecheckInterval = &metav1.Duration{Duration: time.Minute}
	}))
	res := Evaluate([]*Model{mustCompile(t, evidenceModel()), short, mustCompile(t, model("plain"))},
		Input{GVK: clusterGVK, Object: cluster("orders", nil, map[string]any{}, nil)})
	if res.Recheck != time.Minute {
		t.Errorf("Recheck of three models = %s, want 1m", res.Recheck)
	}
}

func TestParamsAndRecheckErrors(t *testing.T) {
	tests := []struct {
		name string
		rm   *v1alpha1.ResponsibilityModel
		want string
	}{
		{"a parameter that is not declared", evidenceModel(func(rm *v1alpha1.ResponsibilityModel) {
			rm.Spec.Parameters[0].Name = "maxAge"
		}), "backupMaxAge"},
		{"a duplicate parameter", evidenceModel(func(rm *v1alpha1.ResponsibilityModel) {
			rm.Spec.Parameters = append(rm.Spec.Parameters, rm.Spec.Parameters[0])
		}), `duplicate parameter "backupMaxAge"`},
		{"a parameter a rule reads as a duration that is not one", evidenceModel(func(rm *v1alpha1.ResponsibilityModel) {
			rm.Spec.Parameters[0].Value = "7d"
		}), `spec.parameters[0].value: "7d" is not a valid duration, as duty backup-recent reads it with duration(params.backupMaxAge)`},
		{"a parameter read as an int that is not one", evidenceModel(func(rm *v1alpha1.ResponsibilityModel) {
			rm.Spec.Parameters = append(rm.Spec.Parameters, v1alpha1.Parameter{Name: "replicas", Value: "two"})
			rm.Spec.Areas[0].Duties[0].Rule = `object.spec.?instances.orValue(1) >= int(params.replicas)`
		}), `spec.parameters[1].value: "two" is not a valid int`},
		{"a re-check interval under 10s", evidenceModel(func(rm *v1alpha1.ResponsibilityModel) {
			rm.Spec.RecheckInterval = &metav1.Duration{Duration: time.Second}
		}), "spec.recheckInterval: must be at least 10s"},
		{"now is a timestamp", model("typed", func(rm *v1alpha1.ResponsibilityModel) {
			rm.Spec.Areas[0].Duties[0].Rule = `now > 3`
		}), "found no matching overload"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Compile(tt.rm)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Compile error = %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestWaiverExpiry(t *testing.T) {
	now := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	later := "2026-12-10T00:00:00Z"
	tests := []struct {
		name        string
		waiver      string
		policy      func(*v1alpha1.ResponsibilityModel)
		wantState   v1alpha1.DutyState
		wantMessage string
		wantIgnored string
		wantNext    string
	}{
		{name: "no expiry", waiver: "migrating", wantState: v1alpha1.DutyWaived, wantMessage: "waived: migrating"},
		{name: "expires later", waiver: "expires " + later + ": migrating", wantState: v1alpha1.DutyWaived,
			wantMessage: "waived until " + later + ": migrating", wantNext: later},
		{name: "expired", waiver: "expires 2026-12-03T10:00:00Z: migrating", wantState: v1alpha1.DutyUnmet,
			wantIgnored: "it expired at 2026-12-03T10:00:00Z"},
		{name: "an expiry that is not a time", waiver: "expires next week: migrating", wantState: v1alpha1.DutyUnmet,
			wantIgnored: `its expiry "next week" is not an RFC 3339 time`},
		{name: "expiry required", waiver: "migrating", wantState: v1alpha1.DutyUnmet,
			policy:      func(rm *v1alpha1.ResponsibilityModel) { rm.Spec.WaiverExpiry = &v1alpha1.WaiverExpiry{Required: true} },
			wantIgnored: "model m requires an expiry"},
		{name: "within the longest expiry", waiver: "expires " + later + ": migrating", wantState: v1alpha1.DutyWaived,
			policy: func(rm *v1alpha1.ResponsibilityModel) {
				rm.Spec.WaiverExpiry = &v1alpha1.WaiverExpiry{Required: true, MaxDuration: &metav1.Duration{Duration: 30 * 24 * time.Hour}}
			},
			wantMessage: "waived until " + later + ": migrating", wantNext: later},
		{name: "beyond the longest expiry", waiver: "expires " + later + ": migrating", wantState: v1alpha1.DutyUnmet,
			policy: func(rm *v1alpha1.ResponsibilityModel) {
				rm.Spec.WaiverExpiry = &v1alpha1.WaiverExpiry{MaxDuration: &metav1.Duration{Duration: 24 * time.Hour}}
			},
			wantIgnored: "it expires more than 24h0m0s from now", wantNext: "2026-12-09T00:00:00Z"},
		{name: "waivers forbidden", waiver: "expires " + later + ": migrating", wantState: v1alpha1.DutyUnmet,
			policy:      func(rm *v1alpha1.ResponsibilityModel) { rm.Spec.Waivers = v1alpha1.WaiversForbidden },
			wantIgnored: "model m forbids waivers"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rm := model("m")
			if tt.policy != nil {
				tt.policy(rm)
			}
			obj := cluster("orders", nil, map[string]any{}, map[string]any{v1alpha1.AnnotationWaivePrefix + "tls-enforced": tt.waiver})
			res := Evaluate([]*Model{mustCompile(t, rm)}, Input{GVK: clusterGVK, Object: obj, Now: now})
			var d DutyResult
			for _, dr := range res.Duties {
				if dr.Duty.Name == "tls-enforced" {
					d = dr
				}
			}
			if d.State != tt.wantState || (tt.wantMessage != "" && d.Message != tt.wantMessage) {
				t.Errorf("tls-enforced: %s %q, want %s %q", d.State, d.Message, tt.wantState, tt.wantMessage)
			}
			ignored := ""
			for _, w := range res.IgnoredWaivers {
				ignored += w.Reason
			}
			if (tt.wantIgnored == "") != (ignored == "") || !strings.Contains(ignored, tt.wantIgnored) {
				t.Errorf("ignored waivers %q, want %q", ignored, tt.wantIgnored)
			}
			next := ""
			if !res.NextChange.IsZero() {
				next = res.NextChange.Format(time.RFC3339)
			}
			if next != tt.wantNext {
				t.Errorf("NextChange = %q, want %q", next, tt.wantNext)
			}
		})
	}
}

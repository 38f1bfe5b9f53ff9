package plugin

import (
	"bytes"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/responsibility-operator/responsibility-operator/api/v1alpha1"
)

func TestExpiresText(t *testing.T) {
	now := time.Date(2026, time.August, 1, 12, 0, 0, 0, time.UTC)
	at := func(d time.Duration) *time.Time {
		v := now.Add(d)
		return &v
	}
	for _, tc := range []struct {
		name string
		row  WaiverRow
		want string
	}{
		{"no expiry", WaiverRow{}, "never"},
		{"in days", WaiverRow{Expires: at(12*24*time.Hour + 5*time.Hour)}, "2026-08-13T17:00:00Z (in 12d)"},
		{"in hours", WaiverRow{Expires: at(5*time.Hour + 30*time.Minute)}, "2026-08-01T17:30:00Z (in 5h30m)"},
		{"in a minute", WaiverRow{Expires: at(90 * time.Second)}, "2026-08-01T12:01:30Z (in 90s)"},
		{"in years", WaiverRow{Expires: at(3 * 365 * 24 * time.Hour)}, "2029-07-31T12:00:00Z (in 3y)"},
		{"at the instant it expires", WaiverRow{Expires: at(0)}, "2026-08-01T12:00:00Z (expired 0s ago)"},
		{"expired hours ago", WaiverRow{Expires: at(-3 * time.Hour)}, "2026-08-01T09:00:00Z (expired 3h ago)"},
		{"expired days ago", WaiverRow{Expires: at(-40 * 24 * time.Hour)}, "2026-06-22T12:00:00Z (expired 40d ago)"},
		{"not UTC", WaiverRow{Expires: func() *time.Time {
			v := time.Date(2026, time.August, 2, 14, 0, 0, 0, time.FixedZone("CEST", 2*3600))
			return &v
		}()}, "2026-08-02T12:00:00Z (in 24h)"},
		{"invalid", WaiverRow{InvalidExpiry: "next week"}, `invalid: "next week"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := expiresText(tc.row, now); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestSortWaivers(t *testing.T) {
	day := func(d int) *time.Time {
		v := time.Date(2026, time.August, d, 0, 0, 0, 0, time.UTC)
		return &v
	}
	rows := []WaiverRow{
		{Namespace: "b", Name: "never-b"},
		{Namespace: "a", Name: "late", Expires: day(20)},
		{Namespace: "a", Name: "never-a"},
		{Namespace: "b", Name: "expired", Expires: day(1)},
		{Namespace: "a", Name: "soon", Expires: day(3)},
		{Namespace: "a", Name: "soon-too", Expires: day(3), Source: sourceAnnotation},
		{Namespace: "a", Name: "soon-too", Expires: day(3), Source: sourceDutyWaiver},
	}
	sortWaivers(rows)
	var got []string
	for _, r := range rows {
		got = append(got, r.Name+"/"+r.Source)
	}
	want := []string{"expired/", "soon/", "soon-too/DutyWaiver", "soon-too/annotation", "late/", "never-a/", "never-b/"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("order\n  got  %q\n  want %q", got, want)
	}
}

func TestDutyWaiverRow(t *testing.T) {
	now := time.Date(2026, time.August, 1, 12, 0, 0, 0, time.UTC)
	cond := func(typ string, status metav1.ConditionStatus, reason, message string) metav1.Condition {
		return metav1.Condition{Type: typ, Status: status, Reason: reason, Message: message}
	}
	accepted := cond(v1alpha1.ConditionWaiverAccepted, metav1.ConditionTrue, v1alpha1.ReasonWaiverAccepted, "accepted")
	active := cond(v1alpha1.ConditionWaiverActive, metav1.ConditionTrue, v1alpha1.ReasonWaiverActive, "active")
	for _, tc := range []struct {
		name        string
		expires     time.Duration // 0: none
		conditions  []metav1.Condition
		wantActive  string
		wantMessage string
	}{
		{name: "active", conditions: []metav1.Condition{accepted, active}, wantActive: "True"},
		{name: "before the operator's status", wantActive: "Unknown"},
		{name: "some duties not found", conditions: []metav1.Condition{
			cond(v1alpha1.ConditionWaiverAccepted, metav1.ConditionFalse, v1alpha1.ReasonDutyNotFound, "no duty x"), active,
		}, wantActive: "True (DutyNotFound)", wantMessage: "no duty x"},
		{name: "not accepted", conditions: []metav1.Condition{
			cond(v1alpha1.ConditionWaiverAccepted, metav1.ConditionFalse, v1alpha1.ReasonWaiversNotAccepted, "model m forbids"),
			cond(v1alpha1.ConditionWaiverActive, metav1.ConditionFalse, v1alpha1.ReasonWaiverNotAccepted, "applies to no duty"),
		}, wantActive: "NotAccepted", wantMessage: "model m forbids"},
		{name: "expired, as the status says", expires: -time.Hour, conditions: []metav1.Condition{
			accepted, cond(v1alpha1.ConditionWaiverActive, metav1.ConditionFalse, v1alpha1.ReasonWaiverExpired, "expired"),
		}, wantActive: "Expired"},
		{name: "expired before the status says so", expires: -time.Second, conditions: []metav1.Condition{accepted, active}, wantActive: "Expired"},
		{name: "expires later", expires: time.Hour, conditions: []metav1.Condition{accepted, active}, wantActive: "True"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dw := &v1alpha1.DutyWaiver{
				ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "w"},
				Spec: v1alpha1.DutyWaiverSpec{Model: "m", Duties: []string{"d"}, Reason: "why", Ticket: "T-1",
					GrantedBy: &v1alpha1.WaiverGrant{User: "alice"}},
				Status: v1alpha1.DutyWaiverStatus{Conditions: tc.conditions, WaivedObjects: 2},
			}
			if tc.expires != 0 {
				dw.Spec.Expires = &metav1.Time{Time: now.Add(tc.expires)}
			}
			r := dutyWaiverRow(dw, now)
			if r.Active != tc.wantActive || r.Message != tc.wantMessage {
				t.Errorf("active %q, message %q; want %q, %q", r.Active, r.Message, tc.wantActive, tc.wantMessage)
			}
			if r.Expired != (tc.expires < 0) {
				t.Errorf("expired %v with expiry %s from now", r.Expired, tc.expires)
			}
			if r.Source != sourceDutyWaiver || r.Name != "w" || r.Model != "m" || r.GrantedBy != "alice" || r.Ticket != "T-1" || r.WaivedObjects != 2 {
				t.Errorf("row %+v", r)
			}
		})
	}
}

func TestAnnotationWaiverRows(t *testing.T) {
	now := time.Date(2026, time.August, 1, 12, 0, 0, 0, time.UTC)
	duties := `{"m":{"met":{"state":"Met"},"unmet":{"state":"Unmet","message":"x"},"waived":{"state":"Waived","message":"waived: r"},` +
		`"by-dw":{"state":"Waived","message":"waived by DutyWaiver w","waiver":"w"}}}`
	for _, tc := range []struct {
		name        string
		value       string
		duty        string
		ignored     string
		policy      v1alpha1.WaiverPolicy // "": the user may not read models
		duties      string
		wantActive  string
		wantWaived  int32
		wantExpires string
		wantReason  string
	}{
		{name: "applies", duty: "waived", value: "r", wantActive: "True", wantWaived: 1, wantReason: "r"},
		{name: "applies with an expiry", duty: "waived", value: "expires 2026-09-01T00:00:00Z: later", wantActive: "True", wantWaived: 1,
			wantExpires: "2026-09-01T00:00:00Z", wantReason: "later"},
		{name: "on a met duty", duty: "met", value: "r", policy: v1alpha1.WaiversAnnotations, wantActive: "True", wantReason: "r"},
		{name: "a DutyWaiver waives the duty", duty: "by-dw", value: "r", wantActive: "True", wantReason: "r"},
		{name: "expired", duty: "unmet", value: "expires 2026-07-01T00:00:00Z: before", ignored: "unmet", wantActive: "Expired",
			wantExpires: "2026-07-01T00:00:00Z", wantReason: "before"},
		{name: "ignored, the policy unknown", duty: "unmet", value: "r", ignored: "unmet", wantActive: "NotAccepted", wantReason: "r"},
		{name: "DutyWaivers only", duty: "met", value: "r", policy: v1alpha1.WaiversDutyWaivers, wantActive: "NotAccepted", wantReason: "r"},
		{name: "forbidden", duty: "met", value: "r", policy: v1alpha1.WaiversForbidden, wantActive: "NotAccepted", wantReason: "r"},
		{name: "invalid expiry", duty: "met", value: "expires soon: r", policy: v1alpha1.WaiversAllowed, wantActive: "NotAccepted", wantReason: "r"},
		{name: "no such duty", duty: "nope", value: "r", wantActive: "DutyNotFound", wantReason: "r"},
		{name: "duties unreadable", duty: "met", value: "r", duties: "{", wantActive: "Unknown", wantReason: "r"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.duties == "" {
				tc.duties = duties
			}
			obj := Flagged{
				GVK: schema.GroupVersionKind{Group: "g.io", Version: "v1", Kind: "Thing"}, Namespace: "ns", Name: "o",
				Annotations: map[string]string{
					v1alpha1.AnnotationDuties:                tc.duties,
					v1alpha1.AnnotationIgnoredWaivers:        tc.ignored,
					v1alpha1.AnnotationWaivePrefix + tc.duty: tc.value,
				},
			}
			var policies map[string]v1alpha1.WaiverPolicy
			if tc.policy != "" {
				policies = map[string]v1alpha1.WaiverPolicy{"m": tc.policy}
			}
			rows := annotationWaiverRows([]Flagged{obj, {Name: "unannotated", Annotations: map[string]string{v1alpha1.AnnotationDuties: duties}}}, policies, now)
			if len(rows) != 1 {
				t.Fatalf("%d rows: %+v", len(rows), rows)
			}
			r := rows[0]
			expires := ""
			if r.Expires != nil {
				expires = r.Expires.Format(time.RFC3339)
			}
			if r.Active != tc.wantActive || r.WaivedObjects != tc.wantWaived || expires != tc.wantExpires || r.Reason != tc.wantReason {
				t.Errorf("active %q, waived %d, expires %q, reason %q; want %q, %d, %q, %q",
					r.Active, r.WaivedObjects, expires, r.Reason, tc.wantActive, tc.wantWaived, tc.wantExpires, tc.wantReason)
			}
			if tc.wantActive != "True" && tc.wantActive != "Expired" && r.Message == "" {
				t.Errorf("%s without a message", r.Active)
			}
			if r.Source != sourceAnnotation || r.Name != "thing.g.io/o" || r.Object == nil || r.Object.Name != "o" || strings.Join(r.Duties, ",") != tc.duty {
				t.Errorf("row %+v", r)
			}
		})
	}
}

// TestTableFit: a table too wide for the terminal even wrapped leaves out
// its optional columns in their order, as few as it can, and keeps its
// wrap and state columns on the right cells.
func TestTableFit(t *testing.T) {
	build := func(width int) (*table, []string) {
		tb := newTable("NAME", "STATE", "OWNER", "NOTE", "TICKET", "MESSAGE")
		tb.stateColumn = 1
		tb.wrap, tb.width = []int{3, 5}, width
		tb.optional = []string{"TICKET", "OWNER"}
		tb.add("first", "Unmet", strings.Repeat("o", 30), "a short note", strings.Repeat("t", 40), strings.Repeat("word ", 20))
		return tb, tb.fit()
	}
	for _, tc := range []struct {
		width   int
		dropped []string
	}{
		{0, nil},
		{300, nil},
		{130, []string{"TICKET"}},
		{89, []string{"TICKET"}},
		{88, []string{"TICKET", "OWNER"}},
		{40, []string{"TICKET", "OWNER"}},
	} {
		tb, dropped := build(tc.width)
		if strings.Join(dropped, ",") != strings.Join(tc.dropped, ",") {
			t.Errorf("width %d: dropped %q, want %q", tc.width, dropped, tc.dropped)
		}
		for _, d := range dropped {
			if strings.Contains(strings.Join(tb.headers, " "), d) {
				t.Errorf("width %d: %s still a header: %q", tc.width, d, tb.headers)
			}
		}
		if tb.headers[tb.stateColumn] != "STATE" || len(tb.rows[0]) != len(tb.headers) {
			t.Errorf("width %d: headers %q, state column %d, row %q", tc.width, tb.headers, tb.stateColumn, tb.rows[0])
		}
		var wrapped []string
		for _, i := range tb.wrap {
			wrapped = append(wrapped, tb.headers[i])
		}
		if strings.Join(wrapped, ",") != "NOTE,MESSAGE" {
			t.Errorf("width %d: wrap columns %q", tc.width, wrapped)
		}
		var b bytes.Buffer
		if err := tb.print(&b, false); err != nil {
			t.Fatal(err)
		}
		if tc.width >= 88 {
			for line := range strings.SplitSeq(strings.TrimRight(b.String(), "\n"), "\n") {
				if n := len(strings.TrimRight(line, " ")); n > tc.width {
					t.Errorf("width %d: a line of %d: %q", tc.width, n, line)
				}
			}
		}
	}
}

package controller

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/responsibility-operator/responsibility-operator/internal/report"
)

func getReport(ns string) (*unstructured.Unstructured, error) {
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(report.OpenReports)
	err := k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: report.Name}, u)
	return u, err
}

// reportRows summarises a report as name/rule=result[category], sorted.
func reportRows(u *unstructured.Unstructured) []string {
	var rows []string
	results, _, _ := unstructured.NestedSlice(u.Object, "results")
	for _, r := range results {
		m := r.(map[string]any)
		ref := m["resources"].([]any)[0].(map[string]any)
		rows = append(rows, fmt.Sprintf("%s/%s=%s[%v]", ref["name"], m["rule"], m["result"], m["category"]))
	}
	sort.Strings(rows)
	return rows
}

// With the openreports.io CRD installed (test/crds), each namespace gets a
// Report with one result per object and duty, rewritten only when a result
// changes, and removed when nothing is left to report.
func TestPolicyReports(t *testing.T) {
	stop := startManager(t)
	ns := newNamespace(t, map[string]string{"test": "reports"})
	applyModel(t, dbModel("report-db", "reports"))
	tls := createObject(t, cnpg, "Cluster", ns, "with-tls", nil, tlsSpec())
	createObject(t, cnpg, "Cluster", ns, "without-tls", nil, map[string]any{"instances": int64(1)})

	want := []string{
		"with-tls/backup-scheduled=fail[Backups]", "with-tls/tls-enforced=pass[Connection Security]",
		"without-tls/backup-scheduled=fail[Backups]", "without-tls/tls-enforced=fail[Connection Security]",
	}
	eventually(t, 20*time.Second, func() error {
		u, err := getReport(ns)
		if err != nil {
			return err
		}
		if got := reportRows(u); strings.Join(got, " ") != strings.Join(want, " ") {
			return fmt.Errorf("report results %v, want %v", got, want)
		}
		if pass, _, _ := unstructured.NestedInt64(u.Object, "summary", "pass"); pass != 1 {
			return fmt.Errorf("summary.pass = %d, want 1", pass)
		}
		if fail, _, _ := unstructured.NestedInt64(u.Object, "summary", "fail"); fail != 3 {
			return fmt.Errorf("summary.fail = %d, want 3", fail)
		}
		return nil
	})

	// A change of one result rewrites the report.
	scheduledBackup(t, ns, "with-tls-nightly", tls.GetName())
	eventually(t, 20*time.Second, func() error {
		u, err := getReport(ns)
		if err != nil {
			return err
		}
		if rows := reportRows(u); rows[0] != "with-tls/backup-scheduled=pass[Backups]" {
			return fmt.Errorf("report results %v after the ScheduledBackup", rows)
		}
		return nil
	})

	// A restart re-evaluates everything and rewrites nothing.
	u, err := getReport(ns)
	if err != nil {
		t.Fatal(err)
	}
	rv := u.GetResourceVersion()
	stop()
	startManager(t)
	consistently(t, 4*time.Second, func() error {
		u, err := getReport(ns)
		if err != nil {
			return err
		}
		if u.GetResourceVersion() != rv {
			return fmt.Errorf("report rewritten on restart: resourceVersion %s -> %s", rv, u.GetResourceVersion())
		}
		return nil
	})

	// Without the model nothing is left to report: the report goes.
	deleteModel(t, "report-db")
	eventually(t, 20*time.Second, func() error {
		_, err := getReport(ns)
		switch {
		case apierrors.IsNotFound(err):
			return nil
		case err != nil:
			return err
		}
		return errors.New("report still there")
	})
}

// TestReportHoldOff: a namespace's report waits until its objects have been
// quiet for reportDelay, but never longer than reportMaxDelay after the
// first change of a burst.
func TestReportHoldOff(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	r := &ReportReconciler{}
	if d := r.holdOff("quiet", t0); d != 0 {
		t.Errorf("namespace without changes waits %v, want 0", d)
	}
	r.Changed("ns", t0)
	if d := r.holdOff("ns", t0.Add(4*time.Second)); d != 6*time.Second {
		t.Errorf("4 s after one change: waits %v, want 6s", d)
	}
	// A change every 5 s keeps pushing the report out, up to five minutes.
	for s := 5; s <= 295; s += 5 {
		r.Changed("ns", t0.Add(time.Duration(s)*time.Second))
	}
	if d := r.holdOff("ns", t0.Add(296*time.Second)); d != 4*time.Second {
		t.Errorf("busy namespace at 296 s: waits %v, want 4s (the 5 min bound)", d)
	}
	if d := r.holdOff("ns", t0.Add(300*time.Second)); d != 0 {
		t.Errorf("busy namespace at 300 s: waits %v, want 0", d)
	}
	// Written: the next change starts a new burst.
	r.Changed("ns", t0.Add(301*time.Second))
	if d := r.holdOff("ns", t0.Add(302*time.Second)); d != 9*time.Second {
		t.Errorf("1 s into a new burst: waits %v, want 9s", d)
	}
}

// TestReportHoldOffBacklog: a due report waits while more than
// reportBacklog workload keys wait to be evaluated, but never longer than
// reportBusyMaxDelay after the first change of its burst, and a report a
// model's deletion waits for does not wait at all.
func TestReportHoldOffBacklog(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	backlog := reportBacklog + 1
	r := &ReportReconciler{Backlog: func() int { return backlog }}
	r.Changed("ns", t0)
	for _, c := range []struct {
		at, want time.Duration
	}{
		{reportDelay, reportDelay},                      // quiet, but the backlog is long
		{reportMaxDelay, reportDelay},                   // past the usual bound
		{reportBusyMaxDelay - time.Second, time.Second}, // the backlog's own bound
		{reportBusyMaxDelay, 0},
	} {
		if d := r.holdOff("ns", t0.Add(c.at)); d != c.want {
			t.Errorf("backlog %d, %v after the first change: waits %v, want %v", backlog, c.at, d, c.want)
		}
	}
	backlog = reportBacklog
	r.Changed("drained", t0)
	if d := r.holdOff("drained", t0.Add(reportDelay)); d != 0 {
		t.Errorf("backlog %d, quiet namespace: waits %v, want 0", backlog, d)
	}
	backlog = reportBacklog + 1
	r.Changed("deleting", t0)
	r.urgent = map[string]bool{"deleting": true}
	if d := r.holdOff("deleting", t0); d != 0 {
		t.Errorf("urgent report with a backlog: waits %v, want 0", d)
	}
}

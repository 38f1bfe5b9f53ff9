package plugin

import (
	"bytes"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/responsibility-operator/responsibility-operator/api/v1alpha1"
	sampleset "github.com/responsibility-operator/responsibility-operator/internal/samples"
)

func TestSanitize(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"plain", "Set spec.tls.enabled", "Set spec.tls.enabled"},
		{"newlines and tabs", "line one\n\tline two", "line one line two"},
		{"terminal escape", "ok\x1b[2J\x1b]0;owned\x07", "ok [2J ]0;owned"},
		{"line separator", "a\u2028b", "a b"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := sanitize(tt.in); got != tt.want {
				t.Errorf("sanitize(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestListableResources(t *testing.T) {
	lists := []*metav1.APIResourceList{
		{GroupVersion: "v1", APIResources: []metav1.APIResource{
			{Name: "pods", Kind: "Pod", Namespaced: true, Verbs: metav1.Verbs{"get", "list", "watch"}},
			{Name: "pods/log", Kind: "Pod", Namespaced: true, Verbs: metav1.Verbs{"get"}},
			{Name: "bindings", Kind: "Binding", Namespaced: true, Verbs: metav1.Verbs{"create"}},
		}},
		{GroupVersion: "kubevirt.io/v1", APIResources: []metav1.APIResource{
			{Name: "virtualmachines", Kind: "VirtualMachine", Namespaced: true, Verbs: metav1.Verbs{"list"}},
		}},
	}
	got := listableResources(lists)
	var names []string
	for _, r := range got {
		names = append(names, r.GVR.String()+" "+r.Kind)
	}
	want := []string{"/v1, Resource=pods Pod", "kubevirt.io/v1, Resource=virtualmachines VirtualMachine"}
	if strings.Join(names, ";") != strings.Join(want, ";") {
		t.Errorf("got %q, want %q", names, want)
	}
}

func TestIsOperatorEvent(t *testing.T) {
	tests := []struct {
		controller, reason string
		want               bool
	}{
		{v1alpha1.FieldManager, "Anything", true},
		{"", v1alpha1.EventCustomerDutyUnmet, true},
		{"", "BackOff", false},
		{"cloudnative-pg", v1alpha1.EventCustomerDutyUnmet, false},
	}
	for _, tt := range tests {
		if got := isOperatorEvent(tt.controller, tt.reason); got != tt.want {
			t.Errorf("isOperatorEvent(%q, %q) = %v, want %v", tt.controller, tt.reason, got, tt.want)
		}
	}
}

func TestWaiveHint(t *testing.T) {
	unmet := DutyRow{Model: "m", Duty: "d", State: v1alpha1.DutyUnmet}
	tests := []struct {
		name        string
		duty        DutyRow
		annotations map[string]string
		ignored     []string
		policies    map[string]v1alpha1.WaiverPolicy
		// clusterScoped: the object has no namespace.
		clusterScoped bool
		want          string
	}{
		{name: "met", duty: DutyRow{Model: "m", Duty: "d", State: v1alpha1.DutyMet}, want: ""},
		{name: "unknown cannot be waived", duty: DutyRow{Model: "m", Duty: "d", State: v1alpha1.DutyUnknown}, want: ""},
		{name: "unmet", duty: unmet, want: `responsibility.io/waive.d="<reason>"`},
		{name: "forbidden by the model's spec", duty: unmet, policies: map[string]v1alpha1.WaiverPolicy{"m": v1alpha1.WaiversForbidden}, want: "model m forbids waivers"},
		{name: "ignored, read from ignored-waivers", duty: unmet, annotations: map[string]string{"responsibility.io/waive.d": "x"}, ignored: []string{"d"},
			want: "model m ignores the waiver annotation: see the WaiverIgnored event"},
		{name: "ignored-waivers without the waiver", duty: unmet, ignored: []string{"d"}, want: `responsibility.io/waive.d="<reason>"`},
		{name: "allowed", duty: unmet, policies: map[string]v1alpha1.WaiverPolicy{"m": v1alpha1.WaiversAllowed}, want: `responsibility.io/waive.d="<reason>"`},
		{name: "annotations only", duty: unmet, policies: map[string]v1alpha1.WaiverPolicy{"m": v1alpha1.WaiversAnnotations}, want: `responsibility.io/waive.d="<reason>"`},
		{name: "the default policy", duty: unmet, policies: map[string]v1alpha1.WaiverPolicy{"m": ""}, want: `responsibility.io/waive.d="<reason>"`},
		{name: "DutyWaivers only", duty: unmet, policies: map[string]v1alpha1.WaiverPolicy{"m": v1alpha1.WaiversDutyWaivers},
			want: "ask for a DutyWaiver (model m accepts DutyWaivers only)"},
		{name: "DutyWaivers only, an ignored annotation", duty: unmet, annotations: map[string]string{"responsibility.io/waive.d": "x"}, ignored: []string{"d"},
			policies: map[string]v1alpha1.WaiverPolicy{"m": v1alpha1.WaiversDutyWaivers}, want: "ask for a DutyWaiver (model m accepts DutyWaivers only)"},
		{name: "DutyWaivers only, cluster-scoped", duty: unmet, clusterScoped: true, policies: map[string]v1alpha1.WaiverPolicy{"m": v1alpha1.WaiversDutyWaivers},
			want: "model m accepts DutyWaivers only, which cannot select a cluster-scoped object"},
		{name: "waived by a DutyWaiver", duty: DutyRow{Model: "m", Duty: "d", State: v1alpha1.DutyWaived, Waiver: "w"},
			policies: map[string]v1alpha1.WaiverPolicy{"m": v1alpha1.WaiversDutyWaivers}, want: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := waiveHint(tt.duty, tt.annotations, tt.ignored, tt.policies, !tt.clusterScoped); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestReadAnnotationsMalformed(t *testing.T) {
	a := readAnnotations(map[string]string{
		v1alpha1.AnnotationModels: "m",
		v1alpha1.AnnotationMatrix: `{"m":["not","a","map"]}`,
		v1alpha1.AnnotationDuties: `{"m":{"d":{"state":"Unmet","message":"x"}}}`,
	})
	if !strings.Contains(a.MatrixProblem, v1alpha1.AnnotationMatrix) || a.Matrix != nil {
		t.Errorf("matrix: problem %q, rows %v", a.MatrixProblem, a.Matrix)
	}
	if a.DutiesProblem != "" || len(a.Duties) != 1 || a.Duties[0].State != v1alpha1.DutyUnmet {
		t.Errorf("duties: problem %q, rows %v", a.DutiesProblem, a.Duties)
	}
}

func FuzzReadAnnotations(f *testing.F) {
	f.Add(`{"m":{"a":{"provider":"p","customer":"c"}}}`, `{"m":{"d":{"state":"Unmet","message":"x"}}}`, "d,e")
	f.Add(`{`, `null`, ",")
	f.Add(`[]`, `{"m":null}`, "")
	f.Fuzz(func(t *testing.T, matrix, duties, ignored string) {
		objAnnotations := map[string]string{
			v1alpha1.AnnotationMatrix:         matrix,
			v1alpha1.AnnotationDuties:         duties,
			v1alpha1.AnnotationIgnoredWaivers: ignored,
		}
		a := readAnnotations(objAnnotations)
		for _, d := range a.Duties {
			_ = waiveHint(d, objAnnotations, a.IgnoredWaivers, nil, true)
		}
		_ = unmetRows([]Flagged{{Annotations: objAnnotations}})
	})
}

func TestEventAge(t *testing.T) {
	now := time.Date(2026, 8, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name string
		e    Event
		want string
	}{
		{"once", Event{Count: 1, First: now.Add(-90 * time.Second), Last: now.Add(-90 * time.Second)}, "90s"},
		{"series", Event{Count: 4, First: now.Add(-3 * time.Hour), Last: now.Add(-5 * time.Minute)}, "5m (x4 over 3h)"},
		{"no time", Event{}, "unknown"},
	}
	for _, tt := range tests {
		if got := eventAge(tt.e, now); got != tt.want {
			t.Errorf("%s: got %q, want %q", tt.name, got, tt.want)
		}
	}
}

// TestLintNeverOpensCluster runs lint with a kubeconfig that names an
// unreachable server and a cluster factory that fails the test.
func TestLintNeverOpensCluster(t *testing.T) {
	var out, errOut bytes.Buffer
	flags := genericclioptions.NewConfigFlags(false)
	server := "https://192.0.2.1:6443" // TEST-NET-1: never routed
	flags.APIServer = &server
	o := &Options{
		Streams:     genericiooptions.IOStreams{Out: &out, ErrOut: &errOut},
		ConfigFlags: flags,
		Now:         time.Now,
		NewCluster: func(*genericclioptions.ConfigFlags) (Cluster, error) {
			t.Error("lint opened a cluster")
			return nil, nil
		},
	}
	cmd := newRootCommand(o)
	cmd.SetArgs([]string{"lint", "testdata/models.yaml", "--against", "testdata/objects.yaml"})
	if err := cmd.Execute(); err != nil {
		t.Fatalf("lint: %v\n%s", err, errOut.String())
	}
	if !strings.Contains(out.String(), "legacy/scratch-db (objects.yaml): unmet") {
		t.Errorf("no evaluation of scratch-db in:\n%s", out.String())
	}
}

// TestLintCatalog lints every model of config/catalog against every sample
// of config/samples/workloads: the catalog must be clean, and the good
// samples met.
func TestLintCatalog(t *testing.T) {
	root := filepath.Join("..", "..")
	models, err := filepath.Glob(filepath.Join(root, "config", "catalog", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	samples, err := filepath.Glob(filepath.Join(root, "config", "samples", "workloads", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var args []string
	for _, m := range models {
		if filepath.Base(m) != "kustomization.yaml" {
			args = append(args, m)
		}
	}
	for _, s := range samples {
		if filepath.Base(s) != "kustomization.yaml" {
			args = append(args, "--against", s)
		}
	}
	var out, errOut bytes.Buffer
	o := &Options{Streams: genericiooptions.IOStreams{Out: &out, ErrOut: &errOut}, ConfigFlags: genericclioptions.NewConfigFlags(false), Output: outputJSON,
		// The samples' evidence is dated from the sample epoch.
		Now: func() time.Time { return sampleset.Epoch }}
	cmd := newRootCommand(o)
	cmd.SetArgs(append([]string{"lint", "-o", "json"}, args...))
	if err := cmd.Execute(); err != nil {
		t.Fatalf("lint of the catalog: %v\n%s", err, out.String())
	}
	report := LintReport{}
	if err := json.Unmarshal(out.Bytes(), &report); err != nil {
		t.Fatal(err)
	}
	if len(report.Models) < 10 || len(report.Objects) == 0 {
		t.Fatalf("%d models, %d objects evaluated", len(report.Models), len(report.Objects))
	}
	for _, e := range report.Objects {
		if e.Namespace == "shop" && e.Status != v1alpha1.StatusMet {
			t.Errorf("%s %s/%s (%s): %s, want met: %+v", e.Kind, e.Namespace, e.Name, e.File, e.Status, e.Duties)
		}
	}
	t.Logf("%d models, %d sample objects evaluated", len(report.Models), len(report.Objects))
}

// TestIgnoredWaiversShowExpiry: show says when an ignored waiver expired,
// and carries each waiver's expiry on its duty row.
func TestIgnoredWaiversShowExpiry(t *testing.T) {
	now := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	obj := &unstructured.Unstructured{}
	obj.SetAPIVersion("postgresql.cnpg.io/v1")
	obj.SetKind("Cluster")
	obj.SetName("db")
	obj.SetAnnotations(map[string]string{
		v1alpha1.AnnotationDuties:            `{"m":{"a":{"state":"Unmet","message":"x"},"b":{"state":"Waived","message":"waived until 2027-01-01T00:00:00Z: later"},"c":{"state":"Unmet","message":"y"}}}`,
		v1alpha1.AnnotationIgnoredWaivers:    "a,c",
		v1alpha1.AnnotationWaivePrefix + "a": "expires 2026-12-01T00:00:00Z: migration",
		v1alpha1.AnnotationWaivePrefix + "b": "expires 2027-01-01T00:00:00Z: later",
		v1alpha1.AnnotationWaivePrefix + "c": "no expiry, but the model forbids it",
	})
	v := newObjectView(obj, nil)
	if got, want := v.ignoredWaivers(now), "a (expired 2026-12-01T00:00:00Z), c"; got != want {
		t.Errorf("ignored waivers %q, want %q", got, want)
	}
	for _, d := range v.Duties {
		var got string
		if d.WaiverExpires != nil {
			got = d.WaiverExpires.Format(time.RFC3339)
		}
		want := map[string]string{"a": "2026-12-01T00:00:00Z", "b": "2027-01-01T00:00:00Z"}[d.Duty]
		if got != want {
			t.Errorf("duty %s: waiverExpires %q, want %q", d.Duty, got, want)
		}
	}
}

// TestShowHeldEvents: show says when a new object's duty events wait for
// its grace period, and says nothing on an object without a hold.
func TestShowHeldEvents(t *testing.T) {
	obj := &unstructured.Unstructured{}
	obj.SetAPIVersion("postgresql.cnpg.io/v1")
	obj.SetKind("Cluster")
	obj.SetName("db")
	obj.SetAnnotations(map[string]string{
		v1alpha1.AnnotationDuties:          `{"m":{"a":{"state":"Unmet","message":"x"}}}`,
		v1alpha1.AnnotationEventsHeldUntil: "2026-12-03T12:00:20Z",
	})
	v := newObjectView(obj, nil)
	if v.EventsHeldUntil != "2026-12-03T12:00:20Z" || !strings.HasPrefix(v.eventsHeld(), "until 2026-12-03T12:00:20Z (a new object") {
		t.Errorf("held until %q: %q", v.EventsHeldUntil, v.eventsHeld())
	}
	obj.SetAnnotations(map[string]string{v1alpha1.AnnotationDuties: `{"m":{"a":{"state":"Unmet","message":"x"}}}`})
	if got := newObjectView(obj, nil).eventsHeld(); got != "" {
		t.Errorf("an object without a hold: %q", got)
	}
}

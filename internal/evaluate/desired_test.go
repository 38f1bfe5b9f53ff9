package evaluate

import (
	"encoding/json"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/responsibility-operator/responsibility-operator/api/v1alpha1"
)

func TestDutyStates(t *testing.T) {
	ssl := map[string]any{"postgresql": map[string]any{"parameters": map[string]any{"ssl_min_protocol_version": "TLSv1.3"}}}
	tests := []struct {
		name        string
		rule        string
		messageExpr string
		waivers     v1alpha1.WaiverPolicy
		spec        map[string]any
		annotations map[string]any
		nsLabels    map[string]any
		related     []map[string]any
		wantState   v1alpha1.DutyState
		wantMessage string // substring
	}{
		{name: "optional field present is met", rule: tlsRule, spec: ssl, wantState: v1alpha1.DutyMet},
		{name: "optional field absent is unmet, with the message", rule: tlsRule, spec: map[string]any{}, wantState: v1alpha1.DutyUnmet, wantMessage: "Set ssl_min_protocol_version"},
		{name: "missing field without optional syntax is unknown, never met", rule: replicaRule, spec: map[string]any{}, wantState: v1alpha1.DutyUnknown, wantMessage: "no such key: instances"},
		{name: "comparison true", rule: replicaRule, spec: map[string]any{"instances": int64(3)}, wantState: v1alpha1.DutyMet},
		{name: "comparison false", rule: replicaRule, spec: map[string]any{"instances": int64(1)}, wantState: v1alpha1.DutyUnmet},
		{name: "type error is unknown", rule: replicaRule, spec: map[string]any{"instances": "three"}, wantState: v1alpha1.DutyUnknown},
		{name: "dynamic non-bool result is unknown", rule: "object.spec.instances", spec: map[string]any{"instances": int64(3)}, wantState: v1alpha1.DutyUnknown, wantMessage: "not bool"},
		{name: "related object present", rule: backupRule, related: []map[string]any{schedule("db")}, wantState: v1alpha1.DutyMet},
		{name: "related object for another cluster", rule: backupRule, related: []map[string]any{schedule("other")}, wantState: v1alpha1.DutyUnmet},
		{name: "no related objects", rule: backupRule, wantState: v1alpha1.DutyUnmet},
		{name: "namespace labels", rule: `namespaceObject.metadata.labels["tier"] == "gold"`, nsLabels: map[string]any{"tier": "gold"}, wantState: v1alpha1.DutyMet},
		{name: "kubernetes quantity library", rule: `quantity(object.spec.storage).compareTo(quantity("10Gi")) >= 0`, spec: map[string]any{"storage": "20Gi"}, wantState: v1alpha1.DutyMet},
		{name: "kubernetes regex library", rule: `object.metadata.name.matches("^d")`, wantState: v1alpha1.DutyMet},
		{name: "messageExpression builds the message", rule: replicaRule, messageExpr: `"has " + string(object.spec.instances) + " instance(s), needs 2"`, spec: map[string]any{"instances": int64(1)}, wantState: v1alpha1.DutyUnmet, wantMessage: "has 1 instance(s), needs 2"},
		{name: "failing messageExpression falls back to message", rule: tlsRule, messageExpr: `object.spec.nothing`, spec: map[string]any{}, wantState: v1alpha1.DutyUnmet, wantMessage: "Set ssl_min_protocol_version"},
		{name: "waiver turns unmet into waived", rule: tlsRule, spec: map[string]any{}, annotations: map[string]any{"responsibility.io/waive.d": "TLS terminated by the mesh"}, wantState: v1alpha1.DutyWaived, wantMessage: "TLS terminated by the mesh"},
		{name: "waiver does not hide unknown", rule: replicaRule, spec: map[string]any{}, annotations: map[string]any{"responsibility.io/waive.d": "x"}, wantState: v1alpha1.DutyUnknown},
		{name: "waiver on a met duty changes nothing", rule: tlsRule, spec: ssl, annotations: map[string]any{"responsibility.io/waive.d": "x"}, wantState: v1alpha1.DutyMet},
		{name: "forbidden waiver is ignored", rule: tlsRule, waivers: v1alpha1.WaiversForbidden, spec: map[string]any{}, annotations: map[string]any{"responsibility.io/waive.d": "x"}, wantState: v1alpha1.DutyUnmet},
		{
			name:      "runaway cost at run time is unknown",
			rule:      `object.spec.items.all(a, object.spec.items.all(b, object.spec.items.all(c, a == b || b == c || true)))`,
			spec:      map[string]any{"items": manyInts(200)},
			wantState: v1alpha1.DutyUnknown, wantMessage: "cost limit",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := mustCompile(t, model("m", func(rm *v1alpha1.ResponsibilityModel) {
				rm.Spec.Waivers = tt.waivers
				rm.Spec.Areas = []v1alpha1.Area{{Name: "A", Provider: "p", Customer: "c", Duties: []v1alpha1.Duty{{
					Name: "d", Rule: tt.rule, Message: "Set ssl_min_protocol_version", MessageExpression: tt.messageExpr,
					Related: []v1alpha1.RelatedResource{{Name: "schedules", APIVersion: "postgresql.cnpg.io/v1", Kind: "ScheduledBackup"}},
				}}}}
			}))
			res := Evaluate([]*Model{m}, Input{
				GVK:       clusterGVK,
				Object:    cluster("db", nil, tt.spec, tt.annotations),
				Namespace: namespace(tt.nsLabels),
				Related:   map[RelatedSource][]map[string]any{{GVK: backupGVK}: tt.related},
			})
			if len(res.Duties) != 1 {
				t.Fatalf("got %d duty results, want 1", len(res.Duties))
			}
			got := res.Duties[0]
			if got.State != tt.wantState {
				t.Errorf("state = %s (%s), want %s", got.State, got.Message, tt.wantState)
			}
			if !strings.Contains(got.Message, tt.wantMessage) {
				t.Errorf("message = %q, want it to contain %q", got.Message, tt.wantMessage)
			}
		})
	}
}

func manyInts(n int) []any {
	out := make([]any, n)
	for i := range out {
		out[i] = int64(i)
	}
	return out
}

func TestDesiredAnnotations(t *testing.T) {
	db := mustCompile(t, model("managed-databases"))
	cross := mustCompile(t, model("cross-cutting", func(rm *v1alpha1.ResponsibilityModel) {
		rm.Spec.Service = "Cross-cutting"
		rm.Spec.Areas = []v1alpha1.Area{{Name: "Identity", Provider: "Account security", Customer: "Strong passwords, 2FA"}}
	}))
	obj := cluster("db", nil, map[string]any{}, nil)
	in := Input{GVK: clusterGVK, Object: obj, Namespace: namespace(nil)}

	t.Run("no model: nothing desired", func(t *testing.T) {
		res := Evaluate(nil, in)
		if len(res.Annotations) != 0 || len(res.Labels) != 0 {
			t.Fatalf("got %v %v, want nothing", res.Annotations, res.Labels)
		}
	})

	t.Run("one model", func(t *testing.T) {
		res := Evaluate([]*Model{db}, in)
		want := map[string]string{
			v1alpha1.AnnotationModels:   "managed-databases",
			v1alpha1.AnnotationProvider: "DanubeData",
			v1alpha1.AnnotationService:  "Managed Databases",
			v1alpha1.AnnotationMatrix:   `{"managed-databases":{"Backups":{"provider":"Backup storage","customer":"Backup schedule"},"Connection Security":{"provider":"TLS certificates","customer":"Enforce TLS in clients"}}}`,
			v1alpha1.AnnotationDuties:   `{"managed-databases":{"backup-scheduled":{"state":"Unmet","message":"Create a ScheduledBackup"},"tls-enforced":{"state":"Unmet","message":"Set ssl_min_protocol_version"}}}`,
			v1alpha1.AnnotationUnmet:    "managed-databases/backup-scheduled,managed-databases/tls-enforced",
		}
		assertMap(t, res.Annotations, want)
		assertMap(t, res.Labels, map[string]string{v1alpha1.LabelStatus: v1alpha1.StatusUnmet})
	})

	t.Run("two models are ordered by name and the matrix is jq-readable", func(t *testing.T) {
		res := Evaluate(Match([]*Model{db, cross}, clusterGVK, nil, namespace(nil), true), in)
		if got := res.Annotations[v1alpha1.AnnotationModels]; got != "cross-cutting,managed-databases" {
			t.Errorf("models = %q", got)
		}
		if got := res.Annotations[v1alpha1.AnnotationService]; got != "Cross-cutting; Managed Databases" {
			t.Errorf("service = %q", got)
		}
		if got := res.Annotations[v1alpha1.AnnotationProvider]; got != "DanubeData" {
			t.Errorf("provider = %q (same provider once)", got)
		}
		var matrix map[string]map[string]map[string]string
		if err := json.Unmarshal([]byte(res.Annotations[v1alpha1.AnnotationMatrix]), &matrix); err != nil {
			t.Fatalf("matrix is not JSON: %v", err)
		}
		if matrix["cross-cutting"]["Identity"]["customer"] != "Strong passwords, 2FA" {
			t.Errorf("matrix = %v", matrix)
		}
	})

	t.Run("all met: empty unmet and status met", func(t *testing.T) {
		met := cluster("db", nil, map[string]any{"postgresql": map[string]any{"parameters": map[string]any{"ssl_min_protocol_version": "TLSv1.3"}}}, nil)
		res := Evaluate([]*Model{db}, Input{GVK: clusterGVK, Object: met, Namespace: namespace(nil),
			Related: map[RelatedSource][]map[string]any{{GVK: backupGVK}: {schedule("db")}}})
		if got, ok := res.Annotations[v1alpha1.AnnotationUnmet]; !ok || got != "" {
			t.Errorf("unmet = %q (present %v), want present and empty", got, ok)
		}
		assertMap(t, res.Labels, map[string]string{v1alpha1.LabelStatus: v1alpha1.StatusMet})
	})

	t.Run("deterministic", func(t *testing.T) {
		a := Evaluate([]*Model{db, cross}, in)
		for range 20 {
			b := Evaluate([]*Model{cross, db}, in)
			if !OwnedMetadataEqual(b.Annotations, b.Labels, a) {
				t.Fatalf("results differ:\n%v\n%v", a.Annotations, b.Annotations)
			}
		}
	})
}

func TestStatusLabel(t *testing.T) {
	tests := []struct {
		states []v1alpha1.DutyState
		want   string
	}{
		{nil, v1alpha1.StatusMet},
		{[]v1alpha1.DutyState{v1alpha1.DutyMet, v1alpha1.DutyWaived}, v1alpha1.StatusMet},
		{[]v1alpha1.DutyState{v1alpha1.DutyMet, v1alpha1.DutyUnknown}, v1alpha1.StatusUnknown},
		{[]v1alpha1.DutyState{v1alpha1.DutyUnknown, v1alpha1.DutyUnmet}, v1alpha1.StatusUnmet},
	}
	for _, tt := range tests {
		t.Run(tt.want+"/"+strings.Join(statesString(tt.states), ","), func(t *testing.T) {
			var r Result
			for _, s := range tt.states {
				r.Duties = append(r.Duties, DutyResult{Model: "m", Duty: &Duty{Name: string(s)}, State: s})
			}
			if got := r.Status(); got != tt.want {
				t.Errorf("status = %s, want %s", got, tt.want)
			}
		})
	}
}

func statesString(s []v1alpha1.DutyState) []string {
	out := make([]string, len(s))
	for i, x := range s {
		out[i] = string(x)
	}
	return out
}

func TestIgnoredWaivers(t *testing.T) {
	db := mustCompile(t, model("managed-databases"))
	obj := cluster("db", nil, map[string]any{}, map[string]any{
		"responsibility.io/waive.no-such-duty": "typo",
		"responsibility.io/waive.tls-enforced": "mesh TLS",
	})
	res := Evaluate([]*Model{db}, Input{GVK: clusterGVK, Object: obj, Namespace: namespace(nil)})
	if len(res.IgnoredWaivers) != 1 || res.IgnoredWaivers[0].Duty != "no-such-duty" {
		t.Fatalf("ignored waivers = %+v, want the unknown duty only", res.IgnoredWaivers)
	}
	if got := res.Annotations[v1alpha1.AnnotationIgnoredWaivers]; got != "no-such-duty" {
		t.Errorf("ignored-waivers annotation = %q", got)
	}
	if got := NewlyIgnoredWaivers("", res); len(got) != 1 {
		t.Errorf("first time: %d newly ignored, want 1", len(got))
	}
	if got := NewlyIgnoredWaivers("no-such-duty", res); len(got) != 0 {
		t.Errorf("already recorded: %d newly ignored, want 0", len(got))
	}
}

func TestTransitions(t *testing.T) {
	d := &Duty{Name: "tls"}
	result := func(s v1alpha1.DutyState) Result {
		return Result{Duties: []DutyResult{{Model: "m", Duty: d, State: s}}}
	}
	prev := func(s v1alpha1.DutyState) map[string]map[string]DutyAnnotation {
		if s == "" {
			return nil
		}
		return map[string]map[string]DutyAnnotation{"m": {"tls": {State: s}}}
	}
	tests := []struct {
		name      string
		prev, now v1alpha1.DutyState
		want      bool
	}{
		{"first found unmet", "", v1alpha1.DutyUnmet, true},
		{"first found met", "", v1alpha1.DutyMet, false},
		{"met to unmet", v1alpha1.DutyMet, v1alpha1.DutyUnmet, true},
		{"unknown to unmet", v1alpha1.DutyUnknown, v1alpha1.DutyUnmet, true},
		{"still unmet (resync, restart)", v1alpha1.DutyUnmet, v1alpha1.DutyUnmet, false},
		{"unmet to met", v1alpha1.DutyUnmet, v1alpha1.DutyMet, true},
		{"waived to met", v1alpha1.DutyWaived, v1alpha1.DutyMet, false},
		{"unmet to waived", v1alpha1.DutyUnmet, v1alpha1.DutyWaived, false},
		{"still met", v1alpha1.DutyMet, v1alpha1.DutyMet, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Transitions(prev(tt.prev), result(tt.now))
			if (len(got) == 1) != tt.want {
				t.Errorf("transitions = %+v, want event %v", got, tt.want)
			}
		})
	}
}

func TestParseDutiesTolerant(t *testing.T) {
	for _, v := range []string{"", "not json", `{"m":"x"}`, `[]`} {
		if got := ParseDuties(v); len(got) != 0 {
			t.Errorf("ParseDuties(%q) = %v, want empty", v, got)
		}
	}
	got := ParseDuties(`{"m":{"d":{"state":"Unmet","message":"x"}}}`)
	if got["m"]["d"].State != v1alpha1.DutyUnmet {
		t.Errorf("got %v", got)
	}
}

func TestOwnedMetadataEqual(t *testing.T) {
	want := Result{Annotations: map[string]string{v1alpha1.AnnotationModels: "m", v1alpha1.AnnotationUnmet: ""}, Labels: map[string]string{v1alpha1.LabelStatus: "met"}}
	tests := []struct {
		name        string
		annotations map[string]string
		labels      map[string]string
		want        bool
	}{
		{"equal, tenant keys ignored", map[string]string{v1alpha1.AnnotationModels: "m", v1alpha1.AnnotationUnmet: "", "team": "a", "responsibility.io/waive.x": "y"}, map[string]string{v1alpha1.LabelStatus: "met", "app": "x"}, true},
		{"missing key", map[string]string{v1alpha1.AnnotationModels: "m"}, map[string]string{v1alpha1.LabelStatus: "met"}, false},
		{"stale extra owned key", map[string]string{v1alpha1.AnnotationModels: "m", v1alpha1.AnnotationUnmet: "", v1alpha1.AnnotationDuties: "{}"}, map[string]string{v1alpha1.LabelStatus: "met"}, false},
		{"forged value", map[string]string{v1alpha1.AnnotationModels: "m", v1alpha1.AnnotationUnmet: "forged"}, map[string]string{v1alpha1.LabelStatus: "met"}, false},
		{"label differs", map[string]string{v1alpha1.AnnotationModels: "m", v1alpha1.AnnotationUnmet: ""}, map[string]string{v1alpha1.LabelStatus: "unmet"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := OwnedMetadataEqual(tt.annotations, tt.labels, want); got != tt.want {
				t.Errorf("equal = %v, want %v", got, tt.want)
			}
		})
	}
}

func assertMap(t *testing.T, got, want map[string]string) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("got %d keys %v, want %d keys", len(got), got, len(want))
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
}

func TestAnnotationsAreNotHTMLEscaped(t *testing.T) {
	m := mustCompile(t, model("m", func(rm *v1alpha1.ResponsibilityModel) {
		rm.Spec.Areas = []v1alpha1.Area{{Name: "Users & Roles", Provider: "<admin>", Customer: "a & b"}}
	}))
	res := Evaluate([]*Model{m}, Input{GVK: clusterGVK, Object: cluster("db", nil, map[string]any{}, nil)})
	want := `{"m":{"Users & Roles":{"provider":"<admin>","customer":"a & b"}}}`
	if got := res.Annotations[v1alpha1.AnnotationMatrix]; got != want {
		t.Errorf("matrix = %s, want %s", got, want)
	}
}

func TestRelatedFromAFixedNamespace(t *testing.T) {
	veleroGVK := schema.GroupVersionKind{Group: "velero.io", Version: "v1", Kind: "Schedule"}
	m := mustCompile(t, model("m", func(rm *v1alpha1.ResponsibilityModel) {
		rm.Spec.Areas = []v1alpha1.Area{{Name: "A", Provider: "p", Customer: "c", Duties: []v1alpha1.Duty{{
			Name: "d", Rule: `related.schedules.exists(s, s.spec.template.includedNamespaces.exists(n, n == object.metadata.namespace))`,
			Related: []v1alpha1.RelatedResource{{Name: "schedules", APIVersion: "velero.io/v1", Kind: "Schedule", Namespace: "velero"}},
		}}}}
	}))
	if got, want := m.RelatedSources(), []RelatedSource{{GVK: veleroGVK, Namespace: "velero"}}; len(got) != 1 || got[0] != want[0] {
		t.Fatalf("RelatedSources = %v, want %v", got, want)
	}
	obj := cluster("db", nil, nil, nil)
	sched := map[string]any{"spec": map[string]any{"template": map[string]any{"includedNamespaces": []any{obj["metadata"].(map[string]any)["namespace"]}}}}
	tests := []struct {
		name    string
		related map[RelatedSource][]map[string]any
		want    v1alpha1.DutyState
	}{
		{"read from the fixed namespace", map[RelatedSource][]map[string]any{{GVK: veleroGVK, Namespace: "velero"}: {sched}}, v1alpha1.DutyMet},
		{"the workload's own namespace is not read", map[RelatedSource][]map[string]any{{GVK: veleroGVK}: {sched}}, v1alpha1.DutyUnmet},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := Evaluate([]*Model{m}, Input{GVK: clusterGVK, Object: obj, Namespace: namespace(nil), Related: tt.related})
			if res.Duties[0].State != tt.want {
				t.Errorf("state = %s (%s), want %s", res.Duties[0].State, res.Duties[0].Message, tt.want)
			}
		})
	}
}

// TestEncodeDutiesMatchesJSON checks the hand-written duties encoder against
// encoding/json on the nested maps it replaces.
func TestEncodeDutiesMatchesJSON(t *testing.T) {
	duty := func(name string) *Duty { return &Duty{Name: name} }
	cases := map[string][]DutyResult{
		"none": nil,
		"one":  {{Model: "m", Duty: duty("a"), State: v1alpha1.DutyMet}},
		"two models": {
			{Model: "a-model", Duty: duty("backup"), State: v1alpha1.DutyUnmet, Message: `Set "spec.backup" & <retry>` + "\n\ttab\u2028\x01"},
			{Model: "a-model", Duty: duty("tls"), State: v1alpha1.DutyMet},
			{Model: "b-model", Duty: duty("keys"), State: v1alpha1.DutyUnknown, Message: "bad \xff utf-8 ü"},
		},
		"a duplicate, the later one wins": {
			{Model: "m", Duty: duty("a"), State: v1alpha1.DutyMet},
			{Model: "m", Duty: duty("a"), State: v1alpha1.DutyUnmet, Message: "later"},
			{Model: "m", Duty: duty("b"), State: v1alpha1.DutyWaived, Message: "waived: x"},
		},
	}
	for name, duties := range cases {
		t.Run(name, func(t *testing.T) {
			byModel := map[string]map[string]DutyAnnotation{}
			for _, d := range duties {
				if byModel[d.Model] == nil {
					byModel[d.Model] = map[string]DutyAnnotation{}
				}
				byModel[d.Model][d.Duty.Name] = DutyAnnotation{State: d.State, Message: d.Message}
			}
			if got, want := encodeDuties(duties), encodeJSON(byModel); got != want {
				t.Errorf("encodeDuties = %s\nencoding/json = %s", got, want)
			}
		})
	}
}

// FuzzWriteJSONString checks the hand-written string encoder against
// encoding/json, byte for byte.
func FuzzWriteJSONString(f *testing.F) {
	for _, s := range []string{"", "plain", `"quoted" \ back`, "<&>", "\x00\x1f\x7f\b\f\n\r\t", "\u2028\u2029", "\xff\xfe", "ü€😀", "a\xc3"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var b strings.Builder
		writeJSONString(&b, s)
		if want := encodeJSON(s); b.String() != want {
			t.Fatalf("writeJSONString(%q) = %s, encoding/json = %s", s, b.String(), want)
		}
		var back string
		if err := json.Unmarshal([]byte(b.String()), &back); err != nil {
			t.Fatalf("writeJSONString(%q) = %s, which does not parse: %v", s, b.String(), err)
		}
	})
}

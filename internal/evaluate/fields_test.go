package evaluate

import (
	"reflect"
	"testing"
)

func TestReadFields(t *testing.T) {
	envs, err := ruleEnv([]string{"schedules", "snapshots"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		expr string
		// object is what Fields.String says is read of object; schedules
		// what is read of each element of related.schedules.
		object, schedules string
	}{
		{expr: `true`},
		{expr: `object.metadata.name == "x"`},
		{expr: `object.kind == "Cluster"`},
		{expr: `object.spec.instances >= 2`, object: "spec.instances"},
		{expr: `has(object.spec.storage.storageClass)`, object: "spec.storage.storageClass?"},
		{expr: `object.spec.?instances.orValue(1) >= 2`, object: "spec.instances"},
		{expr: `object.spec.?tls.?enabled.orValue(false) && object.spec.tls.required`, object: "spec.tls.enabled,spec.tls.required"},
		{expr: `object.spec.?postgresql.?pg_hba.orValue([]).exists(r, r.startsWith("host "))`, object: "spec.postgresql.pg_hba[]"},
		{expr: `object.spec.containers.all(c, c.image.contains(":") && has(c.resources))`, object: "spec.containers[].image,spec.containers[].resources?"},
		{expr: `'cpu' in object.spec.limits`, object: "spec.limits"},
		{expr: `object.spec.containers[0].image != ""`, object: "spec.containers[].image"},
		{expr: `object.metadata.annotations["a"] == object.spec["b"]`, object: "spec.b"},
		{expr: `object.spec[object.metadata.name] == 1`, object: "spec"},
		{expr: `object.spec[?"opt"].hasValue()`, object: "spec.opt"},
		{expr: `size(object.spec) > 0`, object: "spec"},
		{expr: `object.spec.list.map(x, x.a).exists(y, y == 1)`, object: "spec.list[].a"},
		{expr: `object.spec.list.filter(x, x.a == 1).size() == 1`, object: "spec.list[]"},
		{expr: `object.spec.m.all(k, k.startsWith("x"))`, object: "spec.m[]"},
		{expr: `object.spec.m.all(k, v, v == 1)`, object: "spec.m"},
		{expr: `(true ? object.spec.a : object.spec.b).c == 1`, object: "spec.a,spec.b"},
		{expr: `object.spec.?a.optMap(v, v.x).orValue(0) == 1`, object: "spec.a"},
		// A loop variable named object is not the object.
		{expr: `[{"spec": 1}].all(object, object.spec == 1)`},
		{expr: `object == object`, object: "*"},
		{expr: `object.all(k, k != "status")`, object: "*"},
		{expr: `string(object.spec.x) != ""`, object: "spec.x"},
		{expr: `related.schedules.exists(s, s.spec.cluster.name == object.metadata.name && !s.spec.?suspend.orValue(false))`, schedules: "spec.cluster.name,spec.suspend"},
		{expr: `related.schedules.size() > 0`, schedules: "*"},
		{expr: `related.snapshots.exists(s, has(s.status))`},
		{expr: `related.schedules[0].spec.x == 1`, schedules: "spec.x"},
		{expr: `related.schedules.map(s, s.spec).size() > 0`, schedules: "spec"},
	} {
		t.Run(tc.expr, func(t *testing.T) {
			p, err := compileProgram(envs, tc.expr, boolResult)
			if err != nil {
				t.Fatal(err)
			}
			if got := p.object.String(); got != tc.object {
				t.Errorf("object: got %q, want %q", got, tc.object)
			}
			if got := relatedElements(p.related, "schedules").String(); got != tc.schedules {
				t.Errorf("related.schedules: got %q, want %q", got, tc.schedules)
			}
		})
	}
}

func TestProject(t *testing.T) {
	obj := map[string]any{
		"apiVersion": "v1", "kind": "K",
		"metadata": map[string]any{"name": "n", "labels": map[string]any{"a": "b"}},
		"spec": map[string]any{
			"keep":  map[string]any{"x": int64(1), "y": []any{"z"}},
			"drop":  "big",
			"list":  []any{map[string]any{"a": int64(1), "b": int64(2)}, "scalar"},
			"m":     map[string]any{"k1": int64(1), "k2": int64(2)},
			"flag":  map[string]any{"deep": "value"},
			"other": []any{int64(1)},
		},
		"status": map[string]any{"phase": "Ready"},
	}
	meta := func(spec map[string]any) map[string]any {
		out := map[string]any{"apiVersion": "v1", "kind": "K", "metadata": obj["metadata"]}
		if spec != nil {
			out["spec"] = spec
		}
		return out
	}
	for _, tc := range []struct {
		name   string
		fields *Fields
		want   map[string]any
	}{
		{name: "nil keeps the metadata", fields: nil, want: meta(nil)},
		{name: "all", fields: AllFields(), want: obj},
		{name: "a subtree", fields: named("spec", named("keep", AllFields())), want: meta(map[string]any{"keep": obj["spec"].(map[string]any)["keep"]})},
		{name: "presence", fields: named("spec", named("flag", &Fields{})), want: meta(map[string]any{"flag": map[string]any{}})},
		{name: "missing field", fields: named("spec", named("absent", AllFields())), want: meta(map[string]any{})},
		{
			name:   "elements of a list",
			fields: named("spec", named("list", &Fields{Each: named("a", AllFields())})),
			want:   meta(map[string]any{"list": []any{map[string]any{"a": int64(1)}, "scalar"}}),
		},
		{name: "a map walked keeps its keys", fields: named("spec", named("m", &Fields{Each: &Fields{}})), want: meta(map[string]any{"m": obj["spec"].(map[string]any)["m"]})},
		{name: "a field of a list is the list", fields: named("spec", named("other", named("x", AllFields()))), want: meta(map[string]any{"other": []any{int64(1)}})},
		{name: "the object walked is the object", fields: &Fields{Each: &Fields{}}, want: obj},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.fields.Project(obj); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got  %v\nwant %v", got, tc.want)
			}
		})
	}
}

func named(name string, f *Fields) *Fields { return &Fields{Named: map[string]*Fields{name: f}} }

func TestFieldsCoversAndUnion(t *testing.T) {
	a := named("spec", named("a", AllFields()))
	b := named("spec", named("b", &Fields{Each: named("c", AllFields())}))
	presence := named("spec", named("a", &Fields{}))
	u := a.Union(b)
	for _, tc := range []struct {
		name string
		f, g *Fields
		want bool
	}{
		{"nil covers nil", nil, nil, true},
		{"nil covers an empty set", nil, &Fields{}, true},
		{"nil does not cover a field", nil, a, false},
		{"all covers anything", AllFields(), u, true},
		{"a field does not cover all", u, AllFields(), false},
		{"union covers each side", u, a, true},
		{"union covers the other side", u, b, true},
		{"a side does not cover the union", a, u, false},
		{"a value covers its presence", a, presence, true},
		{"presence does not cover the value", presence, a, false},
		{"elements are compared", b, named("spec", named("b", &Fields{Each: named("d", AllFields())})), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.f.Covers(tc.g); got != tc.want {
				t.Errorf("%v covers %v: got %v, want %v", tc.f, tc.g, got, tc.want)
			}
		})
	}
	if a.String() != "spec.a" || b.String() != "spec.b[].c" {
		t.Errorf("Union modified its operands: %v, %v", a, b)
	}
	if got := u.String(); got != "spec.a,spec.b[].c" {
		t.Errorf("union: got %q", got)
	}
}

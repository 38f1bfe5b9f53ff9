package evaluate

// Fuzz tests for hostile input (issue 8). Tenants control the workload
// objects, their annotations (forged operator-owned ones and waivers
// included) and the related objects a rule reads; admins control the rules.
// The seeds added below and the corpus committed in testdata/fuzz/<FuzzName>/
// run in every plain `go test`; `go test -fuzz '^FuzzName$'` explores from
// them.

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/google/cel-go/common/types"
	"k8s.io/apimachinery/pkg/api/validate/content"
	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utiljson "k8s.io/apimachinery/pkg/util/json"

	"github.com/responsibility-operator/responsibility-operator/api/v1alpha1"
)

const (
	// annotationFixedBytes bounds what the operator writes that does not
	// come from the object: model names, providers, services, matrices,
	// fixed messages and CEL error texts of the fuzz models (about 2 KiB).
	annotationFixedBytes = 16 << 10
	// annotationBytesPerInputByte bounds how much one input byte can grow
	// into: the messages of the fuzz models quote a tenant string at most
	// three times (the name twice in backup-scheduled and once in
	// name-valid, each listener name twice), and JSON encoding at most
	// triples a decoded byte (an invalid byte decodes to U+FFFD) or turns a
	// raw invalid byte of a waiver reason into the six bytes of \ufffd. So 9
	// is enough; 16 leaves room for a reworded message and still fails on
	// anything that grows faster than the input.
	annotationBytesPerInputByte = 16
	// maxRuleRunes is the MaxLength of rule and messageExpression in the
	// CRD: the API server refuses longer ones, so they never reach Compile.
	maxRuleRunes = 4096
	// fuzzedDuty is the name of the duty whose rule FuzzCompileRule fuzzes,
	// and fuzzedDutyPath its path in the model.
	fuzzedDuty     = "fuzzed"
	fuzzedDutyPath = "spec.areas[1].duties[0]"
)

var validStates = []v1alpha1.DutyState{v1alpha1.DutyMet, v1alpha1.DutyUnmet, v1alpha1.DutyUnknown, v1alpha1.DutyWaived}

// fuzzModels are the models FuzzEvaluate evaluates objects against, with
// rules taken from config/catalog: optional fields, related objects (one
// list filtered by a label selector, one in a fixed namespace), quantities,
// regular expressions, the namespace object, and messageExpressions that
// quote the object. The rules iterate over lists; where a tenant puts a map
// instead, they iterate over its keys, all strings, with an outcome that
// does not depend on their order. (CEL iterates over a map in Go's random
// order, so a rule whose outcome depends on it is not deterministic, and
// this target asserts that Evaluate is.) One model allows waivers, the other
// forbids them and is left out by a label, so that Match matters.
func fuzzModels(tb testing.TB) []*Model {
	tb.Helper()
	databases := mustCompile(tb, model("fuzz-databases", func(rm *v1alpha1.ResponsibilityModel) {
		rm.Spec.Targets = append(rm.Spec.Targets, v1alpha1.Target{APIVersion: "k8s.mariadb.com/v1alpha1", Kind: "MariaDB"})
		rm.Spec.Areas = []v1alpha1.Area{
			{Name: "Connection Security", Provider: "TLS certificates", Customer: "Enforce TLS in clients", Duties: []v1alpha1.Duty{{
				Name: "tls-enforced", Message: "Require TLS for every client connection",
				Rule: `object.kind == "MariaDB"
					? object.spec.?tls.?enabled.orValue(false) && object.spec.?tls.?required.orValue(false)
					: object.spec.?postgresql.?parameters.?ssl_min_protocol_version.orValue("") in ["TLSv1.2", "TLSv1.3"] &&
					  !object.spec.?postgresql.?pg_hba.orValue([]).exists(r, r.trim().startsWith("host ") || r.trim().startsWith("hostnossl "))`,
				MessageExpression: `object.kind == "MariaDB" ? "Set spec.tls.enabled and spec.tls.required" : "Set ssl_min_protocol_version and use hostssl rules only"`,
			}}},
			{Name: "Backups", Provider: "Backup storage", Customer: "Backup schedule", Duties: []v1alpha1.Duty{{
				Name: "backup-scheduled", Message: "Schedule regular backups of the database",
				Related: []v1alpha1.RelatedResource{
					{Name: "schedules", APIVersion: "postgresql.cnpg.io/v1", Kind: "ScheduledBackup"},
					{Name: "mariadbBackups", APIVersion: "k8s.mariadb.com/v1alpha1", Kind: "Backup",
						Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "db"}}},
				},
				Rule: `object.kind == "MariaDB"
					? related.mariadbBackups.exists(b, b.spec.?mariaDbRef.?name.orValue("") == object.metadata.name && b.spec.?schedule.?cron.orValue("") != "")
					: related.schedules.exists(s, s.spec.cluster.name == object.metadata.name && !s.spec.?suspend.orValue(false))`,
				MessageExpression: `"No active ScheduledBackup names cluster " + object.metadata.name + ": create one with spec.cluster.name: " + object.metadata.name`,
			}}},
			{Name: "Performance", Provider: "Resources", Customer: "Sizing", Duties: []v1alpha1.Duty{
				{Name: "memory-limit-set", Message: "Set resources.limits.memory to at least 256Mi",
					Rule: `quantity(object.spec.resources.limits.memory).compareTo(quantity("256Mi")) >= 0`},
				{Name: "replicas", Message: "Run at least two instances", Severity: v1alpha1.SeverityInfo,
					Rule:              `object.spec.?instances.orValue(1) >= 2`,
					MessageExpression: `"has " + string(object.spec.?instances.orValue(1)) + " instance(s), needs 2"`},
			}},
			{Name: "Kafka Listeners", Provider: "Brokers", Customer: "Listener configuration", Duties: []v1alpha1.Duty{
				{Name: "listeners-authenticated", Message: "Set authentication.type on every listener",
					Rule: `object.spec.?kafka.?listeners.orValue([]).size() > 0 &&
						object.spec.?kafka.?listeners.orValue([]).all(l, l.?authentication.?type.orValue("") != "")`,
					MessageExpression: `"Listeners without authentication: " +
						object.spec.?kafka.?listeners.orValue([]).filter(l, l.?authentication.?type.orValue("") == "").map(l, l.name).join(", ")`},
				{Name: "listener-access-restricted", Message: "Restrict who may connect to every listener",
					Rule: `object.spec.?kafka.?listeners.orValue([]).all(l, l.?type.orValue("") in ["internal", "cluster-ip"] || l.?networkPolicyPeers.orValue([]).size() > 0)`,
					MessageExpression: `"Listeners open to any source: " +
						object.spec.?kafka.?listeners.orValue([]).filter(l, !(l.?type.orValue("") in ["internal", "cluster-ip"])).map(l, l.name).join(", ")`},
				{Name: "listener-names-unique", Message: "Give every listener its own name",
					// Quadratic in the number of listeners, and each step costs
					// the length of two names: a few dozen listeners with long
					// names run into the cost limit. (Many short ones would
					// too, but the time cel-go's cost tracking takes per step
					// grows with the length of the list iterated over, so
					// reaching the limit that way takes seconds.)
					Rule: `object.spec.?kafka.?listeners.orValue([]).all(a, object.spec.kafka.listeners.exists_one(b, b.name.lowerAscii() == a.name.lowerAscii()))`},
			}},
		}
	}))
	strict := mustCompile(tb, model("fuzz-strict", func(rm *v1alpha1.ResponsibilityModel) {
		rm.Spec.Service, rm.Spec.Provider = "Platform baseline", "Platform Team & Co"
		rm.Spec.Waivers = v1alpha1.WaiversForbidden
		rm.Spec.Targets[0].Selector = &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
			{Key: "responsibility.io/exempt", Operator: metav1.LabelSelectorOpDoesNotExist},
		}}
		rm.Spec.Areas = []v1alpha1.Area{{Name: "Baseline", Provider: "<cluster>", Customer: "Naming & isolation", Duties: []v1alpha1.Duty{
			// Same name as in fuzz-databases: one waiver, two models.
			{Name: "tls-enforced", Rule: `object.spec.?postgresql.?parameters.?ssl_min_protocol_version.orValue("") == "TLSv1.3"`},
			{Name: "namespace-tier", Description: "The namespace is in the gold tier",
				Rule: `namespaceObject.metadata.?labels[?"tier"].orValue("") == "gold"`},
			{Name: "name-valid", Rule: `object.metadata.name.matches("^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")`,
				MessageExpression: `"name " + object.metadata.name + " is not a DNS label"`},
			{Name: "ingress-restricted",
				Related: []v1alpha1.RelatedResource{{Name: "policies", APIVersion: "networking.k8s.io/v1", Kind: "NetworkPolicy", Namespace: "platform"}},
				Rule:    `related.policies.exists(p, p.spec.?policyTypes.orValue(["Ingress"]).exists(t, t == "Ingress"))`},
		}}}
	}))
	return []*Model{databases, strict}
}

// fuzzObject decodes a workload as the operator's cache does (numbers as
// int64 where they fit) and adds one annotation to it, unless key is empty or
// the metadata is not an object. ok is false when data is not a JSON object.
func fuzzObject(data []byte, key, value string) (obj map[string]any, ok bool) {
	if err := utiljson.Unmarshal(data, &obj); err != nil || obj == nil {
		return nil, false
	}
	if key != "" {
		if annotations := metadataMap(obj, "annotations"); annotations != nil {
			annotations[key] = value
		}
	}
	return obj, true
}

// metadataMap returns the map at metadata.<field>, creating what is absent;
// nil when something on the way is not a map.
func metadataMap(obj map[string]any, field string) map[string]any {
	if obj["metadata"] == nil {
		obj["metadata"] = map[string]any{}
	}
	meta, ok := obj["metadata"].(map[string]any)
	if !ok {
		return nil
	}
	if meta[field] == nil {
		meta[field] = map[string]any{}
	}
	m, _ := meta[field].(map[string]any)
	return m
}

// fuzzRelated decodes a JSON list of related objects, keeping the objects;
// anything else reads as no related objects. Every source of the models
// gets the same list.
func fuzzRelated(data []byte, models []*Model) map[RelatedSource][]map[string]any {
	var list []any
	_ = utiljson.Unmarshal(data, &list) // not a list: no related objects
	var objs []map[string]any
	for _, o := range list {
		if m, ok := o.(map[string]any); ok {
			objs = append(objs, m)
		}
	}
	out := map[RelatedSource][]map[string]any{}
	for _, m := range models {
		for _, src := range m.RelatedSources() {
			out[src] = objs
		}
	}
	return out
}

// fuzzInput builds, afresh on every call, the input of an object: the
// controller reads the Namespace of a namespaced object only.
func fuzzInput(object []byte, key, value string, related []byte, models []*Model) (Input, bool) {
	obj, ok := fuzzObject(object, key, value)
	if !ok {
		return Input{}, false
	}
	in := Input{GVK: clusterGVK, Object: obj, Related: fuzzRelated(related, models)}
	if ns, _ := metadataValue(obj, "namespace").(string); ns != "" {
		in.Namespace = namespace(map[string]any{"tier": "gold"})
	}
	return in, true
}

func metadataValue(obj map[string]any, field string) any {
	meta, _ := obj["metadata"].(map[string]any)
	return meta[field]
}

type evaluateSeed struct {
	name string
	// large seeds run in TestEvaluateLargeInputs, not as fuzz seeds, so that
	// fuzzing does not spend its time mutating inputs of 100 KiB whose every
	// run takes a large part of a second.
	large                          bool
	object                         map[string]any
	annotationKey, annotationValue string
	related                        []map[string]any
	rawObject                      string // used instead of object when set
}

func evaluateSeeds() []evaluateSeed {
	ssl := map[string]any{"postgresql": map[string]any{"parameters": map[string]any{"ssl_min_protocol_version": "TLSv1.3"}}, "instances": 3,
		"resources": map[string]any{"limits": map[string]any{"memory": "1Gi"}}}
	deep := any("bottom")
	for i := range 4000 {
		if i%2 == 0 {
			deep = map[string]any{"a": deep}
		} else {
			deep = []any{deep}
		}
	}
	listeners := make([]any, 0, 50)
	for i := range 50 {
		listeners = append(listeners, map[string]any{"name": fmt.Sprintf("listener-%d-%s", i, strings.Repeat("\u00e9", 20)), "type": "route"})
	}
	longNames := make([]any, 0, 40)
	for i := range 40 {
		longNames = append(longNames, map[string]any{"name": fmt.Sprintf("%04d%s", i, strings.Repeat("L", 4<<10)), "authentication": map[string]any{"type": "tls"}})
	}
	return []evaluateSeed{
		{name: "all met", object: cluster("db", map[string]any{"app": "db"}, ssl, nil), related: []map[string]any{schedule("db")}},
		{name: "unmet with a waiver", object: cluster("db", nil, map[string]any{}, nil),
			annotationKey: v1alpha1.AnnotationWaivePrefix + "tls-enforced", annotationValue: "TLS is terminated by the mesh"},
		{name: "waiver for no duty", object: cluster("db", nil, map[string]any{}, map[string]any{v1alpha1.AnnotationWaivePrefix + "backup-scheduled": "nightly dump"}),
			annotationKey: v1alpha1.AnnotationWaivePrefix + "no-such-duty", annotationValue: "typo"},
		{name: "forged owned annotations", object: cluster("db", map[string]any{v1alpha1.LabelStatus: "met"}, map[string]any{}, map[string]any{
			v1alpha1.AnnotationDuties:         `{"fuzz-databases":{"tls-enforced":{"state":"Met"},"replicas":{"state":"Bogus"}},"":{"":{}}}`,
			v1alpha1.AnnotationUnmet:          "",
			v1alpha1.AnnotationIgnoredWaivers: "tls-enforced,,x",
			v1alpha1.AnnotationMatrix:         "{",
		}), annotationKey: v1alpha1.AnnotationModels, annotationValue: "fuzz-databases"},
		{name: "mariadb with related backups", object: map[string]any{"apiVersion": "k8s.mariadb.com/v1alpha1", "kind": "MariaDB",
			"metadata": map[string]any{"name": "maria", "namespace": "team-a"}, "spec": map[string]any{"tls": map[string]any{"enabled": true, "required": true}}},
			related: []map[string]any{{"metadata": map[string]any{"labels": map[string]any{"app": "db"}}, "spec": map[string]any{"mariaDbRef": map[string]any{"name": "maria"}, "schedule": map[string]any{"cron": "@daily"}}}}},
		{name: "exempt from the strict model", object: cluster("db", map[string]any{"responsibility.io/exempt": "yes"}, map[string]any{}, nil)},
		{name: "cluster-scoped, wrong types everywhere", rawObject: `{"kind":7,"metadata":{"name":["x"],"labels":"no","annotations":{"responsibility.io/waive.replicas":42}},"spec":{"instances":"three","items":{"a":1},"kafka":{"listeners":[{"name":1},null,"x"]},"resources":{"limits":{"memory":"lots"}}}}`},
		{name: "metadata is not an object", rawObject: `{"metadata":null,"spec":null}`, annotationKey: "a", annotationValue: "b"},
		{name: "invalid UTF-8 everywhere", rawObject: "{\"metadata\":{\"name\":\"d\xffb\",\"namespace\":\"\xc3\"},\"spec\":{\"kafka\":{\"listeners\":[{\"name\":\"\xed\xa0\x80\"}]}}}",
			annotationKey: v1alpha1.AnnotationWaivePrefix + "name-valid\xff", annotationValue: "\xff\xfe\u2028<&>"},
		{name: "huge strings", large: true, object: cluster(strings.Repeat("n", 64<<10), nil, map[string]any{"kafka": map[string]any{"listeners": listeners}}, nil),
			annotationKey: v1alpha1.AnnotationWaivePrefix + "tls-enforced", annotationValue: strings.Repeat("\x01\xff", 16<<10)},
		{name: "deep nesting", large: true, object: cluster("db", nil, map[string]any{"deep": deep, "kafka": deep}, map[string]any{"x": deep})},
		{name: "runaway cost on the tenant's list", large: true, object: cluster("db", nil, map[string]any{"kafka": map[string]any{"listeners": longNames}}, nil)},
	}
}

func (s evaluateSeed) objectJSON(tb testing.TB) []byte {
	tb.Helper()
	if s.object != nil {
		return mustJSON(tb, s.object)
	}
	return []byte(s.rawObject)
}

func FuzzEvaluate(f *testing.F) {
	models := fuzzModels(f)
	for _, s := range evaluateSeeds() {
		if !s.large {
			f.Add(s.objectJSON(f), s.annotationKey, s.annotationValue, mustJSON(f, s.related))
		}
	}
	f.Fuzz(func(t *testing.T, object []byte, annotationKey, annotationValue string, related []byte) {
		checkEvaluate(t, models, object, annotationKey, annotationValue, related)
	})
}

// TestEvaluateLargeInputs checks the properties of FuzzEvaluate on the
// large seeds.
func TestEvaluateLargeInputs(t *testing.T) {
	models := fuzzModels(t)
	for _, s := range evaluateSeeds() {
		if s.large {
			t.Run(s.name, func(t *testing.T) {
				checkEvaluate(t, models, s.objectJSON(t), s.annotationKey, s.annotationValue, mustJSON(t, s.related))
			})
		}
	}
}

// checkEvaluate evaluates a workload, given as JSON with one more
// annotation and a JSON list of related objects, and checks every property
// of the result.
func checkEvaluate(t *testing.T, models []*Model, object []byte, annotationKey, annotationValue string, related []byte) {
	t.Helper()
	in, ok := fuzzInput(object, annotationKey, annotationValue, related, models)
	if !ok {
		t.Skip("not a JSON object")
	}
	objectLabels := stringMap(in.Object, "metadata", "labels")
	matched := Match(models, in.GVK, objectLabels, in.Namespace, in.Namespace != nil)
	if !slices.IsSortedFunc(matched, func(a, b *Model) int { return strings.Compare(a.Name, b.Name) }) {
		t.Fatalf("Match returned %v, not sorted by name", names(matched))
	}
	res := Evaluate(matched, in)

	// Evaluate is pure: it leaves its input alone and returns the same
	// result for the same input, whatever the order of the models.
	fresh, _ := fuzzInput(object, annotationKey, annotationValue, related, models)
	if !reflect.DeepEqual(in.Object, fresh.Object) {
		t.Fatal("Evaluate modified the object")
	}
	reversed := slices.Clone(matched)
	slices.Reverse(reversed)
	again := Evaluate(reversed, fresh)
	assertSameResult(t, res, again)

	inputAnnotations := stringMap(in.Object, "metadata", "annotations")
	keysValid := len(apivalidation.ValidateAnnotations(keysOnly(inputAnnotations), nil)) == 0
	assertDutyResults(t, matched, inputAnnotations, res)
	assertAnnotations(t, res, keysValid, len(object)+len(annotationKey)+len(annotationValue)+len(related))

	// Forged previous states, as a tenant may write them, give only the
	// transitions Transitions documents.
	for _, tr := range Transitions(ParseDuties(inputAnnotations[v1alpha1.AnnotationDuties]), res) {
		toUnmet := tr.State == v1alpha1.DutyUnmet && tr.Previous != v1alpha1.DutyUnmet
		toMet := tr.State == v1alpha1.DutyMet && tr.Previous == v1alpha1.DutyUnmet
		if !toUnmet && !toMet {
			t.Errorf("transition %s/%s from %q to %s is not an event", tr.Model, tr.Duty.Name, tr.Previous, tr.State)
		}
	}
	for _, w := range NewlyIgnoredWaivers(inputAnnotations[v1alpha1.AnnotationIgnoredWaivers], res) {
		if !slices.Contains(res.IgnoredWaivers, w) {
			t.Errorf("newly ignored waiver %+v is not ignored", w)
		}
	}

	assertFixedPoint(t, models, res, object, annotationKey, annotationValue, related, keysValid)
	assertProjectionReadsTheSame(t, matched, in, res)
}

// assertProjectionReadsTheSame checks that the models find in the part of
// the input the operator's cache keeps (Fields.Project, with the fields of
// these models only) what they found in all of it: res.
func assertProjectionReadsTheSame(t *testing.T, matched []*Model, in Input, res Result) {
	t.Helper()
	projected := in
	projected.Object = FieldsOf(matched, in.GVK).Project(in.Object)
	projected.Related = make(map[RelatedSource][]map[string]any, len(in.Related))
	for src, objs := range in.Related {
		if objs == nil {
			projected.Related[src] = nil
			continue
		}
		fields := FieldsOf(matched, src.GVK)
		out := make([]map[string]any, len(objs))
		for i, o := range objs {
			out[i] = fields.Project(o)
		}
		projected.Related[src] = out
	}
	got := Evaluate(matched, projected)
	if !reflect.DeepEqual(res.Annotations, got.Annotations) || !reflect.DeepEqual(res.Labels, got.Labels) {
		t.Fatalf("the projection reads differently:\nall of it:  %q %q\nprojection: %q %q\nfields: %v",
			res.Annotations, res.Labels, got.Annotations, got.Labels, FieldsOf(matched, in.GVK))
	}
	assertSameResult(t, res, got)
}

// FuzzProjection fuzzes a rule and the object it reads together, and checks
// that the rule finds the same in the part of the object the cache keeps.
// The seeds pair every catalog duty with an object of evaluateSeeds, and
// the constructs TestReadFields covers with an object that has their fields.
func FuzzProjection(f *testing.F) {
	duties, related := catalogDuties(f)
	var objects [][]byte
	for _, s := range evaluateSeeds() {
		if !s.large {
			objects = append(objects, s.objectJSON(f))
		}
	}
	for i, d := range duties {
		f.Add(d.Rule, d.MessageExpression, objects[i%len(objects)], mustJSON(f, []map[string]any{schedule("db")}))
	}
	shapes := mustJSON(f, cluster("db", nil, map[string]any{
		"a": map[string]any{"c": int64(1), "x": int64(1)}, "b": map[string]any{"c": int64(2)}, "list": []any{map[string]any{"a": int64(1), "b": "x"}, "s"},
		"m": map[string]any{"x1": int64(1), "y": int64(2)}, "containers": []any{map[string]any{"image": "i:1", "resources": map[string]any{}}},
		"tls": map[string]any{"enabled": true}, "storage": map[string]any{"storageClass": "fast", "size": "1Gi"}, "opt": "here", "x": []any{int64(1)},
	}, nil))
	for _, rule := range []string{
		`object.spec.list.map(x, x.a).exists(y, y == 1)`,
		`object.spec.list.filter(x, x.a == 1).size() == 1`,
		`object.spec.m.all(k, k.startsWith("x"))`,
		`object.spec.m.all(k, v, v == 1)`,
		`(true ? object.spec.a : object.spec.b).c == 1`,
		`object.spec[object.metadata.name].size() == 2`,
		`object.spec[?"opt"].hasValue() && !has(object.spec.absent)`,
		`object.spec.?a.optMap(v, v.x).orValue(0) == 1`,
		`[{"spec": 1}].all(object, object.spec == 1)`,
		`object.spec.containers.all(c, c.image.contains(":") && has(c.resources))`,
		`has(object.spec.storage.storageClass) && object.spec.list[0].b == "x"`,
		`related.schedules.exists(s, s.spec.cluster.name == object.metadata.name && !s.spec.?suspend.orValue(false))`,
		`related.schedules.map(s, s.spec).size() > 0 && string(object.spec.x) != ""`,
	} {
		f.Add(rule, `"read " + string(object.spec.?tls.orValue({}))`, shapes, mustJSON(f, []map[string]any{schedule("db")}))
	}
	f.Fuzz(func(t *testing.T, rule, messageExpression string, object, relatedObjects []byte) {
		if utf8.RuneCountInString(rule) > maxRuleRunes || utf8.RuneCountInString(messageExpression) > maxRuleRunes {
			t.Skip("longer than the CRD allows")
		}
		m, err := Compile(fuzzRuleModel(related, rule, messageExpression))
		if err != nil {
			t.Skip("does not compile")
		}
		in, ok := fuzzInput(object, "", "", relatedObjects, []*Model{m})
		if !ok {
			t.Skip("not a JSON object")
		}
		assertProjectionReadsTheSame(t, []*Model{m}, in, Evaluate([]*Model{m}, in))
	})
}

// assertSameResult fails unless two results are the same, byte for byte.
func assertSameResult(t *testing.T, a, b Result) {
	t.Helper()
	if !reflect.DeepEqual(a.Annotations, b.Annotations) || !reflect.DeepEqual(a.Labels, b.Labels) {
		t.Fatalf("same input, different results:\n%q %q\n%q %q", a.Annotations, a.Labels, b.Annotations, b.Labels)
	}
	if !reflect.DeepEqual(a.IgnoredWaivers, b.IgnoredWaivers) {
		t.Fatalf("same input, different ignored waivers: %+v, %+v", a.IgnoredWaivers, b.IgnoredWaivers)
	}
	if len(a.Duties) != len(b.Duties) {
		t.Fatalf("same input, %d and %d duty results", len(a.Duties), len(b.Duties))
	}
	for i := range a.Duties {
		x, y := a.Duties[i], b.Duties[i]
		if x.Model != y.Model || x.Duty != y.Duty || x.State != y.State || x.Message != y.Message {
			t.Fatalf("same input, different duty results: %s/%s %s %q, %s/%s %s %q",
				x.Model, x.Duty.Name, x.State, x.Message, y.Model, y.Duty.Name, y.State, y.Message)
		}
	}
}

// assertDutyResults checks that every duty of every matched model has
// exactly one result, in a valid state that waivers changed only as the
// model allows.
func assertDutyResults(t *testing.T, matched []*Model, annotations map[string]string, res Result) {
	t.Helper()
	type key struct{ model, duty string }
	count := map[key]int{}
	for _, d := range res.Duties {
		count[key{d.Model, d.Duty.Name}]++
	}
	want := 0
	for _, m := range matched {
		for _, d := range m.Duties {
			want++
			if n := count[key{m.Name, d.Name}]; n != 1 {
				t.Errorf("duty %s/%s has %d results, want 1", m.Name, d.Name, n)
			}
		}
	}
	if len(res.Duties) != want {
		t.Errorf("%d duty results for %d duties", len(res.Duties), want)
	}
	allowed := map[string]bool{}
	for _, m := range matched {
		allowed[m.Name] = m.AnnotationWaivers
	}
	for _, d := range res.Duties {
		if !slices.Contains(validStates, d.State) {
			t.Errorf("duty %s/%s has state %q", d.Model, d.Duty.Name, d.State)
		}
		reason, waived := annotations[v1alpha1.AnnotationWaivePrefix+d.Duty.Name]
		switch {
		case d.State == v1alpha1.DutyWaived && (!waived || !allowed[d.Model] || d.Message != "waived: "+reason):
			t.Errorf("duty %s/%s is waived (%q) without an allowed waiver", d.Model, d.Duty.Name, d.Message)
		case d.State == v1alpha1.DutyUnmet && waived && allowed[d.Model]:
			t.Errorf("duty %s/%s is unmet despite the waiver %q", d.Model, d.Duty.Name, reason)
		}
	}
}

// assertAnnotations checks what the operator writes: only its own keys,
// valid UTF-8, JSON that reads back as the states it encodes, the unmet list
// and the status label that the states imply, and a size that grows at
// most linearly with the input. keysValid says whether the input's
// annotation keys would pass the API server's validation.
func assertAnnotations(t *testing.T, res Result, keysValid bool, inputSize int) {
	t.Helper()
	if len(res.Models) == 0 {
		if len(res.Annotations) != 0 || len(res.Labels) != 0 {
			t.Fatalf("no model, yet annotations %q and labels %q", res.Annotations, res.Labels)
		}
		return
	}
	size := 0
	for k, v := range res.Annotations {
		size += len(k) + len(v)
		if !slices.Contains(v1alpha1.OwnedAnnotations, k) {
			t.Errorf("annotation %s is not one the operator owns", k)
		}
		// ignored-waivers copies the duty names of waiver keys; keys that
		// are not valid UTF-8 never get past the API server's validation.
		if !utf8.ValidString(v) && (k != v1alpha1.AnnotationIgnoredWaivers || keysValid) {
			t.Errorf("annotation %s is not valid UTF-8: %q", k, v)
		}
	}
	if !json.Valid([]byte(res.Annotations[v1alpha1.AnnotationMatrix])) {
		t.Errorf("matrix is not JSON: %q", res.Annotations[v1alpha1.AnnotationMatrix])
	}
	assertDutiesRoundTrip(t, res)
	if got, want := res.Annotations[v1alpha1.AnnotationUnmet], strings.Join(res.Unmet(), ","); got != want {
		t.Errorf("unmet annotation %q, want %q", got, want)
	}

	status, ok := res.Labels[v1alpha1.LabelStatus]
	if !ok || len(res.Labels) != 1 {
		t.Fatalf("labels %q, want the status label only", res.Labels)
	}
	if errs := content.IsLabelValue(status); len(errs) > 0 {
		t.Errorf("status label %q is not a label value: %v", status, errs)
	}
	wantStatus := v1alpha1.StatusMet
	for _, d := range res.Duties {
		if d.State == v1alpha1.DutyUnmet {
			wantStatus = v1alpha1.StatusUnmet
			break
		}
		if d.State == v1alpha1.DutyUnknown {
			wantStatus = v1alpha1.StatusUnknown
		}
	}
	if status != wantStatus {
		t.Errorf("status label %q, want %q", status, wantStatus)
	}
	size += len(v1alpha1.LabelStatus) + len(status)
	if limit := annotationFixedBytes + annotationBytesPerInputByte*inputSize; size > limit {
		t.Errorf("the operator writes %d bytes for %d bytes of input, over the bound of %d", size, inputSize, limit)
	}
}

// assertDutiesRoundTrip checks that the duties annotation reads back, with
// ParseDuties, as exactly the duty results: what the next reconcile
// compares against.
func assertDutiesRoundTrip(t *testing.T, res Result) {
	t.Helper()
	raw, ok := res.Annotations[v1alpha1.AnnotationDuties]
	if ok != (len(res.Duties) > 0) {
		t.Fatalf("duties annotation present %v for %d duty results", ok, len(res.Duties))
	}
	if !ok {
		return
	}
	if !json.Valid([]byte(raw)) {
		t.Fatalf("duties annotation is not JSON: %q", raw)
	}
	parsed := ParseDuties(raw)
	n := 0
	for _, m := range parsed {
		n += len(m)
	}
	if n != len(res.Duties) {
		t.Errorf("duties annotation holds %d duties, want %d: %s", n, len(res.Duties), raw)
	}
	for _, d := range res.Duties {
		got, ok := parsed[d.Model][d.Duty.Name]
		if !ok || got.State != d.State {
			t.Errorf("duty %s/%s reads back as %+v, want state %s", d.Model, d.Duty.Name, got, d.State)
		}
		// JSON keeps valid UTF-8 exactly and replaces invalid bytes.
		if utf8.ValidString(d.Message) && got.Message != d.Message {
			t.Errorf("duty %s/%s message reads back as %q, want %q", d.Model, d.Duty.Name, got.Message, d.Message)
		}
	}
}

// assertFixedPoint writes the result on the object as the operator's apply
// does (replacing whatever owned annotations a tenant forged) and evaluates
// again: the operator must then find nothing to write and nothing to report,
// or it would patch and emit events on every resync.
func assertFixedPoint(t *testing.T, models []*Model, res Result, object []byte, key, value string, related []byte, keysValid bool) {
	t.Helper()
	in, _ := fuzzInput(object, key, value, related, models)
	if _, ok := in.Object["metadata"].(map[string]any); !ok {
		// Every object the API server serves has metadata, and the apply
		// only adds to it; creating it here would change what rules read.
		return
	}
	annotations, labels := metadataMap(in.Object, "annotations"), metadataMap(in.Object, "labels")
	if annotations == nil || labels == nil {
		return // annotations or labels that are not maps: nothing to apply to
	}
	for _, k := range v1alpha1.OwnedAnnotations {
		delete(annotations, k)
	}
	for k, v := range res.Annotations {
		annotations[k] = v
	}
	delete(labels, v1alpha1.LabelStatus)
	for k, v := range res.Labels {
		labels[k] = v
	}
	matched := Match(models, in.GVK, stringMap(in.Object, "metadata", "labels"), in.Namespace, in.Namespace != nil)
	next := Evaluate(matched, in)
	if !OwnedMetadataEqual(stringMap(in.Object, "metadata", "annotations"), stringMap(in.Object, "metadata", "labels"), next) {
		t.Fatalf("after the write the operator wants to write again:\n%q\n%q", res.Annotations, next.Annotations)
	}
	if tr := Transitions(ParseDuties(res.Annotations[v1alpha1.AnnotationDuties]), next); len(tr) > 0 {
		t.Errorf("after the write, a resync reports %d transitions, first %s/%s %q→%s", len(tr), tr[0].Model, tr[0].Duty.Name, tr[0].Previous, tr[0].State)
	}
	// NewlyIgnoredWaivers splits the annotation on commas, which a valid
	// key cannot hold.
	if keysValid {
		if w := NewlyIgnoredWaivers(res.Annotations[v1alpha1.AnnotationIgnoredWaivers], next); len(w) > 0 {
			t.Errorf("after the write, a resync reports ignored waivers again: %+v", w)
		}
	}
}

func keysOnly(m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	for k := range m {
		out[k] = ""
	}
	return out
}

func mustJSON(tb testing.TB, v any) []byte {
	tb.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

func FuzzParseDuties(f *testing.F) {
	for _, s := range []string{
		"", "{}", "null", "[]", `"x"`, "not json", "{", `{"m":"x"}`, `{"m":null}`, `{"m":{}}`, `{"m":{"d":null}}`,
		`{"m":{"d":{"state":"Unmet","message":"Set ssl_min_protocol_version"}}}`,
		`{"m":{"d":{"state":"Bogus","message":42}}}`,
		`{"":{"":{"state":""}}}`,
		`{"m":{"d":{"State":"Met","STATE":"Unmet","extra":[1,2]}},"m":{"e":{"state":"Waived"}}}`,
		"{\"m\xff\":{\"d\":{\"state\":\"Met\",\"message\":\"\xed\xa0\x80\\ud800\"}}}",
		`{"m":{"d":{"state":"Unknown","message":"` + strings.Repeat(`\u00e9`, 4096) + `"}}}`,
		strings.Repeat(`{"m":`, 5000) + strings.Repeat("}", 5000),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, value string) {
		parsed := ParseDuties(value) // nil for "null", which reads as empty too
		// The tolerant contract: a malformed value reads as no states.
		if !json.Valid([]byte(value)) && len(parsed) > 0 {
			t.Fatalf("malformed value read as %v", parsed)
		}
		// Whatever reads back is what the operator's own encoding of those
		// states reads back as: a re-encoded annotation is a fixed point.
		results := dutyResultsOf(parsed)
		encoded := encodeDuties(results)
		if !utf8.ValidString(encoded) || !json.Valid([]byte(encoded)) {
			t.Fatalf("re-encoded %q is not valid JSON", encoded)
		}
		reparsed := ParseDuties(encoded)
		if !reflect.DeepEqual(withoutEmptyModels(parsed), reparsed) {
			t.Fatalf("%q reads as %v, re-encoded as %s, which reads as %v", value, parsed, encoded, reparsed)
		}
		if again := encodeDuties(dutyResultsOf(reparsed)); again != encoded {
			t.Fatalf("encoding is not stable: %s, then %s", encoded, again)
		}
		// Finding the recorded states again is no transition, whatever they are.
		if tr := Transitions(parsed, Result{Duties: results}); len(tr) > 0 {
			t.Fatalf("recorded states %v give transitions %+v", parsed, tr)
		}
	})
}

// dutyResultsOf turns parsed states into duty results, sorted as Evaluate
// sorts them.
func dutyResultsOf(parsed map[string]map[string]DutyAnnotation) []DutyResult {
	var out []DutyResult
	for model, duties := range parsed {
		for name, d := range duties {
			out = append(out, DutyResult{Model: model, Duty: &Duty{Name: name}, State: d.State, Message: d.Message})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Model != out[j].Model {
			return out[i].Model < out[j].Model
		}
		return out[i].Duty.Name < out[j].Duty.Name
	})
	return out
}

// withoutEmptyModels drops the models without duties, which have no duty
// result to encode.
func withoutEmptyModels(parsed map[string]map[string]DutyAnnotation) map[string]map[string]DutyAnnotation {
	out := map[string]map[string]DutyAnnotation{}
	for m, duties := range parsed {
		if len(duties) > 0 {
			out[m] = duties
		}
	}
	return out
}

// compileSample is an object a fuzzed rule is evaluated on.
type compileSample struct {
	name      string
	object    map[string]any
	namespace map[string]any
	related   []map[string]any
}

func compileSamples() []compileSample {
	nested := any(map[string]any{"leaf": "x"})
	for range 64 {
		nested = map[string]any{"n": nested, "list": []any{nested, int64(1), "s"}}
	}
	schedules := make([]map[string]any, 0, 100)
	for i := range 100 {
		schedules = append(schedules, schedule(fmt.Sprintf("db-%d", i)))
	}
	return []compileSample{
		{
			name: "typical",
			object: cluster("db", map[string]any{"app": "db"}, map[string]any{
				"instances": int64(3), "storage": "20Gi", "ratio": 0.5, "enabled": true, "items": manyInts(3),
				"postgresql": map[string]any{"parameters": map[string]any{"ssl_min_protocol_version": "TLSv1.3"}},
				"kafka":      map[string]any{"listeners": []any{map[string]any{"name": "plain", "type": "internal"}}},
			}, map[string]any{v1alpha1.AnnotationWaivePrefix + fuzzedDuty: "accepted risk"}),
			namespace: namespace(map[string]any{"tier": "gold"}),
			related:   []map[string]any{schedule("db")},
		},
		{
			// Lists big enough for nested loops to run into the cost limit,
			// small enough that reaching it takes a fraction of a second
			// (CEL's cost tracking slows down with the length of a list),
			// and strings small enough that one CEL call, whose result the
			// cost limit checks only after it is built, stays in memory.
			name: "large",
			object: cluster(strings.Repeat("d", 253), nil, map[string]any{
				"items": manyInts(10), "big": manyInts(100), "text": strings.Repeat("x\u00e9", 1024), "nested": nested,
			}, nil),
			namespace: namespace(nil),
			related:   schedules,
		},
		{
			name:   "cluster-scoped and sparse",
			object: map[string]any{"apiVersion": "postgresql.cnpg.io/v1", "kind": "Cluster", "metadata": map[string]any{"name": "db"}},
		},
	}
}

// fuzzRuleModel is an otherwise valid model whose second area holds the
// fuzzed duty, which may read every related list the catalog declares.
func fuzzRuleModel(related []v1alpha1.RelatedResource, rule, messageExpression string) *v1alpha1.ResponsibilityModel {
	return model("fuzz", func(rm *v1alpha1.ResponsibilityModel) {
		rm.Spec.Areas[1].Duties = []v1alpha1.Duty{{Name: fuzzedDuty, Rule: rule, MessageExpression: messageExpression, Message: "fixed message", Related: related}}
	})
}

// catalogDuties returns the duties of config/catalog and the related lists
// they declare, by name.
func catalogDuties(tb testing.TB) ([]v1alpha1.Duty, []v1alpha1.RelatedResource) {
	tb.Helper()
	files, err := filepath.Glob(filepath.Join("..", "..", "config", "catalog", "*.yaml"))
	if err != nil {
		tb.Fatal(err)
	}
	var duties []v1alpha1.Duty
	related := []v1alpha1.RelatedResource{{Name: "schedules", APIVersion: "postgresql.cnpg.io/v1", Kind: "ScheduledBackup"}}
	for _, file := range files {
		rm := &v1alpha1.ResponsibilityModel{}
		readYAML(tb, file, rm)
		if rm.Kind != "ResponsibilityModel" {
			continue // kustomization.yaml
		}
		for _, a := range rm.Spec.Areas {
			for _, d := range a.Duties {
				duties = append(duties, d)
				for _, r := range d.Related {
					if !slices.ContainsFunc(related, func(x v1alpha1.RelatedResource) bool { return x.Name == r.Name }) {
						related = append(related, r)
					}
				}
			}
		}
	}
	if len(duties) == 0 {
		tb.Fatal("no duty in config/catalog")
	}
	return duties, related
}

func FuzzCompileRule(f *testing.F) {
	duties, related := catalogDuties(f)
	for _, d := range duties {
		f.Add(d.Rule, d.MessageExpression)
	}
	// Runaway rules, all stopped at run time: nested loops over a constant
	// list (3^13 iterations) and over the object's list (10^7 iterations),
	// and a string that doubles 24 times; and a rule that the compile-time
	// estimate refuses.
	nestedAll := func(depth int, list string) string {
		rule := "true"
		for i := range depth {
			rule = fmt.Sprintf("%s.all(x%d, x%d >= 0 && %s)", list, i, i, rule)
		}
		return rule
	}
	// The doubled string is typed with string(): cel-go charges a constant
	// for concatenating dyn values (everything read from object), so an
	// untyped doubling is not stopped before it exhausts memory.
	doubled := "[string(object.metadata.name)]" + strings.Repeat(".map(a, a + a)", 24) + "[0]"
	for _, s := range [][2]string{
		{"", ""},
		{"true", `"always " + "met"`},
		{nestedAll(13, "[1,2,3]"), ""},
		{"[" + strings.Repeat("1,", 999) + "1].map(a, [" + strings.Repeat("1,", 999) + "1].map(b, a + b)).size() > 0", ""},
		{nestedAll(7, "object.spec.items"), `"items: " + string(` + nestedAll(7, "object.spec.items") + `)`},
		{doubled + `.size() > 0`, doubled},
		{"object.spec.big.all(a, object.spec.big.all(b, a == b || a != b))", `string(object.spec.big.filter(a, a % 2 == 0).size())`},
		{strings.Repeat("(", 300) + "true" + strings.Repeat(")", 300), ""},
		{strings.Repeat("!", 4000) + "true", ""},
		{"[" + strings.Repeat("object.spec.items,", 200) + "object.spec.items].all(l, l.all(x, x >= 0))", ""},
	} {
		f.Add(s[0], s[1])
	}
	samples := compileSamples()
	f.Fuzz(func(t *testing.T, rule, messageExpression string) {
		if utf8.RuneCountInString(rule) > maxRuleRunes || utf8.RuneCountInString(messageExpression) > maxRuleRunes {
			t.Skip("longer than the CRD allows")
		}
		m, err := Compile(fuzzRuleModel(related, rule, messageExpression))
		if err != nil {
			assertFuzzedDutyError(t, err)
			return
		}
		var fuzzed *Duty
		for _, d := range m.Duties {
			if d.Name == fuzzedDuty {
				fuzzed = d
			}
		}
		if fuzzed == nil {
			t.Fatalf("compiled model has no duty %s", fuzzedDuty)
		}
		for _, s := range samples {
			in := Input{GVK: clusterGVK, Object: s.object, Namespace: s.namespace, Related: map[RelatedSource][]map[string]any{}}
			for _, src := range m.RelatedSources() {
				in.Related[src] = s.related
			}
			res := Evaluate([]*Model{m}, in)
			assertDutyResults(t, []*Model{m}, stringMap(s.object, "metadata", "annotations"), res)
			assertDutiesRoundTrip(t, res)
			if stopped := assertRuleOutcome(t, s.name, rule, fuzzed, in, res); stopped {
				// Running into the cost limit takes a good part of a
				// second; once per input is enough.
				break
			}
		}
	})
}

// assertFuzzedDutyError checks that a compile error is about the fuzzed
// duty, and says so.
func assertFuzzedDutyError(t *testing.T, err error) {
	t.Helper()
	fieldErrors := FieldErrors(err)
	if len(fieldErrors) == 0 {
		t.Fatalf("compile error without a field: %v", err)
	}
	for _, fe := range fieldErrors {
		if fe.Path != fuzzedDutyPath+".rule" && fe.Path != fuzzedDutyPath+".messageExpression" {
			t.Errorf("compile error on %s, not on the fuzzed rule: %v", fe.Path, fe)
		}
		if !strings.Contains(fe.Message, "duty "+fuzzedDuty) {
			t.Errorf("compile error does not name the duty: %v", fe)
		}
	}
}

// assertRuleOutcome evaluates the fuzzed rule on its own, with cost
// tracking, and checks that a successful evaluation stayed within the cost
// limit and that Evaluate turned its outcome into the documented state: an
// error (the cost limit included) or a non-bool is Unknown, never Met.
// stopped reports that the cost limit stopped the rule.
func assertRuleOutcome(t *testing.T, sample, rule string, d *Duty, in Input, res Result) (stopped bool) {
	t.Helper()
	var got DutyResult
	for _, r := range res.Duties {
		if r.Duty == d {
			got = r
		}
	}
	if got.State == v1alpha1.DutyUnknown && strings.Contains(got.Message, "cost limit") {
		return true // as it should be; spares a second run into the limit
	}
	want := directState(t, d, in)
	if got.State == want {
		return false
	}
	// CEL iterates over maps in Go's random order, so a rule that depends
	// on that order has no single outcome: a known problem, not
	// what this target looks for.
	for range 8 {
		if directState(t, d, in) != want {
			t.Skipf("rule %q depends on map iteration order", rule)
		}
	}
	t.Fatalf("%s: duty is %s (%s), but the rule alone evaluates to %s", sample, got.State, got.Message, want)
	return false
}

// directState evaluates a duty's rule as Evaluate does, but on its own and
// reading the cost, and returns the state the result implies.
func directState(t *testing.T, d *Duty, in Input) v1alpha1.DutyState {
	t.Helper()
	act := &activation{object: in.Object}
	act.related, act.relatedItems = (&Model{}).relatedFor(d, in.Related, "", "") // no joins: every object
	if in.Namespace != nil {
		act.namespace = in.Namespace
	}
	val, details, err := d.rule.tracked.Eval(act)
	if details == nil || details.ActualCost() == nil {
		t.Fatal("the rule was evaluated without cost tracking")
	}
	cost := *details.ActualCost()
	if err == nil && cost > RuleCostLimit {
		t.Fatalf("the rule cost %d, over the limit of %d, and was not stopped", cost, RuleCostLimit)
	}
	if d.rule.pick(act) != d.rule.tracked && (cost > RuleCostLimit || (err != nil && strings.Contains(err.Error(), "cost limit"))) {
		t.Fatalf("the rule was planned without cost tracking for related lists up to %d long (the longest here is %d) and object values up to %d long (0: any), but costs %d, over the limit of %d",
			d.rule.untrackedUpTo, act.relatedItems, d.rule.untrackedObjectItems, cost, RuleCostLimit)
	}
	if err != nil {
		return v1alpha1.DutyUnknown
	}
	b, ok := val.(types.Bool)
	switch {
	case !ok:
		return v1alpha1.DutyUnknown
	case bool(b):
		return v1alpha1.DutyMet
	case hasKey(stringMap(in.Object, "metadata", "annotations"), v1alpha1.AnnotationWaivePrefix+d.Name):
		return v1alpha1.DutyWaived // the fuzz model allows waivers
	default:
		return v1alpha1.DutyUnmet
	}
}

func hasKey(m map[string]string, k string) bool {
	_, ok := m[k]
	return ok
}

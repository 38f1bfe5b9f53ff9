package controller

// Hostile and bad input, and a hostile API server: rules that run away,
// a thousand models, objects at the size limits, tenants who forge the
// operator's keys or waive what they may not, excluded namespaces, and
// writes that fail with 409, 429 and 5xx. Each test says which regression
// makes it fail.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/responsibility-operator/responsibility-operator/api/v1alpha1"
	"github.com/responsibility-operator/responsibility-operator/internal/evaluate"
	"github.com/responsibility-operator/responsibility-operator/internal/metrics"
)

// writtenByOperator reports whether the operator's field manager owns any
// field of an object, read from the API server (the cache strips
// managedFields).
func writtenByOperator(t *testing.T, obj *unstructured.Unstructured) bool {
	t.Helper()
	for _, mf := range getObject(t, obj).GetManagedFields() {
		if mf.Manager == v1alpha1.FieldManager {
			return true
		}
	}
	return false
}

// neverWritten fails when the operator put a key on an object or owns a
// field of it.
func neverWritten(t *testing.T, objs ...*unstructured.Unstructured) func() error {
	return func() error {
		for _, o := range objs {
			if keys := ownedKeys(getObject(t, o)); len(keys) > 0 {
				return fmt.Errorf("%s/%s got the operator's keys %v", o.GetNamespace(), o.GetName(), keys)
			}
			if writtenByOperator(t, o) {
				return fmt.Errorf("%s/%s has a managedFields entry of %s", o.GetNamespace(), o.GetName(), v1alpha1.FieldManager)
			}
		}
		return nil
	}
}

// waitModel waits until a model's status satisfies check.
func waitModel(t *testing.T, name string, timeout time.Duration, check func(*v1alpha1.ResponsibilityModel) error) *v1alpha1.ResponsibilityModel {
	t.Helper()
	rm := &v1alpha1.ResponsibilityModel{}
	eventually(t, timeout, func() error {
		if err := k8s.Get(context.Background(), client.ObjectKey{Name: name}, rm); err != nil {
			return err
		}
		return check(rm)
	})
	return rm
}

func isReady(rm *v1alpha1.ResponsibilityModel) error {
	c := meta.FindStatusCondition(rm.Status.Conditions, v1alpha1.ConditionReady)
	if c == nil || c.Status != metav1.ConditionTrue || c.ObservedGeneration != rm.Generation {
		return fmt.Errorf("model %s: Ready = %+v", rm.Name, c)
	}
	return nil
}

// ownedMetadata is the operator's part of an object: its annotations and
// status label.
func ownedMetadata(obj *unstructured.Unstructured) map[string]string {
	out := map[string]string{}
	for _, k := range v1alpha1.OwnedAnnotations {
		if v, ok := obj.GetAnnotations()[k]; ok {
			out[k] = v
		}
	}
	if v, ok := obj.GetLabels()[v1alpha1.LabelStatus]; ok {
		out[v1alpha1.LabelStatus] = v
	}
	return out
}

func deleteObjects(objs ...*unstructured.Unstructured) {
	for _, o := range objs {
		_ = k8s.Delete(context.Background(), o)
	}
}

// 1a. A rule whose cheapest evaluation already exceeds the cost limit is
// refused at admission with a message about cost.
// 1b. A rule whose cost depends on the object (three nested comprehensions
// over a list read from the object, which the estimate cannot bound) is
// admitted; on a big object the run-time limit stops it: that duty is
// Unknown with a message naming the cost limit, the model's other duties on
// the same object are still evaluated, and the operator goes on annotating.
// Fails if the webhook stops estimating cost, if the run-time cost limit is
// dropped (the duty turns Met after seconds of CPU), or if one runaway rule
// hides the other duties or stalls the worker.
func TestRunawayRuleCost(t *testing.T) {
	startManager(t)
	ctx := context.Background()

	refused := dbModel("cost-refused", "cost")
	list := `[` + strings.Repeat("1,", 999) + `1]`
	refused.Spec.Areas[0].Duties[0].Rule = list + `.map(a, ` + list + `.map(b, a + b)).size() > 0`
	err := k8s.Create(ctx, refused)
	if !apierrors.IsInvalid(err) {
		t.Fatalf("create with a rule over the cost limit: err = %v, want Invalid", err)
	}
	for _, want := range []string{"spec.areas[0].duties[0].rule", "estimated cost", "over the limit"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}

	ns := newNamespace(t, map[string]string{"test": "cost"})
	rm := dbModel("cost-db", "cost")
	rm.Spec.Areas[0].Duties = append(rm.Spec.Areas[0].Duties, v1alpha1.Duty{
		Name:    "bounded-items",
		Message: "Keep spec.postgresql.pg_hba short",
		Rule: `object.spec.?postgresql.?pg_hba.orValue([]).all(a, object.spec.postgresql.pg_hba.all(b,
			object.spec.postgresql.pg_hba.all(c, size(a) + size(b) + size(c) >= 0)))`,
	})
	applyModel(t, rm) // admitted: the estimate's minimum is an empty list

	items := func(n int) []any {
		out := make([]any, n)
		for i := range out {
			out[i] = fmt.Sprintf("item-%d", i)
		}
		return out
	}
	spec := func(n int) map[string]any {
		s := tlsSpec()
		s["postgresql"].(map[string]any)["pg_hba"] = items(n)
		return s
	}
	// 200³ innermost iterations: far over the limit of 10⁶ cost units, and
	// seconds of CPU if nothing stopped it.
	big := createObject(t, cnpg, "Cluster", ns, "big", nil, spec(200))
	small := createObject(t, cnpg, "Cluster", ns, "small", nil, spec(3))
	t.Cleanup(func() { deleteObjects(big, small) })

	waitDutyState(t, big, "cost-db", "bounded-items", v1alpha1.DutyUnknown)
	duties := evaluate.ParseDuties(getObject(t, big).GetAnnotations()[v1alpha1.AnnotationDuties])["cost-db"]
	if msg := duties["bounded-items"].Message; !strings.Contains(msg, "cost limit") {
		t.Errorf("Unknown duty message %q does not name the cost limit", msg)
	}
	if s := duties["tls-enforced"].State; s != v1alpha1.DutyMet {
		t.Errorf("tls-enforced on the big object = %q, want Met: the runaway rule hid the other duties", s)
	}
	if s := duties["backup-scheduled"].State; s != v1alpha1.DutyUnmet {
		t.Errorf("backup-scheduled on the big object = %q, want Unmet", s)
	}
	if u := getObject(t, big).GetAnnotations()[v1alpha1.AnnotationUnmet]; u != "cost-db/backup-scheduled" {
		t.Errorf("unmet = %q, want only cost-db/backup-scheduled (Unknown is not unmet)", u)
	}
	waitDutyState(t, small, "cost-db", "bounded-items", v1alpha1.DutyMet)

	// The operator is unaffected: an object created now is annotated as fast
	// as ever, and the model is Ready.
	start := time.Now()
	later := createObject(t, cnpg, "Cluster", ns, "later", nil, spec(200))
	t.Cleanup(func() { deleteObjects(later) })
	waitDutyState(t, later, "cost-db", "bounded-items", v1alpha1.DutyUnknown)
	t.Logf("an object with a runaway rule evaluated and annotated %s after its creation", time.Since(start).Round(time.Millisecond))
	waitModel(t, "cost-db", 10*time.Second, isReady)
}

// 2. Many small models (each selecting two ObjectBucketClaims by label, a
// quarter of them nothing) keep the operator functional: every object ends
// up with exactly the models that select it, and every model is Ready with
// the right count, within the deadline. Fails when the model controller or
// the registry degrades badly with the number of models, or loses a model
// in the crowd.
//
// The issue asks for 1,000 models. With four model reconciles at a time
// they took 38 s on an idle 2-core machine (80-160 s before, one at a
// time); the deadline leaves room for the other packages' tests that run
// beside this one in make test.
func TestThousandModels(t *testing.T) {
	manyModels(t, 1000, 120*time.Second)
}

func manyModels(t *testing.T, models int, deadline time.Duration) {
	startManager(t)
	ctx := context.Background()
	label := fmt.Sprintf("scale-%d", models)
	ns := newNamespace(t, map[string]string{"test": label})
	const (
		groups    = 30 // label values carried by objects, two objects each
		selectors = 40 // label values selected by models; g30..g39 match nothing
		perGroup  = 2
	)
	const obc = "objectbucket.io/v1alpha1"
	var objs []*unstructured.Unstructured
	for j := range groups * perGroup {
		objs = append(objs, createObject(t, obc, "ObjectBucketClaim", ns, fmt.Sprintf("bucket-%02d", j),
			map[string]string{"scale-group": fmt.Sprintf("g%d", j%groups)},
			map[string]any{"storageClassName": "rook-ceph-bucket", "generateBucketName": "b"}))
	}
	modelFor := func(i int) *v1alpha1.ResponsibilityModel {
		return &v1alpha1.ResponsibilityModel{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("%s-%04d", label, i), Labels: map[string]string{"hostile-test": label}},
			Spec: v1alpha1.ResponsibilityModelSpec{
				Service: "Object Storage", Provider: "DanubeData",
				Targets: []v1alpha1.Target{{
					APIVersion: obc, Kind: "ObjectBucketClaim",
					Selector:          &metav1.LabelSelector{MatchLabels: map[string]string{"scale-group": fmt.Sprintf("g%d", i%selectors)}},
					NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"test": label}},
				}},
				Areas: []v1alpha1.Area{{Name: "Buckets", Provider: "Storage", Customer: "Bucket names",
					Duties: []v1alpha1.Duty{{Name: "named", Message: "Name the bucket", Rule: `object.spec.?bucketName.hasValue()`}}}},
			},
		}
	}
	want := map[string]string{}   // object label value -> its models annotation
	matched := map[string]int32{} // model name -> objects it selects
	for i := range models {
		g, name := fmt.Sprintf("g%d", i%selectors), modelFor(i).Name
		want[g] = strings.TrimPrefix(want[g]+","+name, ",")
		if i%selectors < groups {
			matched[name] = perGroup
		}
	}
	// Cleanup before the manager stops: the objects first (so that no
	// finalizer waits for annotations to go), then every model at once.
	t.Cleanup(func() {
		start := time.Now()
		deleteObjects(objs...)
		if err := k8s.DeleteAllOf(ctx, &v1alpha1.ResponsibilityModel{}, client.MatchingLabels{"hostile-test": label}); err != nil {
			t.Errorf("delete models: %v", err)
		}
		poll(t, 2*time.Minute, func() error {
			list := &v1alpha1.ResponsibilityModelList{}
			if err := k8s.List(ctx, list, client.MatchingLabels{"hostile-test": label}); err != nil {
				return err
			}
			if n := len(list.Items); n > 0 {
				return fmt.Errorf("%d models left", n)
			}
			return nil
		})
		t.Logf("%d models deleted (finalizers honoured) in %s", models, time.Since(start).Round(time.Millisecond))
	})

	start := time.Now()
	work := make(chan int)
	var wg sync.WaitGroup
	errs := make(chan error, models)
	for range 8 {
		wg.Go(func() {
			for i := range work {
				if err := k8s.Create(ctx, modelFor(i)); err != nil {
					errs <- err
				}
			}
		})
	}
	for i := range models {
		work <- i
	}
	close(work)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("create model: %v", err)
	}
	created := time.Since(start)

	poll(t, time.Until(start.Add(deadline)), func() error {
		list := &unstructured.UnstructuredList{}
		list.SetAPIVersion(obc)
		list.SetKind("ObjectBucketClaimList")
		if err := k8s.List(ctx, list, client.InNamespace(ns)); err != nil {
			return err
		}
		wrong, have := 0, 0
		for _, o := range list.Items {
			got := o.GetAnnotations()[v1alpha1.AnnotationModels]
			if got != "" {
				have += len(strings.Split(got, ","))
			}
			if got != want[o.GetLabels()["scale-group"]] {
				wrong++
			}
		}
		if wrong > 0 {
			return fmt.Errorf("%d of %d objects lack some models (%d of %d model annotations present)",
				wrong, len(list.Items), have, perGroup*len(matched))
		}
		return nil
	})
	annotated := time.Since(start)

	poll(t, time.Until(start.Add(deadline)), func() error {
		list := &v1alpha1.ResponsibilityModelList{}
		if err := k8s.List(ctx, list, client.MatchingLabels{"hostile-test": label}); err != nil {
			return err
		}
		bad := 0
		var example string
		for i := range list.Items {
			rm := &list.Items[i]
			if err := isReady(rm); err != nil || rm.Status.MatchedObjects != matched[rm.Name] {
				bad++
				example = fmt.Sprintf("%s: ready %v, matched %d want %d", rm.Name, err, rm.Status.MatchedObjects, matched[rm.Name])
			}
		}
		if len(list.Items) != models || bad > 0 {
			return fmt.Errorf("%d models, %d not Ready or miscounted (%s)", len(list.Items), bad, example)
		}
		return nil
	})
	ready := time.Since(start)
	t.Logf("%d models: created in %s, every object annotated after %s, every model Ready after %s",
		models, created.Round(time.Millisecond), annotated.Round(time.Millisecond), ready.Round(time.Millisecond))
}

// poll is eventually with a 1 s interval, for checks that list hundreds of
// objects (at 100 ms the test itself would load the API server).
func poll(t *testing.T, timeout time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %v", timeout.Round(time.Second), err)
		}
		time.Sleep(time.Second)
	}
}

// faultInjector sits in the manager's HTTP transport and fails server-side
// applies (PATCH) to the objects of one resource: the 1st, 3rd, 5th... PATCH
// of each object, with the status code codeFor returns for the object's
// namespace (0: let it through). With codeFor nil it only counts.
type faultInjector struct {
	resource string // plural resource, e.g. "dragonflies"
	codeFor  func(namespace string) int

	mu       sync.Mutex
	attempts map[string]int // by namespace/name
	injected map[string]int
}

func newFaultInjector(resource string, codeFor func(string) int) *faultInjector {
	return &faultInjector{resource: resource, codeFor: codeFor, attempts: map[string]int{}, injected: map[string]int{}}
}

type roundTripperFunc func(*http.Request) (*http.Response, error)

func (f roundTripperFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func (f *faultInjector) wrap(rt http.RoundTripper) http.RoundTripper {
	return roundTripperFunc(func(req *http.Request) (*http.Response, error) {
		// .../namespaces/<ns>/<resource>/<name>
		parts := strings.Split(strings.Trim(req.URL.Path, "/"), "/")
		n := len(parts)
		if req.Method != http.MethodPatch || n < 4 || parts[n-2] != f.resource || parts[n-4] != "namespaces" {
			return rt.RoundTrip(req)
		}
		ns, key := parts[n-3], parts[n-3]+"/"+parts[n-1]
		code := 0
		if f.codeFor != nil {
			code = f.codeFor(ns)
		}
		f.mu.Lock()
		f.attempts[key]++
		fail := code != 0 && f.attempts[key]%2 == 1
		if fail {
			f.injected[key]++
		}
		f.mu.Unlock()
		if !fail {
			return rt.RoundTrip(req)
		}
		if req.Body != nil {
			_ = req.Body.Close()
		}
		return faultResponse(req, code), nil
	})
}

func (f *faultInjector) counts(namespace, name string) (attempts, injected int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.attempts[namespace+"/"+name], f.injected[namespace+"/"+name]
}

// faultResponse is what an API server (or a proxy in front of it) answers:
// a Status, and Retry-After where the API server sends one.
func faultResponse(req *http.Request, code int) *http.Response {
	reason := map[int]metav1.StatusReason{
		http.StatusConflict:            metav1.StatusReasonConflict,
		http.StatusUnprocessableEntity: metav1.StatusReasonInvalid,
		http.StatusTooManyRequests:     metav1.StatusReasonTooManyRequests,
		http.StatusInternalServerError: metav1.StatusReasonInternalError,
		http.StatusServiceUnavailable:  metav1.StatusReasonServiceUnavailable,
	}[code]
	body, _ := json.Marshal(&metav1.Status{
		TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"},
		Status:   metav1.StatusFailure, Code: int32(code), Reason: reason,
		Message: fmt.Sprintf("injected fault %d", code),
	})
	h := http.Header{"Content-Type": {"application/json"}}
	if code == http.StatusTooManyRequests || code == http.StatusServiceUnavailable {
		h.Set("Retry-After", "1")
	}
	return &http.Response{
		StatusCode: code, Status: fmt.Sprintf("%d %s", code, http.StatusText(code)),
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: h, Body: io.NopCloser(bytes.NewReader(body)), ContentLength: int64(len(body)), Request: req,
	}
}

const dragonfly = "dragonflydb.io/v1alpha1"

// cacheModel targets Dragonflies (a kind no other test writes, so the
// applies_total{kind="Dragonfly"} counter belongs to the test running) in
// the namespaces labelled test=<testLabel>; its one duty turns met when the
// tenant sets spec.snapshot.cron.
func cacheModel(name, testLabel string) *v1alpha1.ResponsibilityModel {
	return &v1alpha1.ResponsibilityModel{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: v1alpha1.ResponsibilityModelSpec{
			Service: "Managed Cache", Provider: "DanubeData",
			Targets: []v1alpha1.Target{{APIVersion: dragonfly, Kind: "Dragonfly",
				NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"test": testLabel}}}},
			Areas: []v1alpha1.Area{{Name: "Backups", Provider: "Snapshot storage", Customer: "Snapshot schedule",
				Duties: []v1alpha1.Duty{{Name: "snapshots-scheduled", Message: "Set spec.snapshot.cron",
					Rule: `object.spec.?snapshot.?cron.hasValue()`}}}},
		},
	}
}

// applyFaultScenario runs the operator behind a fault injector over
// namespaces, one per status code, with three Dragonflies each: every first
// write (duty found unmet) and every second write (duty turned met, after
// the tenant sets a snapshot schedule) fails once. Every object must
// converge, with exactly one event per transition.
func applyFaultScenario(t *testing.T, model string, codes ...int) (f *faultInjector, objs map[int][]*unstructured.Unstructured) {
	t.Helper()
	ctx := context.Background()
	codeOf := map[string]int{}
	objs = map[int][]*unstructured.Unstructured{}
	for _, code := range codes {
		ns := newNamespace(t, map[string]string{"test": "faults-" + model})
		codeOf[ns] = code
		for i := range 3 {
			objs[code] = append(objs[code], createObject(t, dragonfly, "Dragonfly", ns, fmt.Sprintf("cache-%d", i), nil, map[string]any{"replicas": int64(1)}))
		}
	}
	f = newFaultInjector("dragonflies", func(ns string) int { return codeOf[ns] })
	startManagerWith(t, managerSetup{wrapTransport: f.wrap})
	t.Cleanup(func() {
		for _, list := range objs {
			deleteObjects(list...)
		}
	})
	applyModel(t, cacheModel(model, "faults-"+model))

	for _, code := range codes {
		for _, o := range objs[code] {
			waitAnnotation(t, o, v1alpha1.AnnotationUnmet, model+"/snapshots-scheduled", true)
		}
	}
	for _, list := range objs {
		for _, o := range list {
			cur := getObject(t, o)
			if err := unstructured.SetNestedField(cur.Object, "0 3 * * *", "spec", "snapshot", "cron"); err != nil {
				t.Fatal(err)
			}
			if err := k8s.Update(ctx, cur); err != nil {
				t.Fatalf("tenant update: %v", err)
			}
		}
	}
	for _, code := range codes {
		for _, o := range objs[code] {
			waitDutyState(t, o, model, "snapshots-scheduled", v1alpha1.DutyMet)
			if l := getObject(t, o).GetLabels()[v1alpha1.LabelStatus]; l != v1alpha1.StatusMet {
				t.Errorf("%d: %s status label = %q, want met", code, o.GetName(), l)
			}
		}
	}
	return f, objs
}

// waitAllEvents waits until each object has exactly the given number of
// occurrences of events by reason, then checks for a second that no more
// arrive (waitEvents for many objects at once).
func waitAllEvents(t *testing.T, objs []*unstructured.Unstructured, want map[string]int) {
	t.Helper()
	each := map[*unstructured.Unstructured]map[string]int{}
	for _, o := range objs {
		each[o] = want
	}
	waitEventCounts(t, each)
}

// waitEventCounts is waitAllEvents with different numbers per object.
func waitEventCounts(t *testing.T, want map[*unstructured.Unstructured]map[string]int) {
	t.Helper()
	check := func() error {
		for o, counts := range want {
			for reason, n := range counts {
				if got := eventCount(eventsFor(t, o, reason)); got != n {
					return fmt.Errorf("%s/%s has %d %s events, want %d", o.GetNamespace(), o.GetName(), got, reason, n)
				}
			}
		}
		return nil
	}
	eventually(t, 20*time.Second, check)
	consistently(t, time.Second, check)
}

// 7. 429 and 503 (with Retry-After, as the API server's priority and
// fairness sends them) and 500 on the operator's writes: every object still
// converges, and the duty events are exactly one per transition (a failed
// write emits none, its retry one). 429/503 are retried by client-go after
// Retry-After, invisibly; a 500 surfaces as one ApplyFailed event and one
// responsibility_applies_total{result="error"} per failure, and the
// controller retries with backoff. Fails if a failed write loses a
// transition, repeats an event, or is not retried.
func TestApplyFaultsAreRetried(t *testing.T) {
	codes := []int{http.StatusTooManyRequests, http.StatusInternalServerError, http.StatusServiceUnavailable}
	applies := func(result string) float64 {
		v, _ := metricValue(t, "responsibility_applies_total", map[string]string{"kind": "Dragonfly", "result": result})
		return v
	}
	successBefore, errorBefore := applies(metrics.ApplySuccess), applies(metrics.ApplyError)

	f, objs := applyFaultScenario(t, "faults-cache", codes...)

	total := 0
	want := map[*unstructured.Unstructured]map[string]int{}
	for _, code := range codes {
		for _, o := range objs[code] {
			total++
			attempts, injected := f.counts(o.GetNamespace(), o.GetName())
			// Two writes, each failing once: four PATCHes, two faults.
			if attempts != 4 || injected != 2 {
				t.Errorf("%d: %s: %d PATCHes with %d faults, want 4 with 2", code, o.GetName(), attempts, injected)
			}
			failed := 0
			if code == http.StatusInternalServerError {
				failed = 2
			}
			want[o] = map[string]int{v1alpha1.EventCustomerDutyUnmet: 1, v1alpha1.EventCustomerDutyMet: 1, v1alpha1.EventApplyFailed: failed}
		}
	}
	waitEventCounts(t, want)
	// Every object written twice; only the 500s reach the reconciler as errors.
	if d := applies(metrics.ApplySuccess) - successBefore; d != float64(2*total) {
		t.Errorf("applies_total{result=success} grew by %v, want %d", d, 2*total)
	}
	if d := applies(metrics.ApplyError) - errorBefore; d != float64(2*len(objs[http.StatusInternalServerError])) {
		t.Errorf("applies_total{result=error} grew by %v, want %d", d, 2*len(objs[http.StatusInternalServerError]))
	}
}

// 7 (continued). A 409 Conflict on the operator's write. A server-side apply
// with force and no resourceVersion gets one only when its UID precondition
// fails (the object was replaced, and the watch brings the new one), but a
// 409 can also come from an admission webhook or from the API server giving
// up after repeated write conflicts on a busy object. The write must be
// retried. Fails if a 409 is dropped: the object keeps its stale annotations
// until some unrelated change re-enqueues it.
func TestApplyConflictIsRetried(t *testing.T) {
	f, objs := applyFaultScenario(t, "conflict-cache", http.StatusConflict)
	for _, o := range objs[http.StatusConflict] {
		if attempts, injected := f.counts(o.GetNamespace(), o.GetName()); attempts != 4 || injected != 2 {
			t.Errorf("%s: %d PATCHes with %d faults, want 4 with 2", o.GetName(), attempts, injected)
		}
	}
	waitAllEvents(t, objs[http.StatusConflict], map[string]int{v1alpha1.EventCustomerDutyUnmet: 1, v1alpha1.EventCustomerDutyMet: 1})
}

// 4. A tenant forges the operator's keys (claims every duty met, names a
// model that does not exist) beside an annotation and a label of their
// own. The forged keys are put back on the next evaluation, and the
// tenant's own keys stay. The duties annotation is the operator's memory of
// previous states, so the correction of a forged "Met" is a transition and
// reported again, once. Here the tenant's update also changes the spec (a
// manifest re-applied with stale annotations copied in). Fails if the
// operator stops owning its keys against another field manager (no
// ForceOwnership), or touches the tenant's keys.
func TestForgedAnnotationsAreCorrected(t *testing.T) {
	startManager(t)
	ns := newNamespace(t, map[string]string{"test": "forged"})
	applyModel(t, dbModel("forged-db", "forged"))
	db := createObject(t, cnpg, "Cluster", ns, "orders", nil, tlsSpec())
	// Objects left with keys the operator does not own would be re-applied
	// (a no-op) by every later test's manager: delete them.
	t.Cleanup(func() { deleteObjects(db) })
	waitAnnotation(t, db, v1alpha1.AnnotationUnmet, "forged-db/backup-scheduled", true)
	waitEvents(t, db, v1alpha1.EventCustomerDutyUnmet, 1)
	truth := ownedMetadata(getObject(t, db))

	forge(t, db, "forged-db", "forged-db,made-up-model", func(u *unstructured.Unstructured) {
		if err := unstructured.SetNestedField(u.Object, int64(2), "spec", "instances"); err != nil {
			t.Fatal(err)
		}
	})
	waitOwnedMetadata(t, db, truth)
	// The forged Met of backup-scheduled was corrected: reported once more.
	waitEvents(t, db, v1alpha1.EventCustomerDutyUnmet, 2)
}

// forge writes false values into the operator's keys with another field
// manager, as `kubectl annotate --overwrite` and `kubectl label --overwrite`
// would: it claims every duty of model met and names models. The tenant's
// own keys (team, tier) are added by an earlier, separate update, so the
// forging update changes nothing but the operator's keys, unless also
// changes more.
func forge(t *testing.T, obj *unstructured.Unstructured, model, models string, also func(*unstructured.Unstructured)) {
	t.Helper()
	update := func(edit func(ann, labels map[string]string), also func(*unstructured.Unstructured)) {
		cur := getObject(t, obj)
		ann, labels := cur.GetAnnotations(), cur.GetLabels()
		if ann == nil {
			ann = map[string]string{}
		}
		if labels == nil {
			labels = map[string]string{}
		}
		edit(ann, labels)
		cur.SetAnnotations(ann)
		cur.SetLabels(labels)
		if also != nil {
			also(cur)
		}
		if err := k8s.Update(context.Background(), cur, client.FieldOwner("kubectl-edit")); err != nil {
			t.Fatalf("tenant update: %v", err)
		}
	}
	update(func(ann, labels map[string]string) {
		ann["team"] = "payments"
		labels["tier"] = "prod"
	}, nil)
	update(func(ann, labels map[string]string) {
		ann[v1alpha1.AnnotationModels] = models
		ann[v1alpha1.AnnotationDuties] = fmt.Sprintf(`{%q:{"backup-scheduled":{"state":"Met"},"tls-enforced":{"state":"Met"}}}`, model)
		ann[v1alpha1.AnnotationUnmet] = ""
		ann[v1alpha1.AnnotationProvider] = "Nobody"
		labels[v1alpha1.LabelStatus] = v1alpha1.StatusMet
	}, also)
}

// unforge removes the operator's keys from an object with a plain update,
// whoever owns them.
func unforge(t *testing.T, obj *unstructured.Unstructured) {
	t.Helper()
	cur := &unstructured.Unstructured{}
	cur.SetGroupVersionKind(obj.GroupVersionKind())
	if err := k8s.Get(context.Background(), client.ObjectKeyFromObject(obj), cur); err != nil {
		return
	}
	ann, labels := cur.GetAnnotations(), cur.GetLabels()
	for _, k := range v1alpha1.OwnedAnnotations {
		delete(ann, k)
	}
	delete(labels, v1alpha1.LabelStatus)
	cur.SetAnnotations(ann)
	cur.SetLabels(labels)
	if err := k8s.Update(context.Background(), cur); err != nil {
		t.Errorf("remove forged keys: %v", err)
	}
}

// waitOwnedMetadata waits until the operator's keys are exactly truth, and
// checks that the tenant's keys added by forge are still there.
func waitOwnedMetadata(t *testing.T, obj *unstructured.Unstructured, truth map[string]string) {
	t.Helper()
	eventually(t, 10*time.Second, func() error {
		got := getObject(t, obj)
		if own := ownedMetadata(got); !equalMaps(own, truth) {
			return fmt.Errorf("operator keys %v, want %v", own, truth)
		}
		if got.GetAnnotations()["team"] != "payments" || got.GetLabels()["tier"] != "prod" {
			return fmt.Errorf("tenant keys changed: %v %v", got.GetAnnotations(), got.GetLabels())
		}
		return nil
	})
}

func equalMaps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// 4 (continued). The same forgery without any other change, as `kubectl
// annotate --overwrite` or `kubectl label` does it: the update alone must
// trigger the correction, or `kubectl get -l responsibility.io/status=unmet`
// and the plugin show the tenant's claim until some unrelated change or a
// restart. Fails if the watch drops updates that change only the
// operator's keys.
func TestForgedAnnotationsAloneAreCorrected(t *testing.T) {
	startManager(t)
	ns := newNamespace(t, map[string]string{"test": "forged-alone"})
	applyModel(t, dbModel("forged-alone-db", "forged-alone"))
	db := createObject(t, cnpg, "Cluster", ns, "orders", nil, tlsSpec())
	// Objects left with keys the operator does not own would be re-applied
	// (a no-op) by every later test's manager: delete them.
	t.Cleanup(func() { deleteObjects(db) })
	waitAnnotation(t, db, v1alpha1.AnnotationUnmet, "forged-alone-db/backup-scheduled", true)
	waitEvents(t, db, v1alpha1.EventCustomerDutyUnmet, 1)
	truth := ownedMetadata(getObject(t, db))

	// While the bug stands, the forged models annotation (now owned by the
	// tenant) would also hold the model's finalizer: take it away at the end.
	t.Cleanup(func() { unforge(t, db) })
	forge(t, db, "forged-alone-db", "forged-alone-db,made-up-model", nil)
	waitOwnedMetadata(t, db, truth)
	waitEvents(t, db, v1alpha1.EventCustomerDutyUnmet, 2)
}

// 4 (continued). Forged keys on an object no model matches are the tenant's
// own annotations: the operator never owned them, so it neither removes
// nor rewrites them (docs/reference.md: each write names only the
// operator's keys, and a tenant's annotations are never touched), and it
// never becomes a field manager of the object. Fails if the operator starts
// stripping every responsibility.io/ key it sees (it would then fight any
// tool that copies them), or writes to objects no model matches.
func TestForgedAnnotationsOnUnmatchedObjectAreLeftAlone(t *testing.T) {
	startManager(t)
	ns := newNamespace(t, map[string]string{"test": "forged-unmatched-other"})
	applyModel(t, dbModel("forged-unmatched-db", "forged-unmatched")) // Clusters are watched, this namespace is not selected
	db := createObject(t, cnpg, "Cluster", ns, "orders", nil, tlsSpec())
	// Objects left with keys the operator does not own would be re-applied
	// (a no-op) by every later test's manager: delete them.
	t.Cleanup(func() { deleteObjects(db) })
	forge(t, db, "made-up-model", "made-up-model", nil)
	forged := getObject(t, db)
	// A spec change makes sure the operator evaluated the object at least once after the forgery.
	cur := getObject(t, db)
	if err := unstructured.SetNestedField(cur.Object, int64(3), "spec", "instances"); err != nil {
		t.Fatal(err)
	}
	if err := k8s.Update(context.Background(), cur); err != nil {
		t.Fatal(err)
	}
	rv := getObject(t, db).GetResourceVersion()
	consistently(t, 3*time.Second, func() error {
		got := getObject(t, db)
		if got.GetResourceVersion() != rv {
			return fmt.Errorf("object written: resourceVersion %s -> %s", rv, got.GetResourceVersion())
		}
		if own, want := ownedMetadata(got), ownedMetadata(forged); !equalMaps(own, want) {
			return fmt.Errorf("forged keys changed to %v, want them left as %v", own, want)
		}
		if writtenByOperator(t, db) {
			return fmt.Errorf("the operator became a field manager of an object no model matches")
		}
		return nil
	})
}

// 4 (continued). A tenant names a model in a forged models annotation on an
// object the model does not match. Deleting the model must not wait for
// that object: the finalizer counts objects whose models annotation names
// the model, and the operator can never remove a key it does not own.
// Fails if the forged annotation holds the model's finalizer (the model
// hangs in Terminating and `make undeploy` with it).
func TestForgedModelsAnnotationDoesNotBlockDeletion(t *testing.T) {
	startManager(t)
	ns := newNamespace(t, map[string]string{"test": "forged-block-other"})
	applyModel(t, dbModel("forged-block-db", "forged-block"))
	db := createObject(t, cnpg, "Cluster", ns, "orders", nil, tlsSpec())
	// Objects left with keys the operator does not own would be re-applied
	// (a no-op) by every later test's manager: delete them.
	t.Cleanup(func() { deleteObjects(db) })
	forge(t, db, "forged-block-db", "forged-block-db", nil)
	// If the model hangs, take the forgery away so that the suite's cleanup can finish.
	t.Cleanup(func() { unforge(t, db) })
	waitModel(t, "forged-block-db", 10*time.Second, isReady)
	deleteModel(t, "forged-block-db")
	if got := getObject(t, db).GetAnnotations()[v1alpha1.AnnotationModels]; got != "forged-block-db" {
		t.Errorf("the tenant's forged annotation was changed to %q", got)
	}
}

// 5. TestWaivers covers a model switching to Forbidden. This covers what it
// does not: a model that forbids waivers from the start, next to a model
// that allows them and has a duty of the same name. The waiver applies to
// the allowing model only; the forbidding model's duty stays Unmet, the
// ignored-waivers annotation lists it, one WaiverIgnored event names the
// model that forbids it; and when the tenant removes the waiver the
// annotation goes, with no further WaiverIgnored event. Fails if a
// Forbidden model honours a waiver, an Allowed model is denied one because
// another model forbids it, or ignored-waivers is not cleaned up.
func TestForbiddenWaiverNextToAllowed(t *testing.T) {
	startManager(t)
	ctx := context.Background()
	ns := newNamespace(t, map[string]string{"test": "forbid"})
	strict := dbModel("forbid-a-strict", "forbid")
	strict.Spec.Waivers = v1alpha1.WaiversForbidden
	applyModel(t, strict)
	applyModel(t, dbModel("forbid-b-lenient", "forbid"))

	db := &unstructured.Unstructured{Object: map[string]any{"apiVersion": cnpg, "kind": "Cluster", "spec": tlsSpec()}}
	db.SetNamespace(ns)
	db.SetName("orders")
	db.SetAnnotations(map[string]string{v1alpha1.AnnotationWaivePrefix + "backup-scheduled": "Velero covers it"})
	if err := k8s.Create(ctx, db); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { deleteObjects(db) })

	waitDutyState(t, db, "forbid-b-lenient", "backup-scheduled", v1alpha1.DutyWaived)
	waitDutyState(t, db, "forbid-a-strict", "backup-scheduled", v1alpha1.DutyUnmet)
	got := getObject(t, db)
	if u := got.GetAnnotations()[v1alpha1.AnnotationUnmet]; u != "forbid-a-strict/backup-scheduled" {
		t.Errorf("unmet = %q, want forbid-a-strict/backup-scheduled", u)
	}
	if ig := got.GetAnnotations()[v1alpha1.AnnotationIgnoredWaivers]; ig != "backup-scheduled" {
		t.Errorf("ignored-waivers = %q, want backup-scheduled", ig)
	}
	if s := got.GetLabels()[v1alpha1.LabelStatus]; s != v1alpha1.StatusUnmet {
		t.Errorf("status label = %q, want unmet", s)
	}
	waitAllEvents(t, []*unstructured.Unstructured{db}, map[string]int{v1alpha1.EventWaiverIgnored: 1, v1alpha1.EventCustomerDutyUnmet: 1})
	ignored := eventsFor(t, db, v1alpha1.EventWaiverIgnored)
	if !strings.Contains(ignored[0].Note, "forbid-a-strict forbids waivers") {
		t.Errorf("WaiverIgnored note %q does not name the model that forbids waivers", ignored[0].Note)
	}
	unmet := eventsFor(t, db, v1alpha1.EventCustomerDutyUnmet)
	if unmet[0].Related == nil || unmet[0].Related.Name != "forbid-a-strict" {
		t.Errorf("CustomerDutyUnmet related = %+v, want the strict model", unmet[0].Related)
	}

	cur := getObject(t, db)
	ann := cur.GetAnnotations()
	delete(ann, v1alpha1.AnnotationWaivePrefix+"backup-scheduled")
	cur.SetAnnotations(ann)
	if err := k8s.Update(ctx, cur); err != nil {
		t.Fatal(err)
	}
	waitAnnotation(t, db, v1alpha1.AnnotationIgnoredWaivers, "", false)
	waitDutyState(t, db, "forbid-b-lenient", "backup-scheduled", v1alpha1.DutyUnmet)
	waitAllEvents(t, []*unstructured.Unstructured{db}, map[string]int{v1alpha1.EventWaiverIgnored: 1, v1alpha1.EventCustomerDutyUnmet: 2})
}

// 6. Objects in excluded namespaces (kube-system, excluded by default, and
// one passed in Options.ExcludedNamespaces) are never written, though a
// model matches them, not on creation, not when they or their related
// objects change, and they are not counted in the model's status. Fails if
// the exclusion is dropped or checked only on some paths.
func TestExcludedNamespacesNeverWritten(t *testing.T) {
	ctx := context.Background()
	excluded := newNamespace(t, map[string]string{"test": "excluded"})
	startManagerWith(t, managerSetup{options: &Options{ExcludedNamespaces: []string{"kube-system", excluded}}})
	included := newNamespace(t, map[string]string{"test": "excluded"})

	rm := dbModel("excluded-db", "excluded")
	rm.Spec.Targets[0].NamespaceSelector = nil // every namespace, kube-system too
	rm.Spec.Targets[0].Selector = &metav1.LabelSelector{MatchLabels: map[string]string{"hostile": "excluded"}}
	applyModel(t, rm)
	labels := map[string]string{"hostile": "excluded"}
	system := createObject(t, cnpg, "Cluster", "kube-system", "excluded-"+excluded, labels, tlsSpec())
	optioned := createObject(t, cnpg, "Cluster", excluded, "orders", labels, tlsSpec())
	control := createObject(t, cnpg, "Cluster", included, "orders", labels, tlsSpec())
	t.Cleanup(func() { deleteObjects(system, optioned, control) })

	waitAnnotation(t, control, v1alpha1.AnnotationModels, "excluded-db", true)
	consistently(t, 2*time.Second, neverWritten(t, system, optioned))

	// Changes to the objects and to their related objects re-enqueue them.
	for _, o := range []*unstructured.Unstructured{system, optioned} {
		cur := getObject(t, o)
		if err := unstructured.SetNestedField(cur.Object, int64(2), "spec", "instances"); err != nil {
			t.Fatal(err)
		}
		l := cur.GetLabels()
		l["touched"] = "yes"
		cur.SetLabels(l)
		if err := k8s.Update(ctx, cur); err != nil {
			t.Fatal(err)
		}
		sb := scheduledBackup(t, o.GetNamespace(), "nightly-"+excluded, o.GetName())
		t.Cleanup(func() { deleteObjects(sb) })
	}
	consistently(t, 3*time.Second, neverWritten(t, system, optioned))
	waitModel(t, "excluded-db", 10*time.Second, func(rm *v1alpha1.ResponsibilityModel) error {
		if err := isReady(rm); err != nil {
			return err
		}
		if rm.Status.MatchedObjects != 1 {
			return fmt.Errorf("matchedObjects = %d, want 1 (the excluded objects do not count)", rm.Status.MatchedObjects)
		}
		return nil
	})
}

// blobSpec is a CNPG Cluster spec with TLS enforced and an opaque field of n
// bytes (kept as-is: the fixture preserves unknown fields).
// blobSpec is a Cluster spec whose description (a string without a length
// limit in the CRD) is n bytes long.
func blobSpec(n int) map[string]any {
	s := tlsSpec()
	s["description"] = strings.Repeat("x", n)
	return s
}

// largestCreatable finds, to within 64 bytes, the largest blob with which a
// Cluster of this namespace and name can be stored (etcd refuses requests
// over 1.5 MiB), creating and deleting probes.
func largestCreatable(t *testing.T, ns, name string) int {
	t.Helper()
	ctx := context.Background()
	fits := func(n int) bool {
		u := &unstructured.Unstructured{Object: map[string]any{"apiVersion": cnpg, "kind": "Cluster", "spec": blobSpec(n)}}
		u.SetNamespace(ns)
		u.SetName(name)
		if err := k8s.Create(ctx, u); err != nil {
			return false
		}
		if err := k8s.Delete(ctx, u); err != nil {
			t.Fatalf("delete probe: %v", err)
		}
		return true
	}
	lo, hi := 1400<<10, 1600<<10 // 1400 KiB fits, 1600 KiB does not
	if !fits(lo) || fits(hi) {
		t.Fatalf("the size limit is not between %d and %d bytes", lo, hi)
	}
	for hi-lo > 64 {
		mid := (lo + hi) / 2
		if fits(mid) {
			lo = mid
		} else {
			hi = mid
		}
	}
	return lo
}

// 3. Objects at the size limits. An object of about 1.4 MiB is annotated
// like any other. Two objects cannot take the operator's annotations: one
// within a few hundred bytes of the request size limit, one whose own
// annotations already use nearly all of the 256 KiB allowed. For those the
// operator reports ApplyFailed with the API server's error, backs off
// (no hot loop: a handful of attempts in the window watched), changes
// nothing on them, and goes on annotating other objects. Fails on a crash,
// a hot retry loop, a silent failure (no event), or a partial write.
func TestObjectsAtTheSizeLimits(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t, map[string]string{"test": "size"})
	limit := largestCreatable(t, ns, "too-big")
	t.Logf("largest blob a Cluster can hold: %d bytes (%.3f MiB)", limit, float64(limit)/(1<<20))

	f := newFaultInjector("clusters", nil) // counts the PATCHes per object
	startManagerWith(t, managerSetup{wrapTransport: f.wrap})
	large := createObject(t, cnpg, "Cluster", ns, "large", nil, blobSpec(1400*1024))
	tooBig := createObject(t, cnpg, "Cluster", ns, "too-big", nil, blobSpec(limit-128))
	crowded := &unstructured.Unstructured{Object: map[string]any{"apiVersion": cnpg, "kind": "Cluster", "spec": tlsSpec()}}
	crowded.SetNamespace(ns)
	crowded.SetName("crowded")
	const tenantKey = "example.com/inventory"
	// The annotations limit counts keys and values: leave 200 bytes, less
	// than the operator's annotations take.
	crowded.SetAnnotations(map[string]string{tenantKey: strings.Repeat("y", 256*1024-len(tenantKey)-200)})
	if err := k8s.Create(ctx, crowded); err != nil {
		t.Fatalf("create crowded: %v", err)
	}
	t.Cleanup(func() { deleteObjects(large, tooBig, crowded) })
	before := map[string]*unstructured.Unstructured{"too-big": getObject(t, tooBig), "crowded": getObject(t, crowded)}

	applyModel(t, dbModel("size-db", "size"))
	waitAnnotation(t, large, v1alpha1.AnnotationUnmet, "size-db/backup-scheduled", true)
	if b, _, _ := unstructured.NestedString(getObject(t, large).Object, "spec", "description"); len(b) != 1400*1024 {
		t.Errorf("the large object's description is %d bytes after the write, want %d", len(b), 1400*1024)
	}

	firstFailure := time.Now()
	for _, o := range []*unstructured.Unstructured{tooBig, crowded} {
		eventually(t, 20*time.Second, func() error {
			evs := eventsFor(t, o, v1alpha1.EventApplyFailed)
			if len(evs) == 0 {
				return fmt.Errorf("no ApplyFailed event on %s", o.GetName())
			}
			t.Logf("%s: %s", o.GetName(), evs[0].Note)
			return nil
		})
	}
	crowdedNote := eventsFor(t, crowded, v1alpha1.EventApplyFailed)[0].Note
	if !strings.Contains(crowdedNote, "annotations") {
		t.Errorf("ApplyFailed note %q does not carry the API server's reason (annotations too long)", crowdedNote)
	}

	// Backoff, not a hot loop: after 2.7 s of failures, at most a few more
	// attempts in the next 3 s (controller-runtime's backoff doubles from
	// 5 ms: attempts at about 2.6 s, 5.1 s, 10.2 s after the first).
	time.Sleep(time.Until(firstFailure.Add(2700 * time.Millisecond)))
	windowStart := map[string]int{}
	for _, o := range []*unstructured.Unstructured{tooBig, crowded} {
		windowStart[o.GetName()], _ = f.counts(ns, o.GetName())
	}
	time.Sleep(3 * time.Second)
	for _, o := range []*unstructured.Unstructured{tooBig, crowded} {
		n, _ := f.counts(ns, o.GetName())
		t.Logf("%s: %d write attempts so far, %d in the 3 s window", o.GetName(), n, n-windowStart[o.GetName()])
		if n-windowStart[o.GetName()] > 3 {
			t.Errorf("%s: %d write attempts in 3 s: a hot retry loop", o.GetName(), n-windowStart[o.GetName()])
		}
		if n == 0 {
			t.Errorf("%s: never attempted", o.GetName())
		}
		got := getObject(t, o)
		if got.GetResourceVersion() != before[o.GetName()].GetResourceVersion() {
			t.Errorf("%s was changed by a failed write", o.GetName())
		}
		if keys := ownedKeys(got); len(keys) > 0 {
			t.Errorf("%s got some of the operator's keys: %v", o.GetName(), keys)
		}
	}

	// The operator goes on: a new object is annotated, the large one is intact.
	later := createObject(t, cnpg, "Cluster", ns, "later", nil, tlsSpec())
	t.Cleanup(func() { deleteObjects(later) })
	waitAnnotation(t, later, v1alpha1.AnnotationModels, "size-db", true)
	if ann := getObject(t, crowded).GetAnnotations()[tenantKey]; len(ann) != 256*1024-len(tenantKey)-200 {
		t.Errorf("the tenant's annotation changed size to %d", len(ann))
	}
}

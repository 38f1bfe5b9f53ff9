package faults

import (
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/responsibility-operator/responsibility-operator/api/v1alpha1"
	"github.com/responsibility-operator/responsibility-operator/internal/devcluster"
	"github.com/responsibility-operator/responsibility-operator/internal/evaluate"
	"github.com/responsibility-operator/responsibility-operator/internal/samples"
)

// killCopies is how many copies of the sample tenants (shop, legacy) the
// kill test creates: each copy is a pair of namespaces with every sample.
const killCopies = 20

// TestKilledMidConvergence creates a few hundred workloads of the catalog's
// kinds (copies of the sample tenants: every duty met in shop-N, none in
// legacy-N) and the catalog, starts the operator with a low API rate limit,
// SIGKILLs it once it has written part of them, and starts it again. The
// second process must converge: every object carries exactly the metadata
// the operator's own evaluation computes from what the API server holds,
// every write it makes changes something, it writes nothing that the first
// process had already written right, and every duty event of the final
// state is stored exactly once, whichever process sent it. Then it is
// stopped (SIGTERM) and a third process starts on the converged cluster: it
// must write nothing and emit nothing.
//
// It fails if the restarted operator does not finish the work (a crash that
// leaves objects half-annotated for good), makes a write that changes
// nothing or that names fewer models than match (an object evaluated before
// every model is registered), emits an event twice (previous state not read
// from the object, or an event that is not idempotent), emits an event for
// something that is not a transition, or loses an event: one the killed
// process wrote the state of but never sent (events are created before the
// write, under a name derived from the transition, so the next process
// creates the missing ones and finds the others stored).
func TestKilledMidConvergence(t *testing.T) {
	r := &killRun{env: startCluster(t, false)}
	r.setUp()
	r.killMidway()
	r.restart()
	r.checkWrites()
	r.checkEvents()
	t.Logf("%d targets (%d met, %d unmet sample copies), %d expected duty events; the killed operator wrote %d objects (%d of them not final); "+
		"the restarted one wrote %d times (%d needed); %d events lost, %d repeated; "+
		"a restart on the converged cluster reconciled %v times (%v of them re-checks) for %d objects of the target kinds, wrote %d times and emitted %d events",
		r.targets, r.met, r.unmet, len(r.want), len(r.writtenByFirst), r.writtenOutdated,
		r.secondWrites, r.needWrite, r.lost, r.dups, r.thirdReconciles, r.thirdRechecks, r.ofTargetKinds, r.thirdWrites, r.newOnRestart)
}

// reconcilesAndRechecks reads an operator's workload reconciles and
// re-checks from one scrape, once two scrapes agree: a re-check may start
// at any time, and one in flight is counted as a re-check before it counts
// as a reconcile.
func (r *killRun) reconcilesAndRechecks(op *devcluster.Operator) (reconciles, rechecks float64) {
	r.t.Helper()
	last := [2]float64{-1, -1}
	for range 50 {
		f, err := op.Metrics(r.t.Context())
		if err != nil {
			r.t.Fatal(err)
		}
		now := [2]float64{f.Sum("controller_runtime_reconcile_total", map[string]string{"controller": "workload"}), f.Sum("responsibility_rechecks_total", nil)}
		if now == last {
			return now[0], now[1]
		}
		last = now
		time.Sleep(100 * time.Millisecond)
	}
	r.t.Fatalf("the operator's reconciles and re-checks kept changing: %v", last)
	return 0, 0
}

// killRun is the state of TestKilledMidConvergence across its phases.
type killRun struct {
	*env
	kinds      []schema.GroupVersionKind
	wantStatus map[string]string
	// targets are the objects some model targets, objects all the objects.
	targets, objects int

	atKill         *world
	writtenByFirst map[string]bool // UID
	hist           *history

	converged       *world
	byUID           map[string]*unstructured.Unstructured
	met, unmet      int
	needWrite       int
	writtenOutdated int
	want            map[dutyEvent]bool
	afterSecond     map[dutyEvent]int
	got             map[dutyEvent]int

	secondApplies, secondErrors, thirdApplies float64
	// thirdReconciles are the workload reconciles of the restart on the
	// converged cluster; ofTargetKinds the objects of the kinds the models
	// target, each of which a restart evaluates once.
	// thirdRechecks are those at an object's re-check time (models whose
	// duties read now are evaluated again every interval).
	thirdReconciles, thirdRechecks float64
	// thirdRequeues are the third operator's reconciles that put an object
	// back unevaluated, by reason (responsibility_requeues_total).
	thirdRequeues             map[string]float64
	ofTargetKinds             int
	secondWrites, thirdWrites int
	lost, dups, newOnRestart  int
}

// setUp creates the copies of the samples and the catalog.
func (r *killRun) setUp() {
	t := r.t
	set, err := samples.Load(root)
	if err != nil {
		t.Fatal(err)
	}
	var objs []*unstructured.Unstructured
	objs, r.wantStatus = replicateSamples(t, set, killCopies)
	start := time.Now()
	r.createAll(objs)
	t.Logf("created %d objects in %d namespaces in %s", len(objs), 2*killCopies+1, time.Since(start).Round(100*time.Millisecond))
	r.kubectl("", "apply", "-k", filepath.Join(root, "config", "catalog"))

	seen := map[schema.GroupVersionKind]bool{}
	for _, o := range objs {
		if gvk := o.GroupVersionKind(); !seen[gvk] && gvk.Kind != "Namespace" {
			seen[gvk] = true
			r.kinds = append(r.kinds, gvk)
		}
	}
	before := r.load()
	targetKinds := map[schema.GroupVersionKind]bool{}
	for _, m := range before.models {
		for _, gvk := range m.TargetKinds() {
			targetKinds[gvk] = true
		}
	}
	for _, o := range before.byUID() {
		r.objects++
		if len(before.expect(o).Models) > 0 {
			r.targets++
		}
		if targetKinds[o.GroupVersionKind()] {
			r.ofTargetKinds++
		}
	}
	if r.targets < 400 {
		t.Fatalf("only %d objects are targets of a model: the test needs a few hundred to kill the operator mid-way", r.targets)
	}
}

func (r *killRun) load() *world {
	r.t.Helper()
	w, err := loadWorld(r.t.Context(), r.c, r.kinds)
	if err != nil {
		r.t.Fatal(err)
	}
	return w
}

// killMidway runs a first operator with a low rate limit, which spreads
// its writes over seconds (about 50 per second), and SIGKILLs it after a
// quarter of them.
func (r *killRun) killMidway() {
	t, ctx := r.t, r.t.Context()
	first := r.startOperator("operator-1", "--kube-api-qps=50", "--kube-api-burst=50")
	var applies float64
	eventually(t, 90*time.Second, "the first operator writes a quarter of the targets", func() (bool, string) {
		v, err := metric(ctx, first, "responsibility_applies_total", applied)
		if err != nil {
			return false, err.Error()
		}
		applies = v
		return v >= float64(r.targets/4), fmt.Sprintf("%v applies of %d targets", v, r.targets)
	})
	if err := first.Kill(); err != nil {
		t.Fatal(err)
	}
	t.Logf("SIGKILLed the first operator after its metrics counted %v applies of %d targets", applies, r.targets)
	// Writes the process sent before it died may still be in the API server.
	time.Sleep(time.Second)

	r.atKill = r.load()
	r.writtenByFirst = map[string]bool{}
	for uid, o := range r.atKill.byUID() {
		if _, ok := o.GetAnnotations()[v1alpha1.AnnotationModels]; ok {
			r.writtenByFirst[uid] = true
		}
	}
	if len(r.writtenByFirst) == 0 || len(r.writtenByFirst) >= r.targets {
		t.Fatalf("the kill came too early or too late: %d of %d targets annotated; lower --kube-api-qps or raise killCopies", len(r.writtenByFirst), r.targets)
	}
	events, err := r.operatorEvents(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("at the kill: %d of %d targets annotated, %d duty events stored", len(r.writtenByFirst), r.targets, len(events))
}

// restart starts a second operator, which must converge, then stops it and
// starts a third one on the converged cluster, recording every write.
func (r *killRun) restart() {
	t, ctx := r.t, r.t.Context()
	r.hist = r.watchHistory(ctx, r.kinds)
	eventually(t, 30*time.Second, "the watches list every object", func() (bool, string) {
		return r.hist.seen() == r.objects, fmt.Sprintf("%d of %d objects", r.hist.seen(), r.objects)
	})
	r.hist.phase.Store(2)
	second := r.startOperator("operator-2")
	r.waitReady(second)
	took := eventually(t, 2*time.Minute, "the restarted operator converges", func() (bool, string) {
		w, err := loadWorld(ctx, r.c, r.kinds)
		if err != nil {
			return false, err.Error()
		}
		var pending []string
		for _, o := range w.byUID() {
			if d := mismatch(o, w.expect(o)); d != "" {
				pending = append(pending, objectKey(o)+": "+d)
			}
		}
		r.converged = w
		return len(pending) == 0, fmt.Sprintf("%d objects differ:\n  %s", len(pending), sortedSample(pending, 5))
	})
	t.Logf("the restarted operator converged in %s", took.Round(100*time.Millisecond))
	r.byUID = r.converged.byUID()
	r.checkSamples()
	r.expectEvents()

	// Wait for the events of the objects the second process wrote.
	eventually(t, time.Minute, "the restarted operator emits its events", func() (bool, string) {
		got, err := r.operatorEvents(ctx)
		if err != nil {
			return false, err.Error()
		}
		missing := 0
		for k := range r.want {
			if got[k] == 0 {
				missing++
			}
		}
		return missing == 0, fmt.Sprintf("%d of %d duty events are missing", missing, len(r.want))
	})
	time.Sleep(2 * time.Second) // a late write or duplicate would show up here
	r.secondApplies = mustMetric(t, second, "responsibility_applies_total", applied)
	r.secondErrors = mustMetric(t, second, "responsibility_applies_total", map[string]string{"result": "error"})
	if err := second.Stop(); err != nil {
		t.Errorf("stop the second operator: %v", err)
	}
	var err error
	if r.afterSecond, err = r.operatorEvents(ctx); err != nil {
		t.Fatal(err)
	}

	// A restart on a converged cluster writes and emits nothing.
	r.hist.phase.Store(3)
	third := r.startOperator("operator-3")
	r.waitReady(third)
	r.waitIdle(third, r.targets)
	r.thirdApplies = mustMetric(t, third, "responsibility_applies_total", applied)
	r.thirdReconciles, r.thirdRechecks = r.reconcilesAndRechecks(third)
	if f, err := third.Metrics(ctx); err == nil {
		r.thirdRequeues = f.SumBy("responsibility_requeues_total", nil, "reason")
	}
	if err := third.Stop(); err != nil {
		t.Errorf("stop the third operator: %v", err)
	}
	if r.got, err = r.operatorEvents(ctx); err != nil {
		t.Fatal(err)
	}
	r.hist.check(t)
}

// checkSamples applies the oracle of the samples: a copy of a *-good.yaml
// sample meets every duty, a copy of a *-bad.yaml one none.
func (r *killRun) checkSamples() {
	for _, o := range r.byUID {
		want, ok := r.wantStatus[sampleKey(o)]
		if !ok {
			continue
		}
		if got := o.GetLabels()[v1alpha1.LabelStatus]; got != want {
			r.t.Errorf("%s: status %q, want %q (as its sample promises)", objectKey(o), got, want)
		}
		if want == v1alpha1.StatusMet {
			r.met++
		} else {
			r.unmet++
		}
	}
	if r.met == 0 || r.unmet == 0 {
		r.t.Fatalf("%d met and %d unmet workloads: the test needs both", r.met, r.unmet)
	}
}

// expectEvents computes what the second process had to write (what the
// first left undone or not final) and the expected events: one
// CustomerDutyUnmet per unmet duty of every object (each was first found
// unmet), one per namespace for a namespace-wide duty, and nothing else.
func (r *killRun) expectEvents() {
	for uid, o := range r.atKill.byUID() {
		if now, ok := r.byUID[uid]; ok && mismatch(o, r.converged.expect(now)) != "" {
			r.needWrite++
			if r.writtenByFirst[uid] {
				r.writtenOutdated++
			}
		}
	}
	r.want = map[dutyEvent]bool{}
	for uid, o := range r.byUID {
		for _, d := range r.converged.expect(o).Duties {
			if d.State != v1alpha1.DutyUnmet {
				continue
			}
			// A namespace-wide duty's event regards the Namespace, once.
			regarding := uid
			if d.NamespaceWide {
				regarding = r.converged.namespaceUID(o.GetNamespace())
			}
			r.want[dutyEvent{UID: regarding, Reason: v1alpha1.EventCustomerDutyUnmet, Model: d.Model, Duty: d.Duty.Name}] = true
		}
	}
}

// checkWrites: every write changes something (the applies the metrics
// count are the changes the watches saw), the restarted operator writes
// exactly the objects the killed one left undone or not final, each write
// names every model that matches, and a restart on the converged cluster
// writes nothing.
func (r *killRun) checkWrites() {
	t := r.t
	finalModels := map[string]string{}
	for uid, o := range r.byUID {
		finalModels[uid] = o.GetAnnotations()[v1alpha1.AnnotationModels]
	}
	r.secondWrites, r.thirdWrites = r.hist.writes(2), r.hist.writes(3)
	if int(r.secondApplies) != r.secondWrites {
		t.Errorf("the second operator counted %v applies but changed objects %d times: it makes writes that change nothing", r.secondApplies, r.secondWrites)
	}
	if int(r.thirdApplies) != r.thirdWrites {
		t.Errorf("the third operator counted %v applies but changed objects %d times: it makes writes that change nothing", r.thirdApplies, r.thirdWrites)
	}
	if r.secondErrors != 0 {
		t.Errorf("the restarted operator had %v failed writes", r.secondErrors)
	}
	for phase, name := range map[int32]string{2: "the restarted operator", 3: "a restart on the converged cluster"} {
		if n, dropped := r.hist.partial(phase, finalModels); n > 0 {
			var objs []string
			for uid, models := range dropped {
				objs = append(objs, fmt.Sprintf("%s lost %v", describeUID(r.byUID, uid), models))
			}
			t.Errorf("%s made %d writes naming fewer models than match (an object evaluated before every model was registered):\n  %s", name, n, sortedSample(objs, 10))
		}
	}
	if r.secondWrites != r.needWrite {
		t.Errorf("the restarted operator wrote %d times; %d objects needed a write (the killed one left them unwritten or not final)", r.secondWrites, r.needWrite)
	}
	if r.thirdWrites != 0 {
		t.Errorf("a restart on the converged cluster wrote %d times", r.thirdWrites)
	}
	if int(r.thirdReconciles-r.thirdRechecks) != r.ofTargetKinds {
		t.Errorf("a restart on the converged cluster reconciled %v times (%v of them re-checks) for %d objects of the target kinds: each must be evaluated once, none put back to wait for a model or a list (put back unevaluated, by reason: %v)",
			r.thirdReconciles, r.thirdRechecks, r.ofTargetKinds, r.thirdRequeues)
	}
}

// checkEvents: every duty event of the final state stored exactly once,
// none that is not a transition of it, and none emitted by a restart on
// the converged cluster.
func (r *killRun) checkEvents() {
	t := r.t
	atKill := r.atKill.byUID()
	var dups, spurious, lost []string
	for k, n := range r.got {
		if n > 1 {
			r.dups += n - 1
			recorded := "unwritten at the kill"
			if o, ok := atKill[k.UID]; ok && r.writtenByFirst[k.UID] {
				recorded = fmt.Sprintf("recorded %q at the kill", evaluate.ParseDuties(o.GetAnnotations()[v1alpha1.AnnotationDuties])[k.Model][k.Duty].State)
			}
			dups = append(dups, fmt.Sprintf("%s %s/%s on %s (%s): %d times", k.Reason, k.Model, k.Duty, describeUID(r.byUID, k.UID), recorded, n))
		}
		if !r.want[k] {
			spurious = append(spurious, fmt.Sprintf("%s %s/%s on %s", k.Reason, k.Model, k.Duty, describeUID(r.byUID, k.UID)))
		}
		r.newOnRestart += n - r.afterSecond[k]
	}
	for k := range r.want {
		if r.got[k] == 0 {
			r.lost++
			who := "not written by the killed operator"
			if r.writtenByFirst[k.UID] {
				who = "written by the killed operator"
			}
			lost = append(lost, fmt.Sprintf("%s/%s on %s (%s)", k.Model, k.Duty, describeUID(r.byUID, k.UID), who))
		}
	}
	if len(dups) > 0 {
		t.Errorf("%d duty events were emitted more than once:\n  %s", len(dups), sortedSample(dups, 10))
	}
	if len(spurious) > 0 {
		t.Errorf("%d duty events are not transitions of the final state:\n  %s", len(spurious), sortedSample(spurious, 10))
	}
	if len(lost) > 0 {
		t.Errorf("%d duty events are missing:\n  %s", len(lost), sortedSample(lost, 10))
	}
	if r.newOnRestart != 0 {
		t.Errorf("a restart on the converged cluster emitted %d duty events", r.newOnRestart)
	}
}

// copyVelero copies a Velero Schedule, Backup or Restore of the samples for
// one tenant copy: renamed, and naming the copy's namespaces, Backup and
// Schedule instead of the sample's.
func copyVelero(o *unstructured.Unstructured, rename func(string) string, tenant func(string) bool) (*unstructured.Unstructured, error) {
	c := o.DeepCopy()
	c.SetName(rename(o.GetName()))
	switch o.GetKind() {
	case "Schedule", "Backup":
		// A Schedule's Backups are its spec.template.
		path := []string{"spec", "includedNamespaces"}
		if o.GetKind() == "Schedule" {
			path = []string{"spec", "template", "includedNamespaces"}
		}
		included, _, _ := unstructured.NestedStringSlice(c.Object, path...)
		for j, ns := range included {
			if tenant(ns) {
				included[j] = rename(ns)
			}
		}
		return c, unstructured.SetNestedStringSlice(c.Object, included, path...)
	case "Restore":
		// A Restore names its Backup and Schedule, and maps the tenant's
		// namespace to a scratch one.
		for _, field := range []string{"backupName", "scheduleName"} {
			if v, ok, _ := unstructured.NestedString(c.Object, "spec", field); ok {
				if err := unstructured.SetNestedField(c.Object, rename(v), "spec", field); err != nil {
					return nil, err
				}
			}
		}
		mapping, ok, _ := unstructured.NestedStringMap(c.Object, "spec", "namespaceMapping")
		if !ok {
			return c, nil
		}
		renamed := map[string]string{}
		for from, to := range mapping {
			if tenant(from) {
				from, to = rename(from), rename(to)
			}
			renamed[from] = to
		}
		return c, unstructured.SetNestedStringMap(c.Object, renamed, "spec", "namespaceMapping")
	}
	return nil, fmt.Errorf("%s %s in namespace velero: the kill test does not know how to copy it", o.GetKind(), o.GetName())
}

// byUID indexes every object of a world by UID.
func (w *world) byUID() map[string]*unstructured.Unstructured {
	out := map[string]*unstructured.Unstructured{}
	for _, list := range w.objects {
		for _, o := range list {
			out[string(o.GetUID())] = o
		}
	}
	return out
}

// waitIdle waits until an operator has evaluated at least n objects, its
// workload queue is empty and it has finished every reconcile for three
// seconds in a row, re-checks aside (models whose duties read now evaluate
// their objects again every interval: the reconciles never stop).
func (e *env) waitIdle(op *devcluster.Operator, n int) {
	e.t.Helper()
	var last float64
	quiet := 0
	eventually(e.t, time.Minute, "the operator settles", func() (bool, string) {
		fams, err := op.Metrics(e.t.Context())
		if err != nil {
			return false, err.Error()
		}
		reconciles := fams.Sum("controller_runtime_reconcile_total", map[string]string{"controller": "workload"}) -
			fams.Sum("responsibility_rechecks_total", nil)
		depth := fams.Sum("workqueue_depth", map[string]string{"name": "workload"}) +
			fams.Sum("workqueue_depth", map[string]string{"name": "responsibilitymodel"})
		active := fams.Sum("controller_runtime_active_workers", nil)
		if reconciles >= float64(n) && depth == 0 && reconciles == last {
			quiet++
		} else {
			quiet = 0
		}
		last = reconciles
		time.Sleep(400 * time.Millisecond)
		return quiet >= 6, fmt.Sprintf("%v workload reconciles but re-checks, queue depth %v, %v active workers", reconciles, depth, active)
	})
}

// replicateSamples copies every namespaced sample object into killCopies
// pairs of tenant namespaces (shop-N labelled like shop, legacy-N like
// legacy), and the Velero Schedule, Backup and Restore of shop into one each per shop-N,
// so that each copy keeps its sample's promise. It returns the objects,
// namespaces first, and the status label each copied workload must reach.
func replicateSamples(t *testing.T, set *samples.Set, copies int) ([]*unstructured.Unstructured, map[string]string) {
	t.Helper()
	wantStatus := map[string]string{}
	workloads := map[string]string{}
	for _, w := range set.Workloads() {
		workloads[sampleKey(w.Unstructured)] = w.Status()
	}
	var namespaces, objects []*unstructured.Unstructured
	tenant := func(ns string) bool { return ns == "shop" || ns == "legacy" }
	for _, o := range set.Objects {
		if o.GetKind() == "Namespace" && !tenant(o.GetName()) {
			namespaces = append(namespaces, o.DeepCopy())
		}
	}
	for i := range copies {
		rename := func(ns string) string { return fmt.Sprintf("%s-%d", ns, i) }
		for _, o := range set.Objects {
			switch {
			case o.GetKind() == "Namespace":
				if tenant(o.GetName()) {
					c := o.DeepCopy()
					c.SetName(rename(o.GetName()))
					namespaces = append(namespaces, c)
				}
			case tenant(o.GetNamespace()):
				c := o.DeepCopy()
				c.SetNamespace(rename(o.GetNamespace()))
				objects = append(objects, c)
				if status, ok := workloads[sampleKey(o.Unstructured)]; ok {
					wantStatus[sampleKey(c)] = status
				}
			case o.GetNamespace() == "velero":
				c, err := copyVelero(o.Unstructured, rename, tenant)
				if err != nil {
					t.Fatalf("%s: %v", o.File, err)
				}
				objects = append(objects, c)
			default:
				t.Fatalf("%s: %s in namespace %q: the kill test does not know how to copy it", o.File, o.GetKind(), o.GetNamespace())
			}
		}
	}
	return append(namespaces, objects...), wantStatus
}

// sampleKey identifies a sample or a copy by kind, namespace and name.
func sampleKey(o *unstructured.Unstructured) string {
	return o.GroupVersionKind().GroupKind().String() + " " + o.GetNamespace() + "/" + o.GetName()
}

func describeUID(objs map[string]*unstructured.Unstructured, uid string) string {
	if o, ok := objs[uid]; ok {
		return objectKey(o)
	}
	return "object " + uid
}

// createAll creates objects in order of kind: namespaces first, then the
// rest on a few connections at once.
func (e *env) createAll(objs []*unstructured.Unstructured) {
	e.t.Helper()
	ctx := e.t.Context()
	var rest []*unstructured.Unstructured
	for _, o := range objs {
		if o.GetKind() == "Namespace" {
			if err := e.c.Create(ctx, o); err != nil {
				e.t.Fatalf("create namespace %s: %v", o.GetName(), err)
			}
			continue
		}
		rest = append(rest, o)
	}
	work := make(chan *unstructured.Unstructured)
	var mu sync.Mutex
	var errs []string
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for o := range work {
				if err := devcluster.Create(ctx, e.c, o); err != nil {
					mu.Lock()
					errs = append(errs, fmt.Sprintf("%s: %v", objectKey(o), err))
					mu.Unlock()
				}
			}
		})
	}
	for _, o := range rest {
		work <- o
	}
	close(work)
	wg.Wait()
	if len(errs) > 0 {
		e.t.Fatalf("create %d objects:\n  %s", len(errs), strings.Join(errs, "\n  "))
	}
}

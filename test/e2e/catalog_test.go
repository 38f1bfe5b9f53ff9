package e2e

import (
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/responsibility-operator/responsibility-operator/api/v1alpha1"
	"github.com/responsibility-operator/responsibility-operator/internal/controller"
	"github.com/responsibility-operator/responsibility-operator/internal/devcluster"
	"github.com/responsibility-operator/responsibility-operator/internal/samples"
)

// TestCatalogEndToEnd applies the whole catalog and every sample with
// kubectl apply -k to a real API server, runs the operator, and checks the
// state of every duty of every model on every sample: Met on the good
// variant (tenant shop), Unmet on the bad one (tenant legacy).
func TestCatalogEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a control plane")
	}
	root, env, cfg := startControlPlane(t)
	set, err := samples.Load(root)
	if err != nil {
		t.Fatal(err)
	}
	workloads := set.Workloads()
	kubeconfig := writeKubeconfig(t, env, cfg)

	// The manager as deployed, with the default event grace period: the
	// samples are applied with kubectl apply -k, whose order puts many
	// workloads before the objects that meet their duties.
	c := runManager(t, cfg, controller.Options{ExcludedNamespaces: []string{"kube-system"}, EventGracePeriod: controller.DefaultEventGracePeriod})
	ctx := t.Context()

	kubectl := func(args ...string) {
		t.Helper()
		cmd := exec.CommandContext(ctx, filepath.Join(env.BinaryAssetsDirectory, "kubectl"), args...)
		cmd.Env = append(os.Environ(), "KUBECONFIG="+kubeconfig)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	kubectl("apply", "-k", filepath.Join(root, "config", "catalog"))
	kubectl("apply", "-k", filepath.Join(root, "config", "samples", "workloads"))
	if err := devcluster.WriteStatus(ctx, c, set.Unstructured()); err != nil {
		t.Fatal(err)
	}

	deadline := time.Now().Add(2 * time.Minute)
	for _, w := range workloads {
		want := w.ExpectedDuties()
		for {
			got, err := samples.DutyStates(ctx, c, w)
			if err == nil && slices.Equal(got, want) {
				break
			}
			if time.Now().After(deadline) {
				t.Errorf("%s (%s %s/%s): duties\n  got  %v (%v)\n  want %v", w.File, w.GetKind(), w.GetNamespace(), w.GetName(), got, err, want)
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	t.Logf("%d sample workloads, every duty of every model checked", len(workloads))
	waitFindingsOnce(t, c, set.Unstructured())
}

// TestNoTransientWarnings applies every sample in the order that raises
// the most transient warnings: the Namespaces, then every workload, then
// every other object (the ScheduledBackups, snapshots, Schedules and
// Backups that meet their duties), each list in a shuffled order, one
// object at a time as a slow kubectl apply would. With the operator's
// default event grace period, no workload gets a Warning (or a "met again")
// for a duty met once everything is applied, and every finding left gets
// exactly one event. Fails if a transient warning is sent, or if the order
// did not make any good workload unmet for a moment (the test would then
// prove nothing).
func TestNoTransientWarnings(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a control plane")
	}
	root, env, cfg := startControlPlane(t)
	set, err := samples.Load(root)
	if err != nil {
		t.Fatal(err)
	}
	c := runManager(t, cfg, controller.Options{ExcludedNamespaces: []string{"kube-system"}, EventGracePeriod: controller.DefaultEventGracePeriod})
	ctx := t.Context()
	cmd := exec.CommandContext(ctx, filepath.Join(env.BinaryAssetsDirectory, "kubectl"), "apply", "-k", filepath.Join(root, "config", "catalog"))
	cmd.Env = append(os.Environ(), "KUBECONFIG="+writeKubeconfig(t, env, cfg))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("kubectl apply -k config/catalog: %v\n%s", err, out)
	}
	isWorkload := map[*unstructured.Unstructured]bool{}
	for _, w := range set.Workloads() {
		isWorkload[w.Unstructured] = true
	}
	var namespaces, workloads, others []*unstructured.Unstructured
	for _, o := range set.Unstructured() {
		switch {
		case o.GetKind() == "Namespace":
			namespaces = append(namespaces, o)
		case isWorkload[o]:
			workloads = append(workloads, o)
		default:
			others = append(others, o)
		}
	}
	seed := time.Now().UnixNano()
	t.Logf("shuffle seed %d", seed)
	rng := rand.New(rand.NewPCG(uint64(seed), 0))
	for _, list := range [][]*unstructured.Unstructured{workloads, others} {
		rng.Shuffle(len(list), func(i, j int) { list[i], list[j] = list[j], list[i] })
	}
	start := time.Now()
	create := func(objs ...*unstructured.Unstructured) {
		for _, o := range objs {
			if err := c.Create(ctx, o.DeepCopy()); err != nil {
				t.Fatalf("create %s %s/%s: %v", o.GetKind(), o.GetNamespace(), o.GetName(), err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	create(slices.Concat(namespaces, workloads)...)

	// Every workload of shop is good: each one the operator finds unmet
	// before its related objects arrive is one that would have had a
	// transient Warning, and is held instead.
	var held []string
	deadline := time.Now().Add(10 * time.Second)
	for _, o := range workloads {
		if o.GetNamespace() != "shop" {
			continue
		}
		for {
			got := &unstructured.Unstructured{}
			got.SetGroupVersionKind(o.GroupVersionKind())
			if err := c.Get(ctx, client.ObjectKeyFromObject(o), got); err != nil {
				t.Fatal(err)
			}
			if _, ok := got.GetAnnotations()[v1alpha1.AnnotationDuties]; ok || time.Now().After(deadline) {
				if _, ok := got.GetAnnotations()[v1alpha1.AnnotationEventsHeldUntil]; ok {
					held = append(held, o.GetKind()+"/"+o.GetName())
				}
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	if len(held) == 0 {
		t.Fatalf("no workload of shop is held before its related objects are applied: the order made no transient finding, so this test proves nothing")
	}
	create(others...)
	if err := devcluster.WriteStatus(ctx, c, set.Unstructured()); err != nil {
		t.Fatal(err)
	}
	t.Logf("applied %d workloads, then %d other objects, in %s; %d good workloads were unmet for a moment, their events held: %v",
		len(workloads), len(others), time.Since(start).Round(time.Millisecond), len(held), held)
	waitFindingsOnce(t, c, set.Unstructured())
}

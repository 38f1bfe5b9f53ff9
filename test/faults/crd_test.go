package faults

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/responsibility-operator/responsibility-operator/api/v1alpha1"
	"github.com/responsibility-operator/responsibility-operator/internal/samples"
)

var vmGVK = schema.GroupVersionKind{Group: "kubevirt.io", Version: "v1", Kind: "VirtualMachine"}

const vmYAML = `
apiVersion: kubevirt.io/v1
kind: VirtualMachine
metadata:
  name: %s
  namespace: %s
  labels: {tier: %s}
spec:
  runStrategy: Always
  template:
    spec:
      domain:
        devices: {}
`

// TestWatchedCRDRecreated deletes the CRD of a kind a model targets while
// the operator watches it, then installs it again. The model must report
// TargetsResolved=False (TargetNotInstalled) while the kind is gone and True
// once it is back, and objects created after the CRD returns must be
// annotated by the same process.
//
// It fails if the operator exits or wedges when a watched kind disappears
// (an informer that never relists, a kind dropped from the watches for
// good, a cached mapping that keeps the deleted kind "served" or the stale
// "no match"), or if the model's status does not follow the CRD within
// seconds.
func TestWatchedCRDRecreated(t *testing.T) {
	e := startCluster(t, false)
	ctx := t.Context()
	const ns, model = "crd", "crd-tier"
	e.namespace(ns, map[string]string{"faults": "crd"})
	e.tierModel(model, vmGVK, "crd")
	e.create(fmt.Sprintf(vmYAML, "before", ns, "gold"), fmt.Sprintf(vmYAML, "plain", ns, "none"))

	op := e.startOperator("operator")
	e.waitReady(op)
	e.waitTiers(t, "the operator annotates the VirtualMachines", vmGVK, ns, "before", "plain")
	e.waitResolved(model, metav1.ConditionTrue, v1alpha1.ReasonResolved)

	crd := &apiextensionsv1.CustomResourceDefinition{}
	if err := e.c.Get(ctx, client.ObjectKey{Name: "virtualmachines.kubevirt.io"}, crd); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := e.c.Delete(ctx, crd); err != nil {
		t.Fatal(err)
	}
	eventually(t, time.Minute, "the CRD is gone", func() (bool, string) {
		err := e.c.Get(ctx, client.ObjectKey{Name: crd.Name}, &apiextensionsv1.CustomResourceDefinition{})
		return apierrors.IsNotFound(err), fmt.Sprintf("get: %v", err)
	})
	// The operator re-resolves the models of the CRD's group on its event,
	// through discovery, and again every second while discovery settles.
	if _, why := e.pollResolved(model, metav1.ConditionFalse, v1alpha1.ReasonTargetNotInstalled, 10*time.Second); why != "" {
		t.Errorf("10s after the CRD was deleted the model still says %s", why)
	} else {
		t.Logf("CRD deleted: TargetsResolved=False %s after the delete", time.Since(start).Round(100*time.Millisecond))
	}
	if rm, err := e.model(ctx, model); err != nil {
		t.Fatal(err)
	} else if ready := meta.FindStatusCondition(rm.Status.Conditions, v1alpha1.ConditionReady); ready == nil || ready.Status != metav1.ConditionFalse {
		t.Errorf("with its target's CRD deleted the model's Ready condition is %+v, want False", ready)
	}

	// Install it again from the same fixture.
	docs, err := samples.ReadFile(filepath.Join(root, "test", "crds", "kubevirt.io_virtualmachines.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	again := &apiextensionsv1.CustomResourceDefinition{}
	raw, err := yaml.Marshal(docs[0].Object)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(raw, again); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	if err := e.c.Create(ctx, again); err != nil {
		t.Fatal(err)
	}
	eventually(t, time.Minute, "the CRD is established again", func() (bool, string) {
		got := &apiextensionsv1.CustomResourceDefinition{}
		if err := e.c.Get(ctx, client.ObjectKey{Name: crd.Name}, got); err != nil {
			return false, err.Error()
		}
		for _, c := range got.Status.Conditions {
			if c.Type == apiextensionsv1.Established && c.Status == apiextensionsv1.ConditionTrue {
				return true, ""
			}
		}
		return false, "not Established"
	})
	// Objects can be created as soon as the API server serves the kind.
	eventually(t, time.Minute, "the kind is served again", func() (bool, string) {
		err := e.c.Create(ctx, mustObject(t, fmt.Sprintf(vmYAML, "after", ns, "none")))
		return err == nil, fmt.Sprint(err)
	})
	e.create(fmt.Sprintf(vmYAML, "before", ns, "gold")) // same name, new object
	e.waitResolved(model, metav1.ConditionTrue, v1alpha1.ReasonResolved)
	t.Logf("CRD recreated: TargetsResolved=True %s after the create", time.Since(start).Round(100*time.Millisecond))
	e.waitTiers(t, "objects created after the CRD came back are annotated", vmGVK, ns, "after", "before")
	t.Logf("objects of the recreated CRD annotated %s after its create", time.Since(start).Round(100*time.Millisecond))
	if exited, err := op.Exited(); exited {
		t.Fatalf("the operator exited: %v", err)
	}
}

// waitResolved waits for a model's TargetsResolved condition and returns
// how long that took.
func (e *env) waitResolved(model string, status metav1.ConditionStatus, reason string) time.Duration {
	e.t.Helper()
	took, why := e.pollResolved(model, status, reason, time.Minute)
	if why != "" {
		e.t.Fatalf("model %s does not report TargetsResolved=%s (%s) after a minute: %s", model, status, reason, why)
	}
	return took
}

// pollResolved polls a model's TargetsResolved condition until it has a
// status and reason; it returns how long that took, or what the condition
// said at the timeout.
func (e *env) pollResolved(model string, status metav1.ConditionStatus, reason string, timeout time.Duration) (time.Duration, string) {
	start := time.Now()
	for {
		why := ""
		rm, err := e.model(e.t.Context(), model)
		if err != nil {
			why = err.Error()
		} else if c := meta.FindStatusCondition(rm.Status.Conditions, v1alpha1.ConditionTargetsResolved); c == nil {
			why = "no TargetsResolved condition"
		} else if c.Status != status || c.Reason != reason {
			why = fmt.Sprintf("TargetsResolved=%s (%s): %s", c.Status, c.Reason, c.Message)
		}
		if why == "" {
			return time.Since(start), ""
		}
		if time.Since(start) > timeout {
			return 0, why
		}
		time.Sleep(200 * time.Millisecond)
	}
}

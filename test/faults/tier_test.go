package faults

import (
	"context"
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/responsibility-operator/responsibility-operator/api/v1alpha1"
)

// The tier model is a small model for the tests that need a few objects of
// one kind: its single duty is met when the object has the label
// tier=gold. It targets one kind in the namespaces labelled faults=<scope>.
const tierModelYAML = `
apiVersion: responsibility.io/v1alpha1
kind: ResponsibilityModel
metadata:
  name: %[1]s
spec:
  service: Tiered objects
  provider: Fault tests
  targets:
  - apiVersion: %[2]s
    kind: %[3]s
    namespaceSelector:
      matchLabels:
        faults: %[4]s
  areas:
  - name: Tiering
    provider: Storage tiers
    customer: Choosing the gold tier
    duties:
    - name: tier-gold
      rule: object.metadata.?labels.?tier.orValue("") == "gold"
      message: Label the object tier=gold
`

const tierDuty = "tier-gold"

// tierModel creates a tier model for a kind in namespaces labelled
// faults=scope.
func (e *env) tierModel(name string, gvk schema.GroupVersionKind, scope string) {
	e.t.Helper()
	e.create(fmt.Sprintf(tierModelYAML, name, gvk.GroupVersion().String(), gvk.Kind, scope))
}

var configMapGVK = schema.GroupVersionKind{Version: "v1", Kind: "ConfigMap"}

// configMap creates a ConfigMap with a tier label (none when tier is "").
func (e *env) configMap(ns, name, tier string) {
	e.t.Helper()
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Data: map[string]string{"k": "v"}}
	if tier != "" {
		cm.Labels = map[string]string{"tier": tier}
	}
	if err := e.c.Create(e.t.Context(), cm); err != nil {
		e.t.Fatalf("create ConfigMap %s/%s: %v", ns, name, err)
	}
}

// setTier sets an object's tier label with an update (PUT), so that the
// only PATCH and apply requests on the kind are the operator's.
func (e *env) setTier(gvk schema.GroupVersionKind, ns, name, tier string) {
	e.t.Helper()
	for {
		u := &unstructured.Unstructured{}
		u.SetGroupVersionKind(gvk)
		if err := e.c.Get(e.t.Context(), client.ObjectKey{Namespace: ns, Name: name}, u); err != nil {
			e.t.Fatalf("get %s %s/%s: %v", gvk.Kind, ns, name, err)
		}
		labels := u.GetLabels()
		if labels == nil {
			labels = map[string]string{}
		}
		labels["tier"] = tier
		u.SetLabels(labels)
		err := e.c.Update(e.t.Context(), u)
		if apierrors.IsConflict(err) {
			continue // the operator wrote meanwhile
		}
		if err != nil {
			e.t.Fatalf("update %s %s/%s: %v", gvk.Kind, ns, name, err)
		}
		return
	}
}

// tierStatus reads an object's status label and whether the tier duty is
// recorded in its duties annotation with the state the tier label implies.
func (e *env) tierStatus(ctx context.Context, gvk schema.GroupVersionKind, ns, name string) (status string, consistent bool, err error) {
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(gvk)
	if err := e.c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, u); err != nil {
		return "", false, err
	}
	status = u.GetLabels()[v1alpha1.LabelStatus]
	want := v1alpha1.StatusUnmet
	if u.GetLabels()["tier"] == "gold" {
		want = v1alpha1.StatusMet
	}
	return status, status == want, nil
}

// waitTiers waits until every named object carries the status its tier
// label implies.
func (e *env) waitTiers(t *testing.T, what string, gvk schema.GroupVersionKind, ns string, names ...string) {
	t.Helper()
	took := eventually(t, 60*time.Second, what, func() (bool, string) {
		for _, n := range names {
			status, ok, err := e.tierStatus(t.Context(), gvk, ns, n)
			if err != nil {
				return false, err.Error()
			}
			if !ok {
				return false, fmt.Sprintf("%s %s/%s has status %q", gvk.Kind, ns, n, status)
			}
		}
		return true, ""
	})
	t.Logf("%s: %s", what, took.Round(100*time.Millisecond))
}

// uid returns an object's UID.
func (e *env) uid(gvk schema.GroupVersionKind, ns, name string) string {
	e.t.Helper()
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(gvk)
	if err := e.c.Get(e.t.Context(), client.ObjectKey{Namespace: ns, Name: name}, u); err != nil {
		e.t.Fatalf("get %s %s/%s: %v", gvk.Kind, ns, name, err)
	}
	return string(u.GetUID())
}

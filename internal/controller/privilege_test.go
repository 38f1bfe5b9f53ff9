package controller

// Least privilege: the operator runs under the ClusterRole that
// controller-gen generates into config/rbac/role.yaml, that role grants what
// the catalog's models need and no more, and a missing verb is reported on
// the model that needs it rather than failing somewhere else.

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/yaml"

	"github.com/responsibility-operator/responsibility-operator/api/v1alpha1"
	"github.com/responsibility-operator/responsibility-operator/internal/samples"
)

var repoRoot = filepath.Join("..", "..")

// managerRole reads the generated ClusterRole, and returns it with the name
// it has once deployed (config/default adds a name prefix).
func managerRole(t *testing.T) *rbacv1.ClusterRole {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(repoRoot, "config", "rbac", "role.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	role := &rbacv1.ClusterRole{}
	if err := yaml.UnmarshalStrict(raw, role); err != nil {
		t.Fatalf("config/rbac/role.yaml: %v", err)
	}
	raw, err = os.ReadFile(filepath.Join(repoRoot, "config", "default", "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var kustomization struct {
		NamePrefix string `json:"namePrefix"`
	}
	if err := yaml.Unmarshal(raw, &kustomization); err != nil {
		t.Fatalf("config/default/kustomization.yaml: %v", err)
	}
	role.Name = kustomization.NamePrefix + role.Name
	return role
}

// allows reports whether RBAC rules grant a verb on every object of a
// resource (rules restricted to resource names do not).
func allows(rules []rbacv1.PolicyRule, group, resource, verb string) bool {
	has := func(list []string, v string) bool {
		return slices.Contains(list, v) || slices.Contains(list, rbacv1.ResourceAll)
	}
	for _, r := range rules {
		if len(r.ResourceNames) == 0 && has(r.APIGroups, group) && has(r.Resources, resource) && has(r.Verbs, verb) {
			return true
		}
	}
	return false
}

// withoutVerb returns rules that grant the same as rules except verb on
// group/resource, splitting rules that name other groups or resources too.
func withoutVerb(rules []rbacv1.PolicyRule, group, resource, verb string) []rbacv1.PolicyRule {
	var out []rbacv1.PolicyRule
	for _, r := range rules {
		if !slices.Contains(r.APIGroups, group) || !slices.Contains(r.Resources, resource) || !slices.Contains(r.Verbs, verb) {
			out = append(out, r)
			continue
		}
		if others := slices.DeleteFunc(slices.Clone(r.Resources), func(s string) bool { return s == resource }); len(others) > 0 {
			rest := *r.DeepCopy()
			rest.Resources = others
			out = append(out, rest)
		}
		if others := slices.DeleteFunc(slices.Clone(r.APIGroups), func(s string) bool { return s == group }); len(others) > 0 {
			rest := *r.DeepCopy()
			rest.APIGroups, rest.Resources = others, []string{resource}
			out = append(out, rest)
		}
		out = append(out, rbacv1.PolicyRule{
			APIGroups: []string{group}, Resources: []string{resource},
			Verbs: slices.DeleteFunc(slices.Clone(r.Verbs), func(s string) bool { return s == verb }),
		})
	}
	return out
}

// createOrReplace creates an RBAC object, replacing one left by an
// interrupted run, and deletes it at the end of the test.
func createOrReplace(t *testing.T, obj client.Object) {
	t.Helper()
	ctx := context.Background()
	if err := k8s.Delete(ctx, obj); err != nil && !apierrors.IsNotFound(err) {
		t.Fatal(err)
	}
	obj.SetResourceVersion("")
	if err := k8s.Create(ctx, obj); err != nil {
		t.Fatalf("create %s: %v", obj.GetName(), err)
	}
	t.Cleanup(func() { _ = k8s.Delete(context.Background(), obj) })
}

// 8. The operator runs as a user bound to the generated ClusterRole minus
// patch on KubeVirt VirtualMachines. The model targeting VirtualMachines
// reports TargetsResolved=False/Forbidden naming the verb, the resource and
// the ClusterRole to extend, warns once with a Forbidden event, and no VM is
// ever written; the model for CNPG Clusters works, and the API server
// refuses none of the operator's requests. Fails if role.yaml lacks
// something the operator does (a request is refused with 403, or the
// Cluster is never annotated), if the access check stops naming what is missing, or if the
// operator writes to a kind it may not patch.
func TestLeastPrivilege(t *testing.T) {
	ctx := context.Background()
	role := managerRole(t)
	deployedName := role.Name
	role.Rules = withoutVerb(role.Rules, "kubevirt.io", "virtualmachines", "patch")
	if allows(role.Rules, "kubevirt.io", "virtualmachines", "patch") || !allows(role.Rules, "kubevirt.io", "virtualmachines", "watch") {
		t.Fatal("withoutVerb did not remove exactly patch on virtualmachines.kubevirt.io")
	}
	const userName = "responsibility-operator-least-privilege"
	createOrReplace(t, &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: deployedName}, Rules: role.Rules})
	createOrReplace(t, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: deployedName},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: deployedName},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: userName}},
	})
	user, err := testEnv.AddUser(envtest.User{Name: userName}, restConfig)
	if err != nil {
		t.Fatalf("add user: %v", err)
	}
	asUser, err := client.New(user.Config(), client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	// The authorizer sees a new binding a moment after it is created.
	eventually(t, 10*time.Second, func() error {
		review := &authorizationv1.SelfSubjectAccessReview{Spec: authorizationv1.SelfSubjectAccessReviewSpec{
			ResourceAttributes: &authorizationv1.ResourceAttributes{Group: "postgresql.cnpg.io", Resource: "clusters", Verb: "patch"},
		}}
		if err := asUser.Create(ctx, review); err != nil {
			return err
		}
		if !review.Status.Allowed {
			return fmt.Errorf("the binding is not effective yet: %s", review.Status.Reason)
		}
		return nil
	})

	refused := &refusalRecorder{}
	startManagerWith(t, managerSetup{config: user.Config(), wrapTransport: refused.wrap})
	ns := newNamespace(t, map[string]string{"test": "least-privilege"})
	vms := &v1alpha1.ResponsibilityModel{
		ObjectMeta: metav1.ObjectMeta{Name: "lp-vms"},
		Spec: v1alpha1.ResponsibilityModelSpec{
			Service: "VPS Instances", Provider: "DanubeData",
			Targets: []v1alpha1.Target{{APIVersion: "kubevirt.io/v1", Kind: "VirtualMachine",
				NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"test": "least-privilege"}}}},
			Areas: []v1alpha1.Area{{Name: "Operating System", Provider: "Hypervisor", Customer: "Guest OS",
				Duties: []v1alpha1.Duty{{Name: "run-strategy-set", Message: "Set spec.runStrategy", Rule: `object.spec.?runStrategy.hasValue()`}}}},
		},
	}
	applyModel(t, vms)
	applyModel(t, dbModel("lp-db", "least-privilege"))
	vm := createObject(t, "kubevirt.io/v1", "VirtualMachine", ns, "web", nil, map[string]any{
		"runStrategy": "Always",
		"template":    map[string]any{"spec": map[string]any{"domain": map[string]any{"devices": map[string]any{}}}},
	})
	db := createObject(t, cnpg, "Cluster", ns, "orders", nil, tlsSpec())
	t.Cleanup(func() { deleteObjects(vm, db) })

	waitAnnotation(t, db, v1alpha1.AnnotationUnmet, "lp-db/backup-scheduled", true)
	waitModel(t, "lp-db", 10*time.Second, isReady)
	rm := waitModel(t, "lp-vms", 10*time.Second, func(rm *v1alpha1.ResponsibilityModel) error {
		c := meta.FindStatusCondition(rm.Status.Conditions, v1alpha1.ConditionTargetsResolved)
		if c == nil || c.Status != metav1.ConditionFalse || c.Reason != v1alpha1.ReasonForbidden {
			return fmt.Errorf("TargetsResolved = %+v, want False/%s", c, v1alpha1.ReasonForbidden)
		}
		return nil
	})
	c := meta.FindStatusCondition(rm.Status.Conditions, v1alpha1.ConditionTargetsResolved)
	// Only patch is missing: get, list and watch must not be named.
	for _, want := range []string{"may not patch on virtualmachines.kubevirt.io.", "ClusterRole " + deployedName} {
		if !strings.Contains(c.Message, want) {
			t.Errorf("TargetsResolved message %q does not contain %q", c.Message, want)
		}
	}
	if ready := meta.FindStatusCondition(rm.Status.Conditions, v1alpha1.ConditionReady); ready == nil ||
		ready.Status != metav1.ConditionFalse || ready.Reason != v1alpha1.ReasonForbidden {
		t.Errorf("Ready = %+v, want False/%s", ready, v1alpha1.ReasonForbidden)
	}
	model := &unstructured.Unstructured{}
	model.SetGroupVersionKind(v1alpha1.GroupVersion.WithKind("ResponsibilityModel"))
	model.SetName("lp-vms")
	eventually(t, 10*time.Second, func() error {
		evs := eventsFor(t, model, v1alpha1.EventForbidden)
		if len(evs) != 1 || !strings.Contains(evs[0].Note, "virtualmachines.kubevirt.io") {
			return fmt.Errorf("want one Forbidden event naming the resource on the model, got %d", len(evs))
		}
		return nil
	})

	consistently(t, 3*time.Second, neverWritten(t, vm))
	// The role covers everything else the operator does: the API server
	// refused none of its requests (it asks before it patches a kind).
	if got := refused.list(); len(got) > 0 {
		t.Errorf("the API server refused %d request(s) of the operator under the generated role: %v", len(got), got)
	}
}

// refusalRecorder records the requests that the API server answers with
// 403 Forbidden.
type refusalRecorder struct {
	mu      sync.Mutex
	refused []string
}

func (r *refusalRecorder) wrap(rt http.RoundTripper) http.RoundTripper {
	return roundTripperFunc(func(req *http.Request) (*http.Response, error) {
		resp, err := rt.RoundTrip(req)
		if err == nil && resp.StatusCode == http.StatusForbidden {
			r.mu.Lock()
			r.refused = append(r.refused, req.Method+" "+req.URL.Path)
			r.mu.Unlock()
		}
		return resp, err
	})
}

func (r *refusalRecorder) list() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.refused)
}

// The operator's own needs beyond the catalog's kinds, by group/resource:
// the verbs the code uses, from the RBAC markers of model_controller.go and
// reports.go. A write verb on anything else is more than the operator needs.
var operatorOwnWrites = map[string][]string{
	"responsibility.io/responsibilitymodels":            {"update", "patch"},
	"responsibility.io/responsibilitymodels/status":     {"update", "patch"},
	"responsibility.io/responsibilitymodels/finalizers": {"update"},
	// The DutyWaivers' status (a merge patch).
	"responsibility.io/dutywaivers/status":          {"patch"},
	"events.k8s.io/events":                          {"create", "patch"},
	"authorization.k8s.io/selfsubjectaccessreviews": {"create"},
	"openreports.io/reports":                        {"create", "patch", "delete"},
	"wgpolicyk8s.io/policyreports":                  {"create", "patch", "delete"},
	// The ValidatingAdmissionPolicies generated from the models (spec.admission).
	"admissionregistration.k8s.io/validatingadmissionpolicies":       {"create", "patch", "delete"},
	"admissionregistration.k8s.io/validatingadmissionpolicybindings": {"create", "patch", "delete"},
}

// 8 (continued). config/rbac/role.yaml (generated from the markers in
// rbac_catalog.go) grants get, list, watch and patch on every kind a model
// of config/catalog targets and get, list, watch on every kind a duty reads,
// so the catalog and the generated RBAC cannot drift apart: a new catalog
// kind without its marker fails here, not in a cluster with a Forbidden
// condition. And it grants no more: no wildcards, and no write verb on
// anything but the catalog's targets and the operator's own resources.
func TestRoleCoversCatalog(t *testing.T) {
	role := managerRole(t)
	set, err := samples.Load(repoRoot)
	if err != nil {
		t.Fatal(err)
	}
	mapper := k8s.RESTMapper()
	resourceOf := func(gvk schema.GroupVersionKind) (schema.GroupVersionResource, bool) {
		m, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if err != nil {
			t.Errorf("%s is not served by the test API server (add its CRD to test/crds): %v", gvk, err)
			return schema.GroupVersionResource{}, false
		}
		return m.Resource, true
	}
	targets := map[string]bool{} // group/resource
	check := func(model, what string, gvk schema.GroupVersionKind, verbs []string) {
		gvr, ok := resourceOf(gvk)
		if !ok {
			return
		}
		if what == "target" {
			targets[gvr.Group+"/"+gvr.Resource] = true
		}
		for _, verb := range verbs {
			if !allows(role.Rules, gvr.Group, gvr.Resource, verb) {
				t.Errorf("model %s: %s kind %s: config/rbac/role.yaml does not grant %s on %s (add a marker to rbac_catalog.go and run make manifests)",
					model, what, gvk.Kind, verb, resourceName(gvr))
			}
		}
	}
	kinds := 0
	for _, m := range set.Models {
		for _, gvk := range m.TargetKinds() {
			kinds++
			check(m.Name, "target", gvk, targetVerbs)
		}
		for _, d := range m.Duties {
			for _, r := range d.Related {
				kinds++
				check(m.Name, "related", r.GVK, relatedVerbs)
			}
		}
	}
	if len(set.Models) == 0 || kinds == 0 {
		t.Fatal("the catalog has no models or kinds: nothing was checked")
	}

	writes := []string{"create", "update", "patch", "delete", "deletecollection", "escalate", "bind", "impersonate"}
	for _, r := range role.Rules {
		for _, list := range [][]string{r.APIGroups, r.Resources, r.Verbs} {
			if slices.Contains(list, rbacv1.ResourceAll) {
				t.Errorf("rule %+v uses a wildcard", r)
			}
		}
		for _, g := range r.APIGroups {
			for _, res := range r.Resources {
				for _, v := range r.Verbs {
					key := g + "/" + res
					patchesTarget := v == "patch" && targets[key]
					if slices.Contains(writes, v) && !patchesTarget && !slices.Contains(operatorOwnWrites[key], v) {
						t.Errorf("config/rbac/role.yaml grants %s on %s, which neither the catalog nor the operator needs", v, key)
					}
				}
			}
		}
	}
}

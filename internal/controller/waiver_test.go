package controller

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/yaml"

	"github.com/responsibility-operator/responsibility-operator/api/v1alpha1"
	"github.com/responsibility-operator/responsibility-operator/internal/evaluate"
)

// clientAs returns a client of the test API server acting as a user, with
// the API server's warnings collected into warnings.
func clientAs(t *testing.T, name string, warnings *[]string) client.Client {
	t.Helper()
	user, err := testEnv.AddUser(envtest.User{Name: name}, restConfig)
	if err != nil {
		t.Fatal(err)
	}
	cfg := rest.CopyConfig(user.Config())
	if warnings != nil {
		cfg.WarningHandler = warningCollector{warnings}
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

type warningCollector struct{ into *[]string }

func (w warningCollector) HandleWarningHeader(_ int, _ string, text string) {
	*w.into = append(*w.into, text)
}

// shippedClusterRole reads a ClusterRole of config/rbac and creates it under
// a test name.
func shippedClusterRole(t *testing.T, file, name string) *rbacv1.ClusterRole {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("..", "..", "config", "rbac", file))
	if err != nil {
		t.Fatal(err)
	}
	role := &rbacv1.ClusterRole{}
	if err := yaml.Unmarshal(raw, role); err != nil {
		t.Fatal(err)
	}
	role.Name = name
	if err := k8s.Create(context.Background(), role); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	return role
}

func bindRole(t *testing.T, ns, user, clusterRole string) {
	t.Helper()
	rb := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: user + "-" + clusterRole},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: clusterRole},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: user}},
	}
	if err := k8s.Create(context.Background(), rb); err != nil {
		t.Fatal(err)
	}
}

func dutyWaiver(ns, name, model string, objects []string, duties ...string) *v1alpha1.DutyWaiver {
	return &v1alpha1.DutyWaiver{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: v1alpha1.DutyWaiverSpec{
			Model: model, Duties: duties, Objects: v1alpha1.WaiverObjects{Names: objects},
			Reason: "restored nightly from the DR site", Ticket: "SEC-42",
		},
	}
}

func getWaiver(t *testing.T, ns, name string) *v1alpha1.DutyWaiver {
	t.Helper()
	dw := &v1alpha1.DutyWaiver{}
	if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, dw); err != nil {
		t.Fatal(err)
	}
	return dw
}

// waitWaiver waits until a waiver's status passes check.
func waitWaiver(t *testing.T, ns, name string, check func(*v1alpha1.DutyWaiver) error) *v1alpha1.DutyWaiver {
	t.Helper()
	var dw *v1alpha1.DutyWaiver
	eventually(t, 20*time.Second, func() error {
		dw = getWaiver(t, ns, name)
		if dw.Status.ObservedGeneration != dw.Generation {
			return fmt.Errorf("waiver %s: status of generation %d, want %d", name, dw.Status.ObservedGeneration, dw.Generation)
		}
		return check(dw)
	})
	return dw
}

func waiverCondition(dw *v1alpha1.DutyWaiver, condType string, status metav1.ConditionStatus, reason string) error {
	c := meta.FindStatusCondition(dw.Status.Conditions, condType)
	if c == nil || c.Status != status || c.Reason != reason {
		return fmt.Errorf("waiver %s: condition %s = %+v, want %s/%s", dw.Name, condType, c, status, reason)
	}
	return nil
}

func waiverEvents(t *testing.T, dw *v1alpha1.DutyWaiver, reason string) int {
	t.Helper()
	u := &unstructured.Unstructured{}
	u.SetAPIVersion(v1alpha1.GroupVersion.String())
	u.SetKind("DutyWaiver")
	u.SetNamespace(dw.Namespace)
	u.SetName(dw.Name)
	return eventCount(eventsFor(t, u, reason))
}

// surfaces is what every surface of the operator says of one duty on one
// object: its annotation, the model's status counts, the metric, the
// namespace's policy report, and the waiver's status.
type surfaces struct {
	state        v1alpha1.DutyState
	waiver       string
	statusWaived int32
	metricWaived float64
	reportResult string
	waiverLists  bool
}

// waitAgree waits until every surface says duty is in state on obj, waived by
// waiver ("" for none), with waived objects of the model in total.
func waitAgree(t *testing.T, obj *unstructured.Unstructured, model, duty string, state v1alpha1.DutyState, waiver string, waived int) {
	t.Helper()
	result := map[v1alpha1.DutyState]string{v1alpha1.DutyWaived: "skip", v1alpha1.DutyUnmet: "fail", v1alpha1.DutyMet: "pass"}[state]
	eventually(t, 30*time.Second, func() error {
		var s surfaces
		a := evaluate.ParseDuties(getObject(t, obj).GetAnnotations()[v1alpha1.AnnotationDuties])[model][duty]
		s.state, s.waiver = a.State, a.Waiver
		rm := &v1alpha1.ResponsibilityModel{}
		if err := k8s.Get(context.Background(), client.ObjectKey{Name: model}, rm); err != nil {
			return err
		}
		for _, d := range rm.Status.Duties {
			if d.Name == duty {
				s.statusWaived = d.Waived
			}
		}
		s.metricWaived, _ = metricValue(t, "responsibility_duty_objects", map[string]string{"model": model, "duty": duty, "state": string(v1alpha1.DutyWaived), "namespace": obj.GetNamespace()})
		if u, err := getReport(obj.GetNamespace()); err == nil {
			for _, r := range nestedSlice(u.Object, "results") {
				m := r.(map[string]any)
				ref := m["resources"].([]any)[0].(map[string]any)
				if ref["name"] == obj.GetName() && m["rule"] == duty && m["policy"] == model {
					s.reportResult = fmt.Sprint(m["result"])
					if state == v1alpha1.DutyWaived && !strings.Contains(fmt.Sprint(m["message"]), "DutyWaiver "+waiver) {
						return fmt.Errorf("report message %q does not name DutyWaiver %s", m["message"], waiver)
					}
				}
			}
		}
		if waiver != "" {
			dw := getWaiver(t, obj.GetNamespace(), waiver)
			s.waiverLists = slices.ContainsFunc(dw.Status.Objects, func(o v1alpha1.WaivedObject) bool {
				return o.Name == obj.GetName() && slices.Contains(o.Duties, duty)
			})
		}
		want := surfaces{state: state, waiver: waiver, statusWaived: int32(waived), metricWaived: float64(waived), reportResult: result, waiverLists: waiver != ""}
		if s != want {
			return fmt.Errorf("%s %s/%s: surfaces say %+v, want %+v", obj.GetName(), model, duty, s, want)
		}
		return nil
	})
}

func nestedSlice(obj map[string]any, path ...string) []any {
	s, _, _ := unstructured.NestedSlice(obj, path...)
	return s
}

// The governed-waiver flow of issue 26 on a real API server: who may grant a
// DutyWaiver is RBAC; the grant is recorded by the webhook; every surface
// agrees on the waived duty, including at the expiry instant; a waiver that
// cannot apply is reported; deleting one restores the verdict.
func TestDutyWaivers(t *testing.T) {
	startManager(t)
	ctx := context.Background()
	ns := newNamespace(t, map[string]string{"test": "dutywaiver"})
	rm := dbModel("dw-db", "dutywaiver")
	rm.Spec.Waivers = v1alpha1.WaiversDutyWaivers
	applyModel(t, rm)
	// Tenants may edit their namespace but not waive: the approver role is
	// not aggregated into admin or edit; the viewer role is into view.
	shippedClusterRole(t, "dutywaiver_approver_role.yaml", "test-dutywaiver-approver")
	shippedClusterRole(t, "dutywaiver_viewer_role.yaml", "test-dutywaiver-viewer")
	bindRole(t, ns, "tenant", "admin")
	bindRole(t, ns, "tenant", "test-dutywaiver-viewer")
	bindRole(t, ns, "security", "test-dutywaiver-approver")
	var warnings []string
	tenant := clientAs(t, "tenant", nil)
	security := clientAs(t, "security", &warnings)

	orders := createObject(t, cnpg, "Cluster", ns, "orders", nil, tlsSpec())
	billing := createObject(t, cnpg, "Cluster", ns, "billing", nil, tlsSpec())
	// The tenant's own annotation waiver is ignored: this model takes
	// DutyWaivers only.
	o := getObject(t, orders)
	o.SetAnnotations(map[string]string{v1alpha1.AnnotationWaivePrefix + "backup-scheduled": "trust me"})
	if err := k8s.Update(ctx, o); err != nil {
		t.Fatal(err)
	}
	waitAnnotation(t, orders, v1alpha1.AnnotationIgnoredWaivers, "backup-scheduled", true)
	waitAgree(t, orders, "dw-db", "backup-scheduled", v1alpha1.DutyUnmet, "", 0)

	// A tenant cannot grant itself a waiver; it can read them.
	expires := time.Now().Add(12 * time.Second).Truncate(time.Second)
	grant := dutyWaiver(ns, "orders-backup", "dw-db", []string{"orders"}, "backup-scheduled")
	grant.Spec.Expires = &metav1.Time{Time: expires}
	if err := tenant.Create(ctx, grant.DeepCopy()); !apierrors.IsForbidden(err) {
		t.Fatalf("tenant create: err = %v, want Forbidden", err)
	}
	// An approver can; the grant names the approver, whatever the request
	// typed there.
	grant.Spec.GrantedBy = &v1alpha1.WaiverGrant{User: "mallory"}
	if err := security.Create(ctx, grant); err != nil {
		t.Fatal(err)
	}
	if len(warnings) != 0 {
		t.Errorf("a waiver that applies got warnings %q", warnings)
	}
	if err := tenant.Get(ctx, client.ObjectKeyFromObject(grant), &v1alpha1.DutyWaiver{}); err != nil {
		t.Errorf("tenant get: %v", err)
	}
	if g := getWaiver(t, ns, "orders-backup").Spec.GrantedBy; g == nil || g.User != "security" {
		t.Errorf("grantedBy = %+v, want the approver's user", g)
	}

	waitAgree(t, orders, "dw-db", "backup-scheduled", v1alpha1.DutyWaived, "orders-backup", 1)
	waitAgree(t, billing, "dw-db", "backup-scheduled", v1alpha1.DutyUnmet, "", 1)
	dw := waitWaiver(t, ns, "orders-backup", func(dw *v1alpha1.DutyWaiver) error {
		if err := waiverCondition(dw, v1alpha1.ConditionWaiverAccepted, metav1.ConditionTrue, v1alpha1.ReasonWaiverAccepted); err != nil {
			return err
		}
		if err := waiverCondition(dw, v1alpha1.ConditionWaiverActive, metav1.ConditionTrue, v1alpha1.ReasonWaiverActive); err != nil {
			return err
		}
		if dw.Status.WaivedObjects != 1 || dw.Status.Expired {
			return fmt.Errorf("status = %+v, want 1 waived object, not expired", dw.Status)
		}
		return nil
	})
	msg := evaluate.ParseDuties(getObject(t, orders).GetAnnotations()[v1alpha1.AnnotationDuties])["dw-db"]["backup-scheduled"].Message
	for _, want := range []string{"orders-backup", "SEC-42", "granted by security", expires.UTC().Format(time.RFC3339), "restored nightly"} {
		if !strings.Contains(msg, want) {
			t.Errorf("duty message %q does not contain %q", msg, want)
		}
	}

	// A change of nothing but metadata keeps the grant; a tenant cannot
	// change the waiver at all.
	dw.Labels = map[string]string{"team": "security"}
	if err := k8s.Update(ctx, dw); err != nil {
		t.Fatal(err)
	}
	if g := getWaiver(t, ns, "orders-backup").Spec.GrantedBy; g == nil || g.User != "security" {
		t.Errorf("after a label change grantedBy = %+v, want security still", g)
	}
	dw = getWaiver(t, ns, "orders-backup")
	dw.Spec.Reason = "I say so"
	if err := tenant.Update(ctx, dw); !apierrors.IsForbidden(err) {
		t.Errorf("tenant update: err = %v, want Forbidden", err)
	}

	waiversNotAccepted(t, ns, security, &warnings)
	waitAgree(t, billing, "dw-db", "backup-scheduled", v1alpha1.DutyUnmet, "", 1)

	expiresOnTime(t, orders, expires)

	// A waiver without expiry, by label; deleting it restores the verdict.
	byLabel := dutyWaiver(ns, "all-backups", "dw-db", nil, "backup-scheduled")
	byLabel.Spec.Objects = v1alpha1.WaiverObjects{Selector: &metav1.LabelSelector{}}
	if err := security.Create(ctx, byLabel); err != nil {
		t.Fatal(err)
	}
	waitAgree(t, orders, "dw-db", "backup-scheduled", v1alpha1.DutyWaived, "all-backups", 2)
	waitAgree(t, billing, "dw-db", "backup-scheduled", v1alpha1.DutyWaived, "all-backups", 2)
	waitWaiver(t, ns, "all-backups", func(dw *v1alpha1.DutyWaiver) error {
		if dw.Status.WaivedObjects != 2 {
			return fmt.Errorf("waived objects = %d, want 2", dw.Status.WaivedObjects)
		}
		return nil
	})
	if err := security.Delete(ctx, byLabel); err != nil {
		t.Fatal(err)
	}
	waitAgree(t, orders, "dw-db", "backup-scheduled", v1alpha1.DutyUnmet, "", 0)
	waitAgree(t, billing, "dw-db", "backup-scheduled", v1alpha1.DutyUnmet, "", 0)
	if n := eventCount(eventsFor(t, billing, v1alpha1.EventCustomerDutyUnmet)); n != 2 {
		t.Errorf("billing has %d CustomerDutyUnmet events, want 2 (found, then again after the waiver went)", n)
	}
}

// waiversNotAccepted: a waiver for a duty that does not exist, and one for a
// model that does not take DutyWaivers, are both reported in status and with
// an event, and warned of at creation.
func waiversNotAccepted(t *testing.T, ns string, security client.Client, warnings *[]string) {
	t.Helper()
	ctx := context.Background()
	*warnings = nil
	typo := dutyWaiver(ns, "typo", "dw-db", []string{"billing"}, "backup-schedule")
	if err := security.Create(ctx, typo); err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(*warnings, func(w string) bool { return strings.Contains(w, `no duty named "backup-schedule"`) }) {
		t.Errorf("warnings %q do not name the missing duty", *warnings)
	}
	annOnly := dbModel("dw-annotations-only", "dutywaiver-none")
	annOnly.Spec.Waivers = v1alpha1.WaiversAnnotations
	applyModel(t, annOnly)
	refused := dutyWaiver(ns, "refused", "dw-annotations-only", []string{"billing"}, "backup-scheduled")
	if err := security.Create(ctx, refused); err != nil {
		t.Fatal(err)
	}
	for name, reason := range map[string]string{"typo": v1alpha1.ReasonDutyNotFound, "refused": v1alpha1.ReasonWaiversNotAccepted} {
		w := waitWaiver(t, ns, name, func(dw *v1alpha1.DutyWaiver) error {
			if err := waiverCondition(dw, v1alpha1.ConditionWaiverAccepted, metav1.ConditionFalse, reason); err != nil {
				return err
			}
			return waiverCondition(dw, v1alpha1.ConditionWaiverActive, metav1.ConditionFalse, v1alpha1.ReasonWaiverNotAccepted)
		})
		eventually(t, 10*time.Second, func() error {
			if n := waiverEvents(t, w, v1alpha1.EventWaiverNotAccepted); n != 1 {
				return fmt.Errorf("waiver %s has %d %s events, want 1", name, n, v1alpha1.EventWaiverNotAccepted)
			}
			return nil
		})
	}
}

// expiresOnTime: the duty a waiver waives is Waived until the waiver's
// expiry and Unmet from that instant, with the duty's event, on every surface.
func expiresOnTime(t *testing.T, orders *unstructured.Unstructured, expires time.Time) {
	t.Helper()
	unmetBefore := eventCount(eventsFor(t, orders, v1alpha1.EventCustomerDutyUnmet))
	if wait := time.Until(expires) - 500*time.Millisecond; wait > 0 {
		time.Sleep(wait)
	}
	if got := dutyState(t, orders, "dw-db", "backup-scheduled"); got != v1alpha1.DutyWaived {
		t.Fatalf("half a second before the expiry the duty is %s, want Waived", got)
	}
	var flipped time.Time
	eventually(t, 10*time.Second, func() error {
		if got := dutyState(t, orders, "dw-db", "backup-scheduled"); got != v1alpha1.DutyUnmet {
			return fmt.Errorf("duty is %s after the expiry, want Unmet", got)
		}
		flipped = time.Now()
		return nil
	})
	t.Logf("the duty turned Unmet %s after the waiver's expiry", flipped.Sub(expires).Round(time.Millisecond))
	if late := flipped.Sub(expires); late > 3*time.Second {
		t.Errorf("the duty turned Unmet %s after the expiry, want within 3s", late)
	}
	waitAgree(t, orders, "dw-db", "backup-scheduled", v1alpha1.DutyUnmet, "", 0)
	waitEvents(t, orders, v1alpha1.EventCustomerDutyUnmet, unmetBefore+1)
	expired := waitWaiver(t, orders.GetNamespace(), "orders-backup", func(dw *v1alpha1.DutyWaiver) error {
		if !dw.Status.Expired || dw.Status.WaivedObjects != 0 || len(dw.Status.Objects) != 0 {
			return fmt.Errorf("status = %+v, want expired with no objects", dw.Status)
		}
		return waiverCondition(dw, v1alpha1.ConditionWaiverActive, metav1.ConditionFalse, v1alpha1.ReasonWaiverExpired)
	})
	eventually(t, 10*time.Second, func() error {
		if n := waiverEvents(t, expired, v1alpha1.EventWaiverExpired); n != 1 {
			return fmt.Errorf("%d WaiverExpired events, want 1", n)
		}
		return nil
	})

}

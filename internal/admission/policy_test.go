package admission

import (
	"strings"
	"testing"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/responsibility-operator/responsibility-operator/api/v1alpha1"
	"github.com/responsibility-operator/responsibility-operator/internal/evaluate"
)

var (
	clusterGVK = schema.GroupVersionKind{Group: "postgresql.cnpg.io", Version: "v1", Kind: "Cluster"}
	clusterGVR = schema.GroupVersionResource{Group: "postgresql.cnpg.io", Version: "v1", Resource: "clusters"}
	mariaGVK   = schema.GroupVersionKind{Group: "k8s.mariadb.com", Version: "v1alpha1", Kind: "MariaDB"}
	mariaGVR   = schema.GroupVersionResource{Group: "k8s.mariadb.com", Version: "v1alpha1", Resource: "mariadbs"}
)

// model is a database model with a Warn duty, a Deny duty and a duty that
// reads related objects.
func model(mutate func(*v1alpha1.ResponsibilityModel)) *v1alpha1.ResponsibilityModel {
	rm := &v1alpha1.ResponsibilityModel{
		ObjectMeta: metav1.ObjectMeta{Name: "dbs", UID: "uid-1"},
		Spec: v1alpha1.ResponsibilityModelSpec{
			Service: "Databases", Provider: "P", Admission: v1alpha1.AdmissionWarn,
			Parameters: []v1alpha1.Parameter{{Name: "minTLS", Value: "TLSv1.3"}},
			Targets: []v1alpha1.Target{
				{APIVersion: "postgresql.cnpg.io/v1", Kind: "Cluster", Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"tier": "prod"}}},
				{APIVersion: "k8s.mariadb.com/v1alpha1", Kind: "MariaDB", NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"team": "a"}}},
			},
			Areas: []v1alpha1.Area{{Name: "Security", Provider: "p", Customer: "c", Duties: []v1alpha1.Duty{
				{Name: "tls", Rule: `object.spec.?tls.orValue("") == params.minTLS`, Message: "Set spec.tls."},
				{Name: "no-root", Rule: `!object.spec.?root.orValue(false)`, Message: "Turn root off", Admission: v1alpha1.AdmissionDeny},
				{Name: "scheduled", Rule: `related.s.size() > 0`, Related: []v1alpha1.RelatedResource{{Name: "s", APIVersion: "v1", Kind: "ConfigMap"}}},
				{Name: "quiet", Rule: `true`, Admission: v1alpha1.AdmissionNone},
			}}},
		},
	}
	if mutate != nil {
		mutate(rm)
	}
	return rm
}

func build(t *testing.T, rm *v1alpha1.ResponsibilityModel, resources map[schema.GroupVersionKind]schema.GroupVersionResource) Policies {
	t.Helper()
	m, err := evaluate.Compile(rm)
	if err != nil {
		t.Fatal(err)
	}
	return Build(Input{Model: rm, Compiled: m, Resources: resources, Excluded: []string{"kube-system", "ops"}, Operator: "system:serviceaccount:ro:manager"})
}

var both = map[schema.GroupVersionKind]schema.GroupVersionResource{clusterGVK: clusterGVR, mariaGVK: mariaGVR}

func TestBuild(t *testing.T) {
	p := build(t, model(nil), both)
	if got := names(p); got != "dbs.warn.responsibility.io dbs.deny.responsibility.io | dbs.warn.responsibility.io.0 dbs.warn.responsibility.io.1 dbs.deny.responsibility.io.0 dbs.deny.responsibility.io.1" {
		t.Fatalf("objects: %s", got)
	}
	warn, deny := p.Policies[0], p.Policies[1]
	// The Warn policy: the tls duty, and the waiver notices of tls and no-root.
	if n := len(warn.Spec.Validations); n != 3 {
		t.Errorf("the Warn policy has %d validations, want tls and two waiver notices", n)
	}
	tls := warn.Spec.Validations[0]
	for _, want := range []string{`(object.spec.?tls.orValue("") == "TLSv1.3")`, `"responsibility.io/waive.tls" in object.metadata.annotations`} {
		if !strings.Contains(tls.Expression, want) {
			t.Errorf("tls validation %q lacks %q", tls.Expression, want)
		}
	}
	if strings.Contains(tls.Expression, "oldObject") {
		t.Errorf("Warn answers every update, but %q looks at oldObject", tls.Expression)
	}
	if want := `Customer duty tls (dbs, area "Security") is unmet: Set spec.tls. Fix it, or waive it with the annotation responsibility.io/waive.tls: "<reason>".`; tls.Message != want {
		t.Errorf("message %q, want %q", tls.Message, want)
	}
	if !strings.Contains(warn.Spec.Validations[2].MessageExpression, `object.metadata.annotations["responsibility.io/waive.no-root"]`) {
		t.Errorf("the waiver notice of no-root does not quote the waiver: %q", warn.Spec.Validations[2].MessageExpression)
	}
	// The Deny policy answers a create, and an update only if the old object met the duty.
	if n := len(deny.Spec.Validations); n != 1 || !strings.Contains(deny.Spec.Validations[0].Expression, `(request.operation == 'UPDATE' && !(!oldObject.spec.?root.orValue(false)))`) {
		t.Errorf("the Deny policy's validations: %+v", deny.Spec.Validations)
	}
	checkCommon(t, p)
}

// checkCommon checks what every policy and binding of the test model has:
// failure policy, match conditions, owner, label, and per target binding
// its resource, selectors and the excluded namespaces.
func checkCommon(t *testing.T, p Policies) {
	t.Helper()
	for _, pol := range p.Policies {
		if *pol.Spec.FailurePolicy != admissionregistrationv1.Ignore {
			t.Errorf("%s: failurePolicy %s", pol.Name, *pol.Spec.FailurePolicy)
		}
		if mc := pol.Spec.MatchConditions; len(mc) != 1 || mc[0].Expression != `request.userInfo.username != "system:serviceaccount:ro:manager"` {
			t.Errorf("%s: match conditions %+v", pol.Name, mc)
		}
		if len(pol.Spec.MatchConstraints.ResourceRules) != 2 || pol.OwnerReferences[0].UID != "uid-1" || pol.Labels[v1alpha1.LabelModel] != "dbs" {
			t.Errorf("%s: rules %+v, owners %+v, labels %v", pol.Name, pol.Spec.MatchConstraints.ResourceRules, pol.OwnerReferences, pol.Labels)
		}
	}
	// One binding per target: its resource, selectors and the excluded namespaces.
	b0, b1 := p.Bindings[0].Spec, p.Bindings[1].Spec
	if b0.MatchResources.ResourceRules[0].Resources[0] != "clusters" || b0.MatchResources.ObjectSelector.MatchLabels["tier"] != "prod" {
		t.Errorf("the Cluster binding: %+v", b0.MatchResources)
	}
	if b1.MatchResources.ResourceRules[0].Resources[0] != "mariadbs" || b1.MatchResources.NamespaceSelector.MatchLabels["team"] != "a" {
		t.Errorf("the MariaDB binding: %+v", b1.MatchResources)
	}
	for _, b := range []admissionregistrationv1.ValidatingAdmissionPolicyBindingSpec{b0, b1} {
		ex := b.MatchResources.NamespaceSelector.MatchExpressions
		if len(ex) != 1 || ex[0].Operator != metav1.LabelSelectorOpNotIn || strings.Join(ex[0].Values, ",") != "kube-system,ops" {
			t.Errorf("binding leaves out %+v, want kube-system and ops", ex)
		}
		if string(b.ValidationActions[0]) != "Warn" && string(b.ValidationActions[0]) != "Deny" {
			t.Errorf("validation actions %v", b.ValidationActions)
		}
	}
}

func TestBuildVariants(t *testing.T) {
	for _, tc := range []struct {
		name      string
		mutate    func(*v1alpha1.ResponsibilityModel)
		resources map[schema.GroupVersionKind]schema.GroupVersionResource
		want      string // the objects' names
		check     func(*testing.T, Policies)
	}{
		{name: "no target kind served", resources: nil, want: " | "},
		{name: "one of two served", resources: map[schema.GroupVersionKind]schema.GroupVersionResource{mariaGVK: mariaGVR},
			want: "dbs.warn.responsibility.io dbs.deny.responsibility.io | dbs.warn.responsibility.io.0 dbs.deny.responsibility.io.0"},
		{name: "no duty at admission", resources: both, want: " | ",
			mutate: func(rm *v1alpha1.ResponsibilityModel) {
				rm.Spec.Admission = ""
				rm.Spec.Areas[0].Duties[1].Admission = ""
			}},
		{name: "waivers forbidden: no waiver in the rule, no notice", resources: both,
			want:   "dbs.warn.responsibility.io dbs.deny.responsibility.io | dbs.warn.responsibility.io.0 dbs.warn.responsibility.io.1 dbs.deny.responsibility.io.0 dbs.deny.responsibility.io.1",
			mutate: func(rm *v1alpha1.ResponsibilityModel) { rm.Spec.Waivers = v1alpha1.WaiversForbidden },
			check: func(t *testing.T, p Policies) {
				v := p.Policies[0].Spec.Validations
				if len(v) != 1 || strings.Contains(v[0].Expression, "waive") || strings.Contains(v[0].Message, "waive") {
					t.Errorf("validations %+v", v)
				}
			}},
		{name: "waivers need an expiry", resources: both,
			want:   "dbs.warn.responsibility.io dbs.deny.responsibility.io | dbs.warn.responsibility.io.0 dbs.warn.responsibility.io.1 dbs.deny.responsibility.io.0 dbs.deny.responsibility.io.1",
			mutate: func(rm *v1alpha1.ResponsibilityModel) { rm.Spec.WaiverExpiry = &v1alpha1.WaiverExpiry{Required: true} },
			check: func(t *testing.T, p Policies) {
				if e := p.Policies[0].Spec.Validations[0].Expression; !strings.Contains(e, `.startsWith("expires ")`) {
					t.Errorf("a waiver without an expiry passes: %q", e)
				}
			}},
		{name: "audit", resources: both,
			want: "dbs.audit.responsibility.io | dbs.audit.responsibility.io.0 dbs.audit.responsibility.io.1",
			mutate: func(rm *v1alpha1.ResponsibilityModel) {
				rm.Spec.Admission = v1alpha1.AdmissionAudit
				rm.Spec.Areas[0].Duties[1].Admission = ""
				rm.Spec.Waivers = v1alpha1.WaiversForbidden
			},
			check: func(t *testing.T, p Policies) {
				if a := p.Bindings[0].Spec.ValidationActions; len(a) != 1 || a[0] != admissionregistrationv1.Audit {
					t.Errorf("validation actions %v", a)
				}
			}},
		{name: "a message expression ends with one period", resources: both,
			want: "dbs.warn.responsibility.io dbs.deny.responsibility.io | dbs.warn.responsibility.io.0 dbs.warn.responsibility.io.1 dbs.deny.responsibility.io.0 dbs.deny.responsibility.io.1",
			mutate: func(rm *v1alpha1.ResponsibilityModel) {
				rm.Spec.Areas[0].Duties[0].MessageExpression = `"Set spec.tls to " + params.minTLS`
			},
			check: func(t *testing.T, p Policies) {
				want := `"Customer duty tls (dbs, area \"Security\") is unmet: " + ["Set spec.tls to " + "TLSv1.3"].map(m, m.endsWith('.') ? m : m + '.')[0] + " Fix it, or waive it with the annotation responsibility.io/waive.tls: \"<reason>\"."`
				if got := p.Policies[0].Spec.Validations[0].MessageExpression; got != want {
					t.Errorf("messageExpression\n got  %s\n want %s", got, want)
				}
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := build(t, model(tc.mutate), tc.resources)
			if got := names(p); got != tc.want {
				t.Errorf("objects %q, want %q", got, tc.want)
			}
			if tc.check != nil {
				tc.check(t, p)
			}
		})
	}
}

// names lists the policies, then the bindings.
func names(p Policies) string {
	var ps, bs []string
	for _, x := range p.Policies {
		ps = append(ps, x.Name)
	}
	for _, x := range p.Bindings {
		bs = append(bs, x.Name)
	}
	return strings.Join(ps, " ") + " | " + strings.Join(bs, " ")
}

package controller

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/responsibility-operator/responsibility-operator/api/v1alpha1"
	"github.com/responsibility-operator/responsibility-operator/internal/admission"
	"github.com/responsibility-operator/responsibility-operator/internal/samples"
)

// admissionModel targets CNPG Clusters in the test's namespaces: TLS
// enforced (Warn, the model's default), superuser access off (Deny), and a
// ScheduledBackup (a related object: the API server cannot evaluate it).
func admissionModel(name, testLabel string) *v1alpha1.ResponsibilityModel {
	rm := dbModel(name, testLabel)
	rm.Spec.Admission = v1alpha1.AdmissionWarn
	rm.Spec.Parameters = []v1alpha1.Parameter{{Name: "minTLS", Value: "TLSv1.3"}}
	rm.Spec.Areas[0].Duties[0].Rule = `object.spec.?postgresql.?parameters.?ssl_min_protocol_version.orValue("") == params.minTLS`
	rm.Spec.Areas[0].Duties = append(rm.Spec.Areas[0].Duties, v1alpha1.Duty{
		Name: "superuser-off", Message: "Set spec.enableSuperuserAccess to false",
		Rule: `!object.spec.?enableSuperuserAccess.orValue(false)`, Admission: v1alpha1.AdmissionDeny,
	})
	return rm
}

// kubectlAs runs kubectl with a kubeconfig of the test API server and
// returns stdout and stderr, where kubectl prints the API server's warnings.
type kubectlAs string

func newKubectl(t *testing.T) kubectlAs {
	t.Helper()
	user, err := testEnv.AddUser(envtest.User{Name: "tenant-admin", Groups: []string{"system:masters"}}, restConfig)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := user.KubeConfig()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	return kubectlAs(path)
}

func (k kubectlAs) run(stdin string, args ...string) (stdout, stderr string, err error) {
	cmd := exec.Command(filepath.Join(os.Getenv("KUBEBUILDER_ASSETS"), "kubectl"), args...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+string(k))
	cmd.Stdin = strings.NewReader(stdin)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err = cmd.Run()
	return out.String(), errOut.String(), err
}

// cluster is a CNPG Cluster manifest for kubectl apply.
func clusterYAML(ns, name string, annotations map[string]string, spec string) string {
	var ann strings.Builder
	if len(annotations) > 0 {
		ann.WriteString("\n  annotations:")
		for k, v := range annotations {
			fmt.Fprintf(&ann, "\n    %s: %q", k, v)
		}
	}
	return fmt.Sprintf("apiVersion: %s\nkind: Cluster\nmetadata:\n  name: %s\n  namespace: %s%s\nspec:\n  instances: 1\n%s", cnpg, name, ns, ann.String(), spec)
}

const (
	tlsOK       = "  postgresql:\n    parameters:\n      ssl_min_protocol_version: TLSv1.3\n"
	tlsMissing  = ""
	superuserOn = "  enableSuperuserAccess: true\n"
)

// TestAdmissionPolicies: a model with spec.admission gets
// ValidatingAdmissionPolicies, and the API server itself answers kubectl
// apply: a warning for an unmet Warn duty (the object is stored), a refusal
// for an unmet Deny duty, a waived duty passes with a warning that says so,
// an update of an object that was already unmet is not refused, a model
// edit changes the next answer, a Deny on a duty the API server cannot
// evaluate is refused, and deleting the model removes its policies.
func TestAdmissionPolicies(t *testing.T) {
	startManager(t)
	ctx := context.Background()
	ns := newNamespace(t, map[string]string{"test": "admission"})
	kubectl := newKubectl(t)

	// An object that is unmet before any policy exists.
	if _, stderr, err := kubectl.run(clusterYAML(ns, "legacy", nil, superuserOn), "apply", "-f", "-"); err != nil {
		t.Fatalf("create legacy: %v\n%s", err, stderr)
	}
	rm := admissionModel("admission-db", "admission")
	applyModel(t, rm)
	waitAdmissionCondition(t, rm.Name, metav1.ConditionTrue, "backup-scheduled (its rule reads related objects)")

	// Warn: stored, with the duty's message as kubectl's warning. The API
	// server picks a new policy up within a moment: retry with dry runs.
	eventually(t, 20*time.Second, func() error {
		_, stderr, err := kubectl.run(clusterYAML(ns, "probe", nil, tlsMissing), "apply", "--dry-run=server", "-f", "-")
		if err != nil {
			return fmt.Errorf("kubectl apply --dry-run=server: %w: %s", err, stderr)
		}
		if !strings.Contains(stderr, "Customer duty tls-enforced (admission-db") {
			return fmt.Errorf("no warning yet: %s", stderr)
		}
		return nil
	})
	_, stderr, err := kubectl.run(clusterYAML(ns, "no-tls", nil, tlsMissing), "apply", "-f", "-")
	if err != nil {
		t.Fatalf("a Warn duty refused the object: %v\n%s", err, stderr)
	}
	for _, want := range []string{"Warning: ", `is unmet: Set spec.postgresql.parameters.ssl_min_protocol_version. Fix it, or waive it with the annotation responsibility.io/waive.tls-enforced: "<reason>".`} {
		if !strings.Contains(stderr, want) {
			t.Errorf("kubectl's warning lacks %q:\n%s", want, stderr)
		}
	}
	// The parameter is in the policy as a literal: TLSv1.2 is not TLSv1.3.
	_, stderr, _ = kubectl.run(clusterYAML(ns, "tls12", nil, strings.ReplaceAll(tlsOK, "TLSv1.3", "TLSv1.2")), "apply", "--dry-run=server", "-f", "-")
	if !strings.Contains(stderr, "tls-enforced") {
		t.Errorf("TLSv1.2 passed a rule that wants params.minTLS = TLSv1.3:\n%s", stderr)
	}
	_, stderr, _ = kubectl.run(clusterYAML(ns, "good", nil, tlsOK), "apply", "-f", "-")
	if strings.Contains(stderr, "Warning") {
		t.Errorf("an object meeting every duty got a warning:\n%s", stderr)
	}

	// Deny: refused with the message; not an update of an object that was
	// already unmet; an update that breaks the duty is.
	_, stderr, err = kubectl.run(clusterYAML(ns, "root", nil, tlsOK+superuserOn), "apply", "-f", "-")
	if err == nil || !strings.Contains(stderr, "Customer duty superuser-off (admission-db") || !strings.Contains(stderr, "Set spec.enableSuperuserAccess to false") {
		t.Errorf("a Deny duty did not refuse the object with its message (err %v):\n%s", err, stderr)
	}
	if _, stderr, err := kubectl.run("", "label", "clusters.postgresql.cnpg.io", "legacy", "-n", ns, "team=db"); err != nil {
		t.Errorf("an update of an object that was unmet before was refused: %v\n%s", err, stderr)
	}
	if _, stderr, err := kubectl.run(clusterYAML(ns, "good", nil, tlsOK+superuserOn), "apply", "-f", "-"); err == nil {
		t.Errorf("an update that turns superuser access on was admitted:\n%s", stderr)
	}

	// A waiver passes, and says so.
	waiver := map[string]string{v1alpha1.AnnotationWaivePrefix + "tls-enforced": "clients of 2019 cannot do TLS 1.3"}
	_, stderr, err = kubectl.run(clusterYAML(ns, "waived", waiver, tlsMissing), "apply", "-f", "-")
	if err != nil || strings.Contains(stderr, "tls-enforced (admission-db, area \"Connection Security\") is unmet: ") ||
		!strings.Contains(stderr, "is unmet and waived on this object: clients of 2019 cannot do TLS 1.3") {
		t.Errorf("a waived duty: want the object admitted with a warning naming the waiver (err %v):\n%s", err, stderr)
	}

	// A model edit changes the next answer: TLS no longer at admission.
	rm.Spec.Areas[0].Duties[0].Admission = v1alpha1.AdmissionNone
	applyModel(t, rm)
	eventually(t, 20*time.Second, func() error {
		_, stderr, err := kubectl.run(clusterYAML(ns, "probe", nil, tlsMissing), "apply", "--dry-run=server", "-f", "-")
		if err != nil {
			return fmt.Errorf("kubectl apply --dry-run=server: %w: %s", err, stderr)
		}
		if strings.Contains(stderr, "tls-enforced") {
			return fmt.Errorf("still warned after the model edit: %s", stderr)
		}
		return nil
	})

	// Deny on a duty the API server cannot evaluate is refused (webhook).
	bad := admissionModel("admission-db-bad", "admission")
	bad.Spec.Areas[1].Duties[0].Admission = v1alpha1.AdmissionDeny
	err = k8s.Create(ctx, bad)
	if err == nil || !strings.Contains(err.Error(), "admission Deny needs a duty the API server can evaluate") {
		t.Errorf("a model with Deny on a related-object duty: want it refused, got %v", err)
	}

	// Deleting the model removes its policies and bindings.
	if n := countPolicies(t, rm.Name); n == 0 {
		t.Fatal("the model has no policies before its deletion")
	}
	deleteModel(t, rm.Name)
	if n := countPolicies(t, rm.Name); n != 0 {
		t.Errorf("%d policies and bindings left after the model was deleted", n)
	}
}

// TestAdmissionPolicyForKindInstalledLater: a model whose target kind is
// not installed has no policy; once the CRD is served, it gets one.
func TestAdmissionPolicyForKindInstalledLater(t *testing.T) {
	startManager(t)
	rm := &v1alpha1.ResponsibilityModel{
		ObjectMeta: metav1.ObjectMeta{Name: "admission-gadgets"},
		Spec: v1alpha1.ResponsibilityModelSpec{
			Service: "Gadgets", Provider: "Example", Admission: v1alpha1.AdmissionWarn,
			Targets: []v1alpha1.Target{{APIVersion: "admission.example.com/v1", Kind: "Gadget"}},
			Areas: []v1alpha1.Area{{Name: "Operations", Provider: "Runs gadgets", Customer: "Sizes gadgets",
				Duties: []v1alpha1.Duty{{Name: "sized", Rule: `has(object.spec.size)`, Message: "Set spec.size"}}}},
		},
	}
	applyModel(t, rm)
	waitAdmissionCondition(t, rm.Name, metav1.ConditionTrue, "No target kind is served yet")
	if n := countPolicies(t, rm.Name); n != 0 {
		t.Errorf("%d policies for a kind that is not installed", n)
	}
	crd := widgetCRD()
	crd.Name, crd.Spec.Group = "gadgets.admission.example.com", "admission.example.com"
	crd.Spec.Names = apiextensionsv1.CustomResourceDefinitionNames{Plural: "gadgets", Singular: "gadget", Kind: "Gadget", ListKind: "GadgetList"}
	if err := k8s.Create(context.Background(), crd); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = k8s.Delete(context.Background(), crd) })
	waitAdmissionCondition(t, rm.Name, metav1.ConditionTrue, "Warn: sized")
	eventually(t, 20*time.Second, func() error {
		p := &admissionregistrationv1.ValidatingAdmissionPolicy{}
		if err := k8s.Get(context.Background(), client.ObjectKey{Name: admission.PolicyName(rm.Name, v1alpha1.AdmissionWarn)}, p); err != nil {
			return err
		}
		if rules := p.Spec.MatchConstraints.ResourceRules; len(rules) != 1 || rules[0].Resources[0] != "gadgets" {
			return fmt.Errorf("the policy matches %+v, want gadgets", rules)
		}
		if p.Spec.FailurePolicy == nil || *p.Spec.FailurePolicy != admissionregistrationv1.Ignore || len(p.OwnerReferences) != 1 || p.OwnerReferences[0].Name != rm.Name {
			return fmt.Errorf("failurePolicy %v, owners %+v", p.Spec.FailurePolicy, p.OwnerReferences)
		}
		return nil
	})
}

// waitAdmissionCondition waits for a model's AdmissionPolicies condition.
func waitAdmissionCondition(t *testing.T, model string, status metav1.ConditionStatus, message string) {
	t.Helper()
	eventually(t, 20*time.Second, func() error {
		rm := &v1alpha1.ResponsibilityModel{}
		if err := k8s.Get(context.Background(), client.ObjectKey{Name: model}, rm); err != nil {
			return err
		}
		c := meta.FindStatusCondition(rm.Status.Conditions, v1alpha1.ConditionAdmissionPolicies)
		if c == nil || c.Status != status || !strings.Contains(c.Message, message) {
			return fmt.Errorf("AdmissionPolicies = %+v, want %s with %q", c, status, message)
		}
		return nil
	})
}

// countPolicies counts a model's policies and bindings.
func countPolicies(t *testing.T, model string) int {
	t.Helper()
	sel := client.MatchingLabels{v1alpha1.LabelModel: model}
	policies := &admissionregistrationv1.ValidatingAdmissionPolicyList{}
	bindings := &admissionregistrationv1.ValidatingAdmissionPolicyBindingList{}
	if err := k8s.List(context.Background(), policies, sel); err != nil {
		t.Fatal(err)
	}
	if err := k8s.List(context.Background(), bindings, sel); err != nil {
		t.Fatal(err)
	}
	return len(policies.Items) + len(bindings.Items)
}

// TestAdmissionWithTheCatalog is the tenant's view with the catalog's
// managed-databases model at admission Warn: applying CloudNativePG's own
// minimal example (docs/src/samples/cluster-example.yaml, vendored in
// test/upstream) prints the catalog's verdicts on it from the API server
// itself, the unmet tls-enforced duty and not the met superuser duty, and
// stores the object.
func TestAdmissionWithTheCatalog(t *testing.T) {
	startManager(t)
	ns := newNamespace(t, nil)
	kubectl := newKubectl(t)
	objs, err := samples.ReadFile(filepath.Join(repoRoot, "config", "catalog", "managed-databases.yaml"))
	if err != nil || len(objs) != 1 {
		t.Fatalf("config/catalog/managed-databases.yaml: %d objects, %v", len(objs), err)
	}
	rm := &v1alpha1.ResponsibilityModel{}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(objs[0].Object, rm); err != nil {
		t.Fatal(err)
	}
	rm.Spec.Admission = v1alpha1.AdmissionWarn
	applyModel(t, rm)
	waitAdmissionCondition(t, rm.Name, metav1.ConditionTrue, "Warn: tls-enforced, superuser-access-restricted")
	example, err := os.ReadFile(filepath.Join(repoRoot, "test", "upstream", "cloudnative-pg", "cluster-example.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, func() error {
		_, stderr, err := kubectl.run(string(example), "apply", "--dry-run=server", "-n", ns, "-f", "-")
		if err != nil {
			return fmt.Errorf("kubectl apply --dry-run=server: %w: %s", err, stderr)
		}
		if !strings.Contains(stderr, "tls-enforced") {
			return fmt.Errorf("no warning yet: %s", stderr)
		}
		return nil
	})
	stdout, stderr, err := kubectl.run(string(example), "apply", "-n", ns, "-f", "-")
	if err != nil || !strings.Contains(stdout, "cluster.postgresql.cnpg.io/cluster-example created") {
		t.Fatalf("kubectl apply of the upstream example: %v\n%s%s", err, stdout, stderr)
	}
	if !strings.Contains(stderr, `Customer duty tls-enforced (danubedata-managed-databases, area "Connection Security") is unmet: `) ||
		!strings.Contains(stderr, "hostnossl all all all reject") {
		t.Errorf("kubectl apply did not print the tls-enforced verdict of the corpus:\n%s", stderr)
	}
	for _, quiet := range []string{"superuser-access-restricted", "backup-scheduled", "database-ready"} {
		if strings.Contains(stderr, quiet) {
			t.Errorf("kubectl apply printed %s (met on this example, or the operator's alone):\n%s", quiet, stderr)
		}
	}
	t.Logf("kubectl apply of cloudnative-pg's cluster-example.yaml:\n%s%s", stderr, stdout)
}

// TestAdmissionTypeCheck: a rule that reads a field the target's schema
// does not have (a misspelling the operator's own evaluation can only call
// Unknown or unmet) is named in the AdmissionPolicies condition, from the
// type check kube-controller-manager runs on a policy's status.
func TestAdmissionTypeCheck(t *testing.T) {
	startManager(t)
	rm := admissionModel("admission-typo", "admission-typo")
	rm.Spec.Areas[0].Duties[1].Rule = `!object.spec.?enableSuperuserAcess.orValue(false) && object.spec.instances >= 1`
	rm.Spec.Areas[0].Duties[1].Admission = v1alpha1.AdmissionWarn
	rm.Spec.Areas[0].Duties[0].Rule = `object.spec.instancez > 1`
	applyModel(t, rm)
	waitAdmissionCondition(t, rm.Name, metav1.ConditionTrue, "Type-checking warnings")
	cur := &v1alpha1.ResponsibilityModel{}
	if err := k8s.Get(context.Background(), client.ObjectKey{Name: rm.Name}, cur); err != nil {
		t.Fatal(err)
	}
	c := meta.FindStatusCondition(cur.Status.Conditions, v1alpha1.ConditionAdmissionPolicies)
	if c.Reason != v1alpha1.ReasonPoliciesTypeWarnings || !strings.Contains(c.Message, "superuser-off: undefined field 'enableSuperuserAcess'; tls-enforced: undefined field 'instancez'.") {
		t.Errorf("AdmissionPolicies = %s: %s; want the misspelt field of tls-enforced named", c.Reason, c.Message)
	}
	t.Logf("%s: %s", c.Reason, c.Message)
}

package controller

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apiserver/pkg/admission/plugin/policy/validating"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/responsibility-operator/responsibility-operator/api/v1alpha1"
	"github.com/responsibility-operator/responsibility-operator/internal/admission"
	"github.com/responsibility-operator/responsibility-operator/internal/evaluate"
)

// +kubebuilder:rbac:groups=admissionregistration.k8s.io,resources=validatingadmissionpolicies;validatingadmissionpolicybindings,verbs=list;create;patch;delete

// AdmissionPolicies keeps each model's ValidatingAdmissionPolicies and
// bindings equal to the model (spec.admission, package admission): applied
// with server-side apply when the model, its resolved kinds or the excluded
// namespaces change, left alone when nothing did, and deleted with the model.
type AdmissionPolicies struct {
	// Client writes the policies; Reader lists them (uncached: the
	// operator does not watch them).
	Client client.Client
	Reader client.Reader
	// Excluded are the namespaces no policy answers in.
	Excluded []string
	// Operator is the user the operator's requests authenticate as.
	Operator string
	// TypeChecker, when set, type-checks each policy against the target
	// kinds' schemas as kube-controller-manager does for the policy's
	// status, so that a field a rule misspells is named in the model's
	// status, where its author looks.
	TypeChecker *validating.TypeChecker

	mu sync.Mutex
	// applied is what was last applied for each model, and what it said.
	applied map[string]appliedPolicies
}

// appliedPolicies is the hash of a model's applied policies and the
// condition they gave.
type appliedPolicies struct {
	hash  string
	state admissionState
}

// WhoAmI asks the API server which user the client's requests authenticate
// as (a SelfSubjectReview, which every authenticated user may create), so
// that the policies leave the operator's own writes out. An empty name and
// the error when it cannot say: the policies then evaluate every request.
func WhoAmI(ctx context.Context, c client.Client) (string, error) {
	review := &authenticationv1.SelfSubjectReview{}
	if err := c.Create(ctx, review); err != nil {
		return "", fmt.Errorf("ask the API server who the operator is (SelfSubjectReview): %w", err)
	}
	return review.Status.UserInfo.Username, nil
}

// admissionState is what the AdmissionPolicies condition says.
type admissionState struct {
	// requested is whether any duty has an admission action.
	requested bool
	ok        bool
	// reason is the True reason when not PoliciesApplied.
	reason  string
	message string
}

// Sync applies a model's policies and bindings and deletes those it no
// longer has. A model that does not compile keeps its last policies (as it
// keeps its last applied generation); m is then nil.
func (a *AdmissionPolicies) Sync(ctx context.Context, rm *v1alpha1.ResponsibilityModel, m *evaluate.Model, resources map[schema.GroupVersionKind]schema.GroupVersionResource) admissionState {
	if m == nil {
		return admissionState{}
	}
	duties := m.Admission()
	want := admission.Build(admission.Input{Model: rm, Compiled: m, Resources: resources, Excluded: a.Excluded, Operator: a.Operator})
	state := admissionState{requested: len(duties) > 0, ok: true, message: summary(duties, want)}
	hash, err := hashOf(want)
	if err != nil {
		return admissionState{requested: state.requested, message: err.Error()}
	}
	a.mu.Lock()
	last, same := a.applied[rm.Name]
	a.mu.Unlock()
	if same && last.hash == hash {
		return last.state
	}
	if err := a.apply(ctx, rm.Name, want); err != nil {
		return admissionState{requested: state.requested, message: truncate(err.Error(), maxConditionMessage)}
	}
	if warnings := a.typeCheck(want); warnings != "" {
		state.reason = v1alpha1.ReasonPoliciesTypeWarnings
		state.message = truncate(state.message+" Type-checking warnings (a field the target's schema does not have, or of another type): "+warnings+".", maxConditionMessage)
	}
	a.mu.Lock()
	if a.applied == nil {
		a.applied = map[string]appliedPolicies{}
	}
	a.applied[rm.Name] = appliedPolicies{hash: hash, state: state}
	a.mu.Unlock()
	return state
}

// typeCheck type-checks the policies against the schemas of the kinds they
// match, and names the duty and the problem of each warning:
// "tls-enforced: undefined field 'instancez'".
func (a *AdmissionPolicies) typeCheck(want admission.Policies) string {
	if a.TypeChecker == nil {
		return ""
	}
	var out []string
	for _, p := range want.Policies {
		for _, w := range a.TypeChecker.Check(p) {
			var i int
			if _, err := fmt.Sscanf(w.FieldRef, "spec.validations[%d]", &i); err != nil || i >= len(want.Duties[p.Name]) {
				continue
			}
			duty := want.Duties[p.Name][i]
			if strings.HasSuffix(duty, admission.WaiverNotice) {
				continue // the same rule as the duty's own validation
			}
			if strings.HasSuffix(w.FieldRef, "messageExpression") {
				duty += " (message)"
			}
			for _, problem := range celProblems(w.Warning) {
				out = append(out, duty+": "+problem)
			}
		}
	}
	slices.Sort(out)
	return strings.Join(slices.Compact(out), "; ")
}

// celProblems picks the messages out of a CEL compiler report
// ("ERROR: <input>:1:13: undefined field 'instancez'\n | ...\n | ...^"),
// which the type checker prefixes with the kind checked.
func celProblems(report string) []string {
	var out []string
	for line := range strings.SplitSeq(report, "\n") {
		_, rest, ok := strings.Cut(line, "ERROR: <input>:")
		if !ok {
			continue
		}
		// rest is "<line>:<column>: <message>".
		if parts := strings.SplitN(rest, ": ", 2); len(parts) == 2 {
			out = append(out, parts[1])
		}
	}
	if len(out) == 0 {
		out = append(out, strings.Join(strings.Fields(report), " "))
	}
	return out
}

// apply writes want and deletes the model's other policies and bindings.
func (a *AdmissionPolicies) apply(ctx context.Context, model string, want admission.Policies) error {
	keep := map[string]bool{}
	for _, p := range want.Policies {
		keep["p/"+p.Name] = true
		if err := a.applyObject(ctx, p); err != nil {
			return fmt.Errorf("apply ValidatingAdmissionPolicy %s: %w", p.Name, err)
		}
	}
	for _, b := range want.Bindings {
		keep["b/"+b.Name] = true
		if err := a.applyObject(ctx, b); err != nil {
			return fmt.Errorf("apply ValidatingAdmissionPolicyBinding %s: %w", b.Name, err)
		}
	}
	return a.deleteExcept(ctx, model, keep)
}

// applyObject applies a whole object with server-side apply, as the
// operator's field manager.
func (a *AdmissionPolicies) applyObject(ctx context.Context, obj client.Object) error {
	content, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		return fmt.Errorf("convert: %w", err)
	}
	u := &unstructured.Unstructured{Object: content}
	unstructured.RemoveNestedField(u.Object, "metadata", "creationTimestamp")
	unstructured.RemoveNestedField(u.Object, "status")
	if err := a.Client.Apply(ctx, client.ApplyConfigurationFromUnstructured(u), client.FieldOwner(v1alpha1.FieldManager), client.ForceOwnership); err != nil {
		return fmt.Errorf("server-side apply: %w", err)
	}
	return nil
}

// Delete removes a model's policies and bindings (a deleting model).
func (a *AdmissionPolicies) Delete(ctx context.Context, model string) error {
	if err := a.deleteExcept(ctx, model, nil); err != nil {
		return err
	}
	a.mu.Lock()
	delete(a.applied, model)
	a.mu.Unlock()
	return nil
}

// deleteExcept deletes the model's bindings, then its policies, but those
// in keep ("p/<name>", "b/<name>").
func (a *AdmissionPolicies) deleteExcept(ctx context.Context, model string, keep map[string]bool) error {
	sel := client.MatchingLabels{v1alpha1.LabelModel: model}
	bindings := &admissionregistrationv1.ValidatingAdmissionPolicyBindingList{}
	if err := a.Reader.List(ctx, bindings, sel); err != nil {
		return fmt.Errorf("list the ValidatingAdmissionPolicyBindings of model %s: %w", model, err)
	}
	for i := range bindings.Items {
		if b := &bindings.Items[i]; !keep["b/"+b.Name] {
			if err := a.Client.Delete(ctx, b); err != nil && !apierrors.IsNotFound(err) {
				return fmt.Errorf("delete ValidatingAdmissionPolicyBinding %s: %w", b.Name, err)
			}
		}
	}
	policies := &admissionregistrationv1.ValidatingAdmissionPolicyList{}
	if err := a.Reader.List(ctx, policies, sel); err != nil {
		return fmt.Errorf("list the ValidatingAdmissionPolicies of model %s: %w", model, err)
	}
	for i := range policies.Items {
		if p := &policies.Items[i]; !keep["p/"+p.Name] {
			if err := a.Client.Delete(ctx, p); err != nil && !apierrors.IsNotFound(err) {
				return fmt.Errorf("delete ValidatingAdmissionPolicy %s: %w", p.Name, err)
			}
		}
	}
	return nil
}

// summary says what the API server answers for and what it leaves to the
// operator.
func summary(duties []evaluate.AdmissionDuty, want admission.Policies) string {
	by := map[v1alpha1.AdmissionAction][]string{}
	var left []string
	for _, d := range duties {
		if d.NotEvaluable != "" {
			left = append(left, fmt.Sprintf("%s (%s)", d.Name, d.NotEvaluable))
			continue
		}
		by[d.Action] = append(by[d.Action], d.Name)
	}
	var parts []string
	for _, action := range []v1alpha1.AdmissionAction{v1alpha1.AdmissionDeny, v1alpha1.AdmissionWarn, v1alpha1.AdmissionAudit} {
		if names := by[action]; len(names) > 0 {
			parts = append(parts, fmt.Sprintf("%s: %s", action, strings.Join(names, ", ")))
		}
	}
	msg := "The API server answers at admission. " + strings.Join(parts, "; ") + "."
	if len(parts) == 0 {
		msg = "No duty can be answered at admission."
	} else if len(want.Policies) == 0 {
		msg = "No target kind is served yet: the policies are created when one is."
	}
	if len(left) > 0 {
		slices.Sort(left)
		msg += " Evaluated by the operator only, after the fact: " + strings.Join(left, ", ") + "."
	}
	return msg
}

// hashOf is a digest of the desired objects.
func hashOf(want admission.Policies) (string, error) {
	raw, err := json.Marshal(want)
	if err != nil {
		return "", fmt.Errorf("encode the admission policies: %w", err)
	}
	sum := sha256.Sum256(raw)
	return hex.EncodeToString(sum[:]), nil
}

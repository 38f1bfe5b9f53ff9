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

	mu sync.Mutex
	// applied is the hash of what was last applied for each model.
	applied map[string]string
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
	message   string
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
	same := a.applied[rm.Name] == hash
	a.mu.Unlock()
	if same {
		return state
	}
	if err := a.apply(ctx, rm.Name, want); err != nil {
		return admissionState{requested: state.requested, message: truncate(err.Error(), maxConditionMessage)}
	}
	a.mu.Lock()
	if a.applied == nil {
		a.applied = map[string]string{}
	}
	a.applied[rm.Name] = hash
	a.mu.Unlock()
	return state
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

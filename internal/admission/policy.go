// Package admission turns a model's duties into Kubernetes
// ValidatingAdmissionPolicies, so that the API server itself answers a
// tenant's `kubectl apply` with a warning or a refusal when a duty is unmet,
// with no webhook of this project in the request path (spec.admission).
//
// A model gets one policy per admission action (Warn, Deny, Audit) that one
// of its duties has, each with one validation per duty, and one binding per
// target kind with the target's selectors and the excluded namespaces. The
// duties' rules run as the operator runs them, on object and
// namespaceObject, with the model's parameters written in as literals
// (evaluate.AdmissionDuty). Duties that read related objects or `now` are
// left to the operator.
//
// Semantics, documented in docs/reference.md:
//   - A waived duty (responsibility.io/waive.<duty> on the object, where the
//     model allows waivers) passes, and the Warn policy says it is waived.
//   - Deny and Audit answer a create, and an update that makes an unmet duty
//     of a met one: an object that was already unmet stays updatable, so its
//     operator (CloudNativePG's, say) is never locked out of it. Warn answers
//     every create and update.
//   - The operator's own writes (its annotations) are not evaluated.
//   - failurePolicy Ignore: an expression that fails to evaluate (a field of
//     another type than the rule expects) admits the object, as the operator
//     calls that duty Unknown, not Unmet.
package admission

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/utils/ptr"

	"github.com/responsibility-operator/responsibility-operator/api/v1alpha1"
	"github.com/responsibility-operator/responsibility-operator/internal/evaluate"
)

// Input is what the policies of one model are made from.
type Input struct {
	// Model is the model as stored: its targets' selectors and its UID for
	// the owner reference.
	Model *v1alpha1.ResponsibilityModel
	// Compiled is the model compiled (evaluate.Compile).
	Compiled *evaluate.Model
	// Resources are the resolved target kinds' resources; a target whose
	// kind is not served gets no binding until it is.
	Resources map[schema.GroupVersionKind]schema.GroupVersionResource
	// Excluded are the namespaces the operator never writes; no policy
	// answers in them either.
	Excluded []string
	// Operator is the user the operator's requests authenticate as; its own
	// writes are not evaluated. Empty: every request is.
	Operator string
}

// Policies are the policies and bindings of one model.
type Policies struct {
	Policies []*admissionregistrationv1.ValidatingAdmissionPolicy
	Bindings []*admissionregistrationv1.ValidatingAdmissionPolicyBinding
	// Duties name the duty of each validation, by policy name and index.
	Duties map[string][]string `json:"-"`
}

// actions are the admission actions in the order their policies are made.
var actions = []v1alpha1.AdmissionAction{v1alpha1.AdmissionWarn, v1alpha1.AdmissionDeny, v1alpha1.AdmissionAudit}

// PolicyName is the name of a model's policy for an action, under the
// operator's domain as a webhook's name would be.
func PolicyName(model string, action v1alpha1.AdmissionAction) string {
	return model + "." + strings.ToLower(string(action)) + ".responsibility.io"
}

// Build makes the policies and bindings of a model: none when no duty has an
// admission action, or no target kind is served.
func Build(in Input) Policies {
	var out Policies
	duties := in.Compiled.Admission()
	rules, targets := resourceRules(in)
	if len(duties) == 0 || len(rules) == 0 {
		return out
	}
	out.Duties = map[string][]string{}
	for _, action := range actions {
		validations, names := validationsFor(in, duties, action)
		if len(validations) == 0 {
			continue
		}
		name := PolicyName(in.Model.Name, action)
		out.Duties[name] = names
		out.Policies = append(out.Policies, &admissionregistrationv1.ValidatingAdmissionPolicy{
			TypeMeta:   metav1.TypeMeta{APIVersion: admissionregistrationv1.SchemeGroupVersion.String(), Kind: "ValidatingAdmissionPolicy"},
			ObjectMeta: meta(in.Model, name),
			Spec: admissionregistrationv1.ValidatingAdmissionPolicySpec{
				FailurePolicy:    ptr.To(admissionregistrationv1.Ignore),
				MatchConstraints: &admissionregistrationv1.MatchResources{ResourceRules: rules},
				MatchConditions:  matchConditions(in.Operator),
				Validations:      validations,
			},
		})
		for i, t := range targets {
			out.Bindings = append(out.Bindings, &admissionregistrationv1.ValidatingAdmissionPolicyBinding{
				TypeMeta:   metav1.TypeMeta{APIVersion: admissionregistrationv1.SchemeGroupVersion.String(), Kind: "ValidatingAdmissionPolicyBinding"},
				ObjectMeta: meta(in.Model, name+"."+strconv.Itoa(i)),
				Spec: admissionregistrationv1.ValidatingAdmissionPolicyBindingSpec{
					PolicyName:        name,
					ValidationActions: []admissionregistrationv1.ValidationAction{admissionregistrationv1.ValidationAction(action)},
					MatchResources: &admissionregistrationv1.MatchResources{
						ResourceRules:     []admissionregistrationv1.NamedRuleWithOperations{t.rule},
						ObjectSelector:    t.selector,
						NamespaceSelector: namespaceSelector(t.namespaceSelector, in.Excluded),
					},
				},
			})
		}
	}
	return out
}

// meta is the metadata of a generated object: labelled with its model and
// owned by it (the garbage collector removes it with the model; the
// operator's finalizer does too, for clusters without one).
func meta(rm *v1alpha1.ResponsibilityModel, name string) metav1.ObjectMeta {
	return metav1.ObjectMeta{
		Name:   name,
		Labels: map[string]string{v1alpha1.LabelModel: rm.Name, "app.kubernetes.io/managed-by": v1alpha1.FieldManager},
		OwnerReferences: []metav1.OwnerReference{{
			APIVersion: v1alpha1.GroupVersion.String(), Kind: "ResponsibilityModel", Name: rm.Name, UID: rm.UID,
			BlockOwnerDeletion: ptr.To(false),
		}},
	}
}

// target is one target kind's binding.
type target struct {
	rule                        admissionregistrationv1.NamedRuleWithOperations
	selector, namespaceSelector *metav1.LabelSelector
}

// resourceRules are the rules of the served target kinds: the policy's, and
// one per target for its binding.
func resourceRules(in Input) ([]admissionregistrationv1.NamedRuleWithOperations, []target) {
	var rules []admissionregistrationv1.NamedRuleWithOperations
	var targets []target
	seen := map[schema.GroupVersionResource]bool{}
	for _, t := range in.Model.Spec.Targets {
		gv, err := schema.ParseGroupVersion(t.APIVersion)
		if err != nil {
			continue
		}
		gvr, ok := in.Resources[gv.WithKind(t.Kind)]
		if !ok {
			continue
		}
		rule := admissionregistrationv1.NamedRuleWithOperations{RuleWithOperations: admissionregistrationv1.RuleWithOperations{
			Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create, admissionregistrationv1.Update},
			Rule: admissionregistrationv1.Rule{
				APIGroups: []string{gvr.Group}, APIVersions: []string{gvr.Version}, Resources: []string{gvr.Resource},
			},
		}}
		if !seen[gvr] {
			seen[gvr] = true
			rules = append(rules, rule)
		}
		targets = append(targets, target{rule: rule, selector: t.Selector, namespaceSelector: t.NamespaceSelector})
	}
	return rules, targets
}

// namespaceSelector is a target's namespace selector that also leaves out
// the excluded namespaces. A binding with no selector matches every
// namespace.
func namespaceSelector(sel *metav1.LabelSelector, excluded []string) *metav1.LabelSelector {
	out := &metav1.LabelSelector{}
	if sel != nil {
		out = sel.DeepCopy()
	}
	if len(excluded) > 0 {
		out.MatchExpressions = append(out.MatchExpressions, metav1.LabelSelectorRequirement{
			Key: "kubernetes.io/metadata.name", Operator: metav1.LabelSelectorOpNotIn, Values: slices.Sorted(slices.Values(excluded)),
		})
	}
	return out
}

// matchConditions leave the operator's own requests out: it writes only
// its annotations, and a warning on each of its writes would be noise.
func matchConditions(operator string) []admissionregistrationv1.MatchCondition {
	if operator == "" {
		return nil
	}
	return []admissionregistrationv1.MatchCondition{{
		Name:       "not-the-operator",
		Expression: "request.userInfo.username != " + strconv.Quote(operator),
	}}
}

// validationsFor are the validations of a policy: one per evaluable duty of
// the action, and in the Warn policy one per waivable duty of any action
// that tells a waived object it is waived.
func validationsFor(in Input, duties []evaluate.AdmissionDuty, action v1alpha1.AdmissionAction) ([]admissionregistrationv1.Validation, []string) {
	var out []admissionregistrationv1.Validation
	var names []string
	m := in.Compiled
	for _, d := range duties {
		if d.NotEvaluable != "" || d.Action != action {
			continue
		}
		passes := []string{"(" + d.Rule + ")"}
		if m.AnnotationWaivers {
			passes = append(passes, waived(d.Name, m.WaiverExpiryRequired))
		}
		if action != v1alpha1.AdmissionWarn {
			// Deny and Audit answer only the request that breaks the duty.
			passes = append(passes, "(request.operation == 'UPDATE' && !("+d.OldRule+"))")
		}
		v := admissionregistrationv1.Validation{
			Expression: strings.Join(passes, " || "),
			Message:    truncate(prefix(in.Model.Name, d) + staticMessage(d, m.AnnotationWaivers)),
		}
		if d.MessageExpression != "" {
			// The message ends with one period, as the static one does.
			v.MessageExpression = strconv.Quote(prefix(in.Model.Name, d)) + " + [" + d.MessageExpression + "].map(m, m.endsWith('.') ? m : m + '.')[0]" +
				waiverHint(d.Name, m.AnnotationWaivers, true)
		}
		out = append(out, v)
		names = append(names, d.Name)
	}
	if action == v1alpha1.AdmissionWarn && m.AnnotationWaivers {
		for _, d := range duties {
			if d.NotEvaluable != "" {
				continue
			}
			key := v1alpha1.AnnotationWaivePrefix + d.Name
			out = append(out, admissionregistrationv1.Validation{
				Expression: "!(" + waived(d.Name, m.WaiverExpiryRequired) + " && !(" + d.Rule + "))",
				Message:    truncate(fmt.Sprintf("Customer duty %s (%s, area %q) is unmet and waived on this object by its annotation %s.", d.Name, in.Model.Name, d.Area, key)),
				MessageExpression: strconv.Quote(fmt.Sprintf("Customer duty %s (%s, area %q) is unmet and waived on this object: ", d.Name, in.Model.Name, d.Area)) +
					" + object.metadata.annotations[" + strconv.Quote(key) + "]",
			})
			names = append(names, d.Name+WaiverNotice)
		}
	}
	return out, names
}

// waived is true when the object carries a waiver of the duty; with
// expiryRequired, only one that states an expiry (the API server has no
// clock to compare it with: the operator still turns the duty unmet when it
// passes).
func waived(duty string, expiryRequired bool) string {
	key := strconv.Quote(v1alpha1.AnnotationWaivePrefix + duty)
	expr := "(has(object.metadata.annotations) && " + key + " in object.metadata.annotations"
	if expiryRequired {
		expr += " && object.metadata.annotations[" + key + "].startsWith(" + strconv.Quote(v1alpha1.WaiverExpiresPrefix) + ")"
	}
	return expr + ")"
}

// prefix names the duty as the operator's events do.
func prefix(model string, d evaluate.AdmissionDuty) string {
	return fmt.Sprintf("Customer duty %s (%s, area %q) is unmet: ", d.Name, model, d.Area)
}

// staticMessage is the duty's message, ending with one period, with the
// waiver hint: the words of the operator's CustomerDutyUnmet event.
func staticMessage(d evaluate.AdmissionDuty, waivable bool) string {
	msg := strings.TrimSuffix(d.Message, ".")
	if msg == "" {
		msg = "see kubectl responsibility explain"
	}
	return msg + "." + waiverHint(d.Name, waivable, false)
}

// waiverHint tells the tenant how to waive the duty, as a string or as a CEL
// string concatenation.
func waiverHint(duty string, waivable, expr bool) string {
	if !waivable {
		return ""
	}
	hint := fmt.Sprintf(" Fix it, or waive it with the annotation %s%s: \"<reason>\".", v1alpha1.AnnotationWaivePrefix, duty)
	if expr {
		return " + " + strconv.Quote(hint)
	}
	return hint
}

// WaiverNotice ends the name of a waiver notice's validation in
// Policies.Duties.
const WaiverNotice = " (its waiver notice)"

// maxMessage is the longest message a validation may have.
const maxMessage = 1024

func truncate(s string) string {
	if len(s) <= maxMessage {
		return s
	}
	return s[:maxMessage-3] + "..."
}

// Package webhook holds the admission webhooks of the API: the
// ResponsibilityModel's compiles every rule, so that `kubectl apply` of a
// model with a broken rule fails with the CEL error, the duty and the field
// path; the DutyWaiver's records who granted a waiver and warns of one that
// would not apply.
package webhook

import (
	"context"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/util/validation/field"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/responsibility-operator/responsibility-operator/api/v1alpha1"
	"github.com/responsibility-operator/responsibility-operator/internal/evaluate"
)

// ValidatePath is where the API server sends ResponsibilityModel admission
// reviews (controller-runtime's convention for the group, version and kind).
const ValidatePath = "/validate-responsibility-io-v1alpha1-responsibilitymodel"

// +kubebuilder:webhook:path=/validate-responsibility-io-v1alpha1-responsibilitymodel,mutating=false,failurePolicy=fail,sideEffects=None,groups=responsibility.io,resources=responsibilitymodels,verbs=create;update,versions=v1alpha1,name=vresponsibilitymodel.responsibility.io,admissionReviewVersions=v1,timeoutSeconds=10

// Validator refuses a model whose rules do not compile, whose rules'
// estimated cost exceeds the limit, or whose selectors do not parse — the
// same checks the controller runs, so what the webhook admits the
// controller can apply.
type Validator struct{}

var _ admission.Validator[*v1alpha1.ResponsibilityModel] = Validator{}

// Setup registers the webhooks with a manager's webhook server: the
// model's validation, and the DutyWaiver's grant recording and warnings.
func Setup(mgr ctrl.Manager) error {
	if err := ctrl.NewWebhookManagedBy(mgr, &v1alpha1.ResponsibilityModel{}).
		WithValidator(Validator{}).
		Complete(); err != nil {
		return fmt.Errorf("set up the ResponsibilityModel webhook: %w", err)
	}
	if err := ctrl.NewWebhookManagedBy(mgr, &v1alpha1.DutyWaiver{}).
		WithDefaulter(WaiverGrantor{}).
		WithValidator(WaiverChecker{Reader: mgr.GetAPIReader()}).
		Complete(); err != nil {
		return fmt.Errorf("set up the DutyWaiver webhooks: %w", err)
	}
	return nil
}

// ValidateCreate compiles a new model.
func (Validator) ValidateCreate(_ context.Context, rm *v1alpha1.ResponsibilityModel) (admission.Warnings, error) {
	return nil, validate(rm)
}

// ValidateUpdate compiles the model's new spec. An update that only removes
// a finalizer or touches metadata of a model that no longer compiles (say,
// after an operator upgrade with a stricter CEL environment) must not be
// blocked, so an unchanged spec is always admitted.
func (Validator) ValidateUpdate(_ context.Context, oldRM, newRM *v1alpha1.ResponsibilityModel) (admission.Warnings, error) {
	if oldRM.Generation == newRM.Generation && oldRM.Generation != 0 {
		return nil, nil
	}
	return nil, validate(newRM)
}

// ValidateDelete admits every deletion.
func (Validator) ValidateDelete(context.Context, *v1alpha1.ResponsibilityModel) (admission.Warnings, error) {
	return nil, nil
}

func validate(rm *v1alpha1.ResponsibilityModel) error {
	_, err := evaluate.Compile(rm)
	if err == nil {
		return nil
	}
	var list field.ErrorList
	for _, fe := range evaluate.FieldErrors(err) {
		list = append(list, &field.Error{Type: field.ErrorTypeInvalid, Field: fe.Path, BadValue: field.OmitValueType{}, Detail: fe.Message})
	}
	if len(list) == 0 {
		return apierrors.NewBadRequest(err.Error())
	}
	return apierrors.NewInvalid(v1alpha1.GroupVersion.WithKind("ResponsibilityModel").GroupKind(), rm.Name, list)
}

package webhook

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/responsibility-operator/responsibility-operator/api/v1alpha1"
	"github.com/responsibility-operator/responsibility-operator/internal/evaluate"
)

// +kubebuilder:webhook:path=/mutate-responsibility-io-v1alpha1-dutywaiver,mutating=true,failurePolicy=fail,sideEffects=None,groups=responsibility.io,resources=dutywaivers,verbs=create;update,versions=v1alpha1,name=mdutywaiver.responsibility.io,admissionReviewVersions=v1,timeoutSeconds=10
// +kubebuilder:webhook:path=/validate-responsibility-io-v1alpha1-dutywaiver,mutating=false,failurePolicy=fail,sideEffects=None,groups=responsibility.io,resources=dutywaivers,verbs=create;update,versions=v1alpha1,name=vdutywaiver.responsibility.io,admissionReviewVersions=v1,timeoutSeconds=10

// WaiverGrantor records who granted a DutyWaiver: spec.grantedBy is the
// user whose request created the waiver or changed its spec, whatever the
// request carried there; a request that changes nothing else keeps the
// grant it had.
type WaiverGrantor struct {
	// Now is the clock; nil is time.Now.
	Now func() time.Time
}

var _ admission.Defaulter[*v1alpha1.DutyWaiver] = WaiverGrantor{}

// Default sets spec.grantedBy from the admission request.
func (g WaiverGrantor) Default(ctx context.Context, dw *v1alpha1.DutyWaiver) error {
	req, err := admission.RequestFromContext(ctx)
	if err != nil {
		return apierrors.NewInternalError(fmt.Errorf("admission request missing: %w", err))
	}
	if req.Operation == admissionv1.Update && len(req.OldObject.Raw) > 0 {
		old := &v1alpha1.DutyWaiver{}
		if err := json.Unmarshal(req.OldObject.Raw, old); err != nil {
			return apierrors.NewBadRequest(fmt.Sprintf("decode the waiver being updated: %v", err))
		}
		if sameExceptGrant(&old.Spec, &dw.Spec) {
			dw.Spec.GrantedBy = old.Spec.GrantedBy
			return nil
		}
	}
	now := time.Now
	if g.Now != nil {
		now = g.Now
	}
	dw.Spec.GrantedBy = &v1alpha1.WaiverGrant{User: req.UserInfo.Username, Time: metav1.NewTime(now().UTC().Truncate(time.Second))}
	return nil
}

// sameExceptGrant reports whether two specs differ at most in grantedBy.
func sameExceptGrant(a, b *v1alpha1.DutyWaiverSpec) bool {
	x, y := *a, *b
	x.GrantedBy, y.GrantedBy = nil, nil
	return equality.Semantic.DeepEqual(x, y)
}

// WaiverChecker warns, at kubectl apply, of a DutyWaiver that would not
// apply: a model that does not exist or does not accept DutyWaivers, a duty
// the model lacks, an expiry the model does not allow or already past. It
// warns rather than refuses, since the model may come later; the waiver's
// status and events keep saying so.
type WaiverChecker struct {
	// Reader reads models: the API server itself (the manager's
	// APIReader), since every replica serves the webhook and only the
	// leader's cache watches models; a GET per waiver admitted is cheap.
	Reader client.Reader
}

var _ admission.Validator[*v1alpha1.DutyWaiver] = WaiverChecker{}

// ValidateCreate warns of what would keep a new waiver from applying.
func (c WaiverChecker) ValidateCreate(ctx context.Context, dw *v1alpha1.DutyWaiver) (admission.Warnings, error) {
	return c.warnings(ctx, dw)
}

// ValidateUpdate warns of what would keep a changed waiver from applying.
func (c WaiverChecker) ValidateUpdate(ctx context.Context, oldDW, newDW *v1alpha1.DutyWaiver) (admission.Warnings, error) {
	if oldDW.Generation == newDW.Generation && oldDW.Generation != 0 {
		return nil, nil
	}
	return c.warnings(ctx, newDW)
}

// ValidateDelete admits every deletion.
func (WaiverChecker) ValidateDelete(context.Context, *v1alpha1.DutyWaiver) (admission.Warnings, error) {
	return nil, nil
}

func (c WaiverChecker) warnings(ctx context.Context, dw *v1alpha1.DutyWaiver) (admission.Warnings, error) {
	w, err := evaluate.CompileWaiver(dw)
	if err != nil {
		return nil, apierrors.NewBadRequest(err.Error())
	}
	rm := &v1alpha1.ResponsibilityModel{}
	if err := c.Reader.Get(ctx, types.NamespacedName{Name: dw.Spec.Model}, rm); err != nil {
		if apierrors.IsNotFound(err) {
			return admission.Warnings{fmt.Sprintf("no ResponsibilityModel is named %q: the waiver applies to nothing until one is", dw.Spec.Model)}, nil
		}
		return admission.Warnings{fmt.Sprintf("could not read model %s to check the waiver: %v", dw.Spec.Model, err)}, nil
	}
	m, err := evaluate.Compile(rm)
	if err != nil {
		return admission.Warnings{fmt.Sprintf("model %s does not compile: the waiver applies once it does", dw.Spec.Model)}, nil //nolint:nilerr // a warning, not a refusal
	}
	v := evaluate.Judge(m, w, time.Now())
	var out admission.Warnings
	if v.Refused != "" {
		out = append(out, "the waiver does not apply: "+v.Refused)
	}
	if v.Expired {
		out = append(out, "the waiver's spec.expires is in the past: it applies to nothing")
	}
	for _, d := range v.MissingDuties {
		out = append(out, fmt.Sprintf("model %s has no duty named %q (kubectl responsibility explain %s lists them)", dw.Spec.Model, d, dw.Spec.Model))
	}
	return out, nil
}

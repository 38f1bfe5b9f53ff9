package controller

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/responsibility-operator/responsibility-operator/api/v1alpha1"
	"github.com/responsibility-operator/responsibility-operator/internal/evaluate"
	"github.com/responsibility-operator/responsibility-operator/internal/ledger"
	"github.com/responsibility-operator/responsibility-operator/internal/registry"
)

// +kubebuilder:rbac:groups=responsibility.io,resources=dutywaivers,verbs=get;list;watch
// +kubebuilder:rbac:groups=responsibility.io,resources=dutywaivers/status,verbs=get;patch

// waiverModelIndex is the cache's index of DutyWaivers by spec.model.
const waiverModelIndex = "spec.model"

// maxWaivedObjectsListed caps status.objects of a DutyWaiver.
const maxWaivedObjectsListed = 100

// WaiverReconciler keeps a DutyWaiver's status equal to what the model says
// of it (Accepted), whether it applies now (Active, Expired), and on which
// objects the workload reconciler found it waiving a duty; it sends an event
// when the waiver stops or starts being accepted and when it expires.
type WaiverReconciler struct {
	// Client reads waivers and models from the cache and patches status.
	Client   client.Client
	Registry *registry.Registry
	Waived   *ledger.Waived
	Events   *EventEmitter
}

// Reconcile brings one DutyWaiver's status up to date.
func (r *WaiverReconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	dw := &v1alpha1.DutyWaiver{}
	if err := r.Client.Get(ctx, req.NamespacedName, dw); err != nil {
		if apierrors.IsNotFound(err) {
			return reconcile.Result{}, nil
		}
		return reconcile.Result{}, fmt.Errorf("get DutyWaiver %s: %w", req.NamespacedName, err)
	}
	now := time.Now()
	verdict, pending, err := r.judge(ctx, dw, now)
	if err != nil || pending {
		// A model not reconciled yet is no verdict: its reconcile enqueues
		// this waiver (ModelReconciler.Changed) when it is applied.
		return reconcile.Result{RequeueAfter: modelPendingRetry}, err
	}
	before := dw.Status.DeepCopy()
	setWaiverStatus(&dw.Status, dw, verdict)
	dw.Status.WaivedObjects, dw.Status.Objects = r.Waived.Objects(req.NamespacedName, maxWaivedObjectsListed)
	if len(dw.Status.Objects) == 0 {
		dw.Status.Objects = nil
	}
	r.waiverEvents(dw, before, verdict)
	if !equality.Semantic.DeepEqual(before, &dw.Status) {
		patch := client.MergeFrom(&v1alpha1.DutyWaiver{ObjectMeta: dw.ObjectMeta, Status: *before})
		if err := r.Client.Status().Patch(ctx, dw, patch); err != nil {
			if apierrors.IsNotFound(err) {
				return reconcile.Result{}, nil
			}
			return reconcile.Result{}, fmt.Errorf("update status of DutyWaiver %s: %w", req.NamespacedName, err)
		}
	}
	if verdict.NextChange.IsZero() {
		return reconcile.Result{}, nil
	}
	// A timer may fire a moment early: the next reconcile then finds the
	// same instant ahead and waits again.
	return reconcile.Result{RequeueAfter: max(verdict.NextChange.Sub(now), time.Millisecond)}, nil
}

// judge compiles a waiver and asks its model what it makes of it; pending
// is true while the model exists but was not reconciled yet.
func (r *WaiverReconciler) judge(ctx context.Context, dw *v1alpha1.DutyWaiver, now time.Time) (v evaluate.WaiverVerdict, pending bool, err error) {
	w, err := evaluate.CompileWaiver(dw)
	if err != nil {
		// The waiver's own mistake, for its status: no error to retry.
		return evaluate.WaiverVerdict{Refused: err.Error(), Reason: v1alpha1.ReasonSelectorInvalid}, false, nil //nolint:nilerr // reported in the status
	}
	m := r.Registry.Get(dw.Spec.Model)
	if m == nil {
		rm := &v1alpha1.ResponsibilityModel{}
		err := r.Client.Get(ctx, types.NamespacedName{Name: dw.Spec.Model}, rm)
		switch {
		case err == nil && rm.Status.ObservedGeneration != rm.Generation:
			return v, true, nil
		case err == nil:
			// It exists but no generation of it applies (a rule that does
			// not compile): nothing it says can be waived yet.
			v = evaluate.Judge(nil, w, now)
			v.Refused, v.Reason = fmt.Sprintf("model %s is not applied; see its Ready condition", dw.Spec.Model), v1alpha1.ReasonModelNotReady
			return v, false, nil
		case !apierrors.IsNotFound(err):
			return v, false, fmt.Errorf("get model %s of DutyWaiver %s/%s: %w", dw.Spec.Model, dw.Namespace, dw.Name, err)
		}
	}
	return evaluate.Judge(m, w, now), false, nil
}

// modelPendingRetry is how soon a waiver whose model was not reconciled yet
// is looked at again, should no model event come first.
const modelPendingRetry = 2 * time.Second

// setWaiverStatus sets the conditions and expiry of a waiver's status from
// its model's verdict.
func setWaiverStatus(st *v1alpha1.DutyWaiverStatus, dw *v1alpha1.DutyWaiver, v evaluate.WaiverVerdict) {
	gen := dw.Generation
	st.ObservedGeneration = gen
	st.Expired = v.Expired
	accepted := metav1.Condition{Type: v1alpha1.ConditionWaiverAccepted, ObservedGeneration: gen, Status: metav1.ConditionTrue,
		Reason: v1alpha1.ReasonWaiverAccepted, Message: fmt.Sprintf("Model %s accepts this waiver.", dw.Spec.Model)}
	active := metav1.Condition{Type: v1alpha1.ConditionWaiverActive, ObservedGeneration: gen, Status: metav1.ConditionTrue,
		Reason: v1alpha1.ReasonWaiverActive, Message: activeMessage(dw, v)}
	switch {
	case v.Refused != "":
		accepted.Status, accepted.Reason, accepted.Message = metav1.ConditionFalse, v.Reason, sentence(v.Refused)+" "+waiverFix(dw, v.Reason)
	case len(v.MissingDuties) > 0:
		accepted.Status, accepted.Reason = metav1.ConditionFalse, v1alpha1.ReasonDutyNotFound
		accepted.Message = fmt.Sprintf("Model %s has no duty named %s. %s", dw.Spec.Model, strings.Join(v.MissingDuties, ", "), waiverFix(dw, v1alpha1.ReasonDutyNotFound))
	}
	switch {
	case v.Expired:
		active.Status, active.Reason = metav1.ConditionFalse, v1alpha1.ReasonWaiverExpired
		active.Message = fmt.Sprintf("The waiver expired at %s; the duties it waived are evaluated as they are.", dw.Spec.Expires.UTC().Format(time.RFC3339))
	case v.Refused != "" || len(v.MissingDuties) == len(dw.Spec.Duties):
		active.Status, active.Reason = metav1.ConditionFalse, v1alpha1.ReasonWaiverNotAccepted
		active.Message = "The waiver applies to no duty; see the Accepted condition."
	}
	meta.SetStatusCondition(&st.Conditions, accepted)
	meta.SetStatusCondition(&st.Conditions, active)
}

// activeMessage says what an active waiver waives, and until when.
func activeMessage(dw *v1alpha1.DutyWaiver, v evaluate.WaiverVerdict) string {
	duties := make([]string, 0, len(dw.Spec.Duties))
	for _, d := range dw.Spec.Duties {
		if !slices.Contains(v.MissingDuties, d) {
			duties = append(duties, d)
		}
	}
	until := "with no expiry"
	if dw.Spec.Expires != nil {
		until = "until " + dw.Spec.Expires.UTC().Format(time.RFC3339)
	}
	return fmt.Sprintf("Waives %s of model %s on the selected objects where unmet, %s.", strings.Join(duties, ", "), dw.Spec.Model, until)
}

// waiverFix says how to make a waiver that is not accepted apply.
func waiverFix(dw *v1alpha1.DutyWaiver, reason string) string {
	switch reason {
	case v1alpha1.ReasonModelNotFound:
		return "Name an existing model in spec.model (kubectl get responsibilitymodels)."
	case v1alpha1.ReasonModelNotReady:
		return "The waiver applies once the model does."
	case v1alpha1.ReasonDutyNotFound:
		return fmt.Sprintf("Correct or remove those names in spec.duties (kubectl responsibility explain %s lists the duties); the waiver applies to the others.", dw.Spec.Model)
	case v1alpha1.ReasonWaiversNotAccepted:
		return "Only a change of the model's spec.waivers to Allowed or DutyWaivers makes this waiver apply."
	case v1alpha1.ReasonExpiryNotAllowed:
		return "Set spec.expires within the model's spec.waiverExpiry."
	case v1alpha1.ReasonSelectorInvalid:
		return "Correct spec.objects.selector."
	}
	return ""
}

// waiverEvents records the transitions of a waiver's Accepted condition and
// its expiry as events on it.
func (r *WaiverReconciler) waiverEvents(dw *v1alpha1.DutyWaiver, before *v1alpha1.DutyWaiverStatus, v evaluate.WaiverVerdict) {
	was := meta.FindStatusCondition(before.Conditions, v1alpha1.ConditionWaiverAccepted)
	now := meta.FindStatusCondition(dw.Status.Conditions, v1alpha1.ConditionWaiverAccepted)
	switch {
	case now.Status == metav1.ConditionFalse && (was == nil || was.Status != metav1.ConditionFalse || was.Reason != now.Reason || was.Message != now.Message):
		r.Events.WaiverEvent(dw, corev1.EventTypeWarning, v1alpha1.EventWaiverNotAccepted, now.Message)
	case now.Status == metav1.ConditionTrue && was != nil && was.Status == metav1.ConditionFalse:
		r.Events.WaiverEvent(dw, corev1.EventTypeNormal, v1alpha1.EventWaiverAccepted, now.Message)
	}
	if v.Expired && !before.Expired {
		r.Events.WaiverEvent(dw, corev1.EventTypeNormal, v1alpha1.EventWaiverExpired,
			meta.FindStatusCondition(dw.Status.Conditions, v1alpha1.ConditionWaiverActive).Message)
	}
}

func sentence(s string) string {
	if s == "" {
		return s
	}
	s = strings.ToUpper(s[:1]) + s[1:]
	if !strings.HasSuffix(s, ".") {
		s += "."
	}
	return s
}

// WaiverSource lists the DutyWaivers of a namespace, compiled, for the
// workload reconciler. A compiled waiver is kept until its resourceVersion
// changes, so that evaluating the objects of a namespace with waivers does
// not parse their selectors again and again.
type WaiverSource struct {
	// Reader is the manager's cache.
	Reader client.Reader
	// Disabled is set when the DutyWaiver kind is not served (its CRD is
	// not installed): then no object has waivers of that kind.
	Disabled bool

	mu       sync.Mutex
	compiled map[types.UID]compiledWaiver
}

type compiledWaiver struct {
	resourceVersion string
	waiver          *evaluate.Waiver
}

// In returns the waivers of a namespace sorted by name; a waiver whose
// selector does not parse is left out (its status says why).
func (s *WaiverSource) In(ctx context.Context, namespace string) ([]*evaluate.Waiver, error) {
	if s == nil || s.Disabled || namespace == "" {
		return nil, nil
	}
	list := &v1alpha1.DutyWaiverList{}
	if err := s.Reader.List(ctx, list, client.InNamespace(namespace), client.UnsafeDisableDeepCopy); err != nil {
		return nil, fmt.Errorf("list DutyWaivers in %s: %w", namespace, err)
	}
	if len(list.Items) == 0 {
		return nil, nil
	}
	out := make([]*evaluate.Waiver, 0, len(list.Items))
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.compiled == nil {
		s.compiled = map[types.UID]compiledWaiver{}
	}
	for i := range list.Items {
		dw := &list.Items[i]
		if c, ok := s.compiled[dw.UID]; ok && c.resourceVersion == dw.ResourceVersion {
			if c.waiver != nil {
				out = append(out, c.waiver)
			}
			continue
		}
		w, err := evaluate.CompileWaiver(dw)
		if err != nil {
			log.FromContext(ctx).V(1).Info("waiver selector does not parse", "waiver", client.ObjectKeyFromObject(dw).String(), "error", err.Error())
		}
		s.compiled[dw.UID] = compiledWaiver{resourceVersion: dw.ResourceVersion, waiver: w}
		if w != nil {
			out = append(out, w)
		}
	}
	evaluate.SortWaivers(out)
	return out, nil
}

// Forget drops the compiled copy of a deleted waiver.
func (s *WaiverSource) Forget(uid types.UID) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.compiled, uid)
}

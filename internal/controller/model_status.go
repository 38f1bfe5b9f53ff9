package controller

import (
	"context"
	"fmt"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/responsibility-operator/responsibility-operator/api/v1alpha1"
	"github.com/responsibility-operator/responsibility-operator/internal/evaluate"
)

// statusCountsInterval is the least time between two status writes of a
// model that change nothing but its counts. While thousands of objects
// converge the counts move every second, and each write of a catalog model
// (tens of KiB, decoded, patched, validated and stored) costs the API server
// what a few dozen workload applies do; a condition or generation change is
// written at once.
const statusCountsInterval = 5 * time.Second

// updateStatus writes conditions and counts, only when they changed. A change
// of the counts alone waits until statusCountsInterval has passed since the
// model's last status write: it returns how long, and writes nothing.
func (r *ModelReconciler) updateStatus(ctx context.Context, rm *v1alpha1.ResponsibilityModel, cm compiledModel, adm admissionState) (time.Duration, error) {
	before := rm.Status.DeepCopy()
	st := &rm.Status
	st.ObservedGeneration = rm.Generation
	st.TargetKinds = strings.Join(rm.Spec.TargetKinds(), ",")
	st.MatchedObjects, st.UnmetObjects, st.Duties = r.Tally.Counts(rm.Name)
	failed, example := r.Tally.Failures(rm.Name)
	st.FailedObjects = failed

	setCondition(st, rm.Generation, v1alpha1.ConditionRulesValid, cm.err == nil, v1alpha1.ReasonRulesCompiled, "Every rule compiles.",
		v1alpha1.ReasonRuleInvalid, truncate(errString(cm.err), maxConditionMessage))
	setCondition(st, rm.Generation, v1alpha1.ConditionTargetsResolved, cm.res.ok(), v1alpha1.ReasonResolved,
		"Every target and related kind is served and permitted.", cm.res.reason, cm.res.message)

	switch {
	case adm.requested:
		okReason := v1alpha1.ReasonPoliciesApplied
		if adm.reason != "" {
			okReason = adm.reason
		}
		setCondition(st, rm.Generation, v1alpha1.ConditionAdmissionPolicies, adm.ok, okReason, adm.message,
			v1alpha1.ReasonPoliciesFailed, adm.message)
	case cm.model != nil:
		meta.RemoveStatusCondition(&st.Conditions, v1alpha1.ConditionAdmissionPolicies)
	}
	switch {
	case cm.err != nil:
		setCondition(st, rm.Generation, v1alpha1.ConditionReady, false, "", "", v1alpha1.ReasonRuleInvalid,
			servingMessage(r.Registry.Get(rm.Name), "A rule does not compile; see the RulesValid condition."))
	case !cm.res.ok():
		setCondition(st, rm.Generation, v1alpha1.ConditionReady, false, "", "", cm.res.reason,
			"Applied to the resolved kinds only; see the TargetsResolved condition.")
	default:
		setCondition(st, rm.Generation, v1alpha1.ConditionReady, true, v1alpha1.ReasonApplied,
			appliedMessage(st.MatchedObjects, st.UnmetObjects, failed, example), "", "")
	}
	ready := 0.0
	if meta.IsStatusConditionTrue(st.Conditions, v1alpha1.ConditionReady) {
		ready = 1
	}
	r.Metrics.ModelReady.WithLabelValues(rm.Name).Set(ready)
	if equality.Semantic.DeepEqual(before, st) {
		return 0, nil
	}
	now := time.Now()
	r.mu.Lock()
	last := r.statusWritten[rm.Name]
	r.mu.Unlock()
	if wait := statusCountsInterval - now.Sub(last); wait > 0 && countsOnly(before, st) {
		return wait, nil
	}
	patch := client.MergeFrom(&v1alpha1.ResponsibilityModel{ObjectMeta: metav1.ObjectMeta{Name: rm.Name}, Status: *before})
	if err := r.Client.Status().Patch(ctx, rm, patch); err != nil {
		if apierrors.IsNotFound(err) {
			return 0, nil
		}
		return 0, fmt.Errorf("update status of %s: %w", rm.Name, err)
	}
	r.mu.Lock()
	if r.statusWritten == nil {
		r.statusWritten = map[string]time.Time{}
	}
	r.statusWritten[rm.Name] = now
	r.mu.Unlock()
	return 0, nil
}

// countsOnly reports whether two statuses differ in nothing but the counts
// and the Ready condition's message, which states them.
func countsOnly(before, after *v1alpha1.ResponsibilityModelStatus) bool {
	a := after.DeepCopy()
	a.MatchedObjects, a.UnmetObjects, a.FailedObjects, a.Duties = before.MatchedObjects, before.UnmetObjects, before.FailedObjects, before.Duties
	if ready := meta.FindStatusCondition(a.Conditions, v1alpha1.ConditionReady); ready != nil {
		if was := meta.FindStatusCondition(before.Conditions, v1alpha1.ConditionReady); was != nil {
			ready.Message = was.Message
		}
	}
	return equality.Semantic.DeepEqual(before, a)
}

// appliedMessage is the Ready condition's message of a model that applies:
// its counts, and one object the API server refused to write, if any.
func appliedMessage(matched, unmet, failed int32, example string) string {
	msg := fmt.Sprintf("Applied to %d object(s), %d with unmet duties.", matched, unmet)
	if failed > 0 {
		msg += fmt.Sprintf(" %d more could not be written and are retried; e.g. %s", failed, truncate(example, maxConditionMessage/4))
	}
	return msg
}

func servingMessage(active *evaluate.Model, msg string) string {
	if active == nil {
		return msg + " No generation of the model is applied."
	}
	return fmt.Sprintf("%s Generation %d stays applied.", msg, active.Generation)
}

func setCondition(st *v1alpha1.ResponsibilityModelStatus, generation int64, condType string, ok bool, okReason, okMessage, failReason, failMessage string) {
	c := metav1.Condition{Type: condType, ObservedGeneration: generation, Status: metav1.ConditionTrue, Reason: okReason, Message: okMessage}
	if !ok {
		c.Status, c.Reason, c.Message = metav1.ConditionFalse, failReason, failMessage
	}
	meta.SetStatusCondition(&st.Conditions, c)
}

// maxConditionMessage keeps condition messages readable and far below the
// API's limit of 32768 characters.
const maxConditionMessage = 4096

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + " …(truncated)"
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

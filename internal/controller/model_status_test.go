package controller

import (
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/responsibility-operator/responsibility-operator/api/v1alpha1"
)

// TestCountsOnly checks which status changes may wait for
// statusCountsInterval: the counts and the Ready message that states them,
// nothing else.
func TestCountsOnly(t *testing.T) {
	base := func() *v1alpha1.ResponsibilityModelStatus {
		return &v1alpha1.ResponsibilityModelStatus{
			ObservedGeneration: 2,
			TargetKinds:        "Cluster",
			MatchedObjects:     3,
			UnmetObjects:       1,
			Duties:             []v1alpha1.DutyStatus{{Name: "tls-enforced", Met: 2, Unmet: 1}},
			Conditions: []metav1.Condition{
				{Type: v1alpha1.ConditionRulesValid, Status: metav1.ConditionTrue, Reason: v1alpha1.ReasonRulesCompiled, Message: "Every rule compiles.", ObservedGeneration: 2},
				{Type: v1alpha1.ConditionReady, Status: metav1.ConditionTrue, Reason: v1alpha1.ReasonApplied, Message: "Applied to 3 object(s), 1 with unmet duties.", ObservedGeneration: 2},
			},
		}
	}
	for _, tc := range []struct {
		name   string
		change func(*v1alpha1.ResponsibilityModelStatus)
		want   bool
	}{
		{"nothing", func(*v1alpha1.ResponsibilityModelStatus) {}, true},
		{"counts and the Ready message", func(st *v1alpha1.ResponsibilityModelStatus) {
			st.MatchedObjects, st.UnmetObjects = 4, 2
			st.Duties[0].Unmet = 2
			st.Conditions[1].Message = "Applied to 4 object(s), 2 with unmet duties."
		}, true},
		{"a duty appears in the counts", func(st *v1alpha1.ResponsibilityModelStatus) {
			st.Duties = append(st.Duties, v1alpha1.DutyStatus{Name: "backup-scheduled", Met: 3})
		}, true},
		{"observed generation", func(st *v1alpha1.ResponsibilityModelStatus) { st.ObservedGeneration = 3 }, false},
		{"target kinds", func(st *v1alpha1.ResponsibilityModelStatus) { st.TargetKinds = "Cluster,MariaDB" }, false},
		{"Ready turns false", func(st *v1alpha1.ResponsibilityModelStatus) {
			st.Conditions[1].Status, st.Conditions[1].Reason = metav1.ConditionFalse, v1alpha1.ReasonRuleInvalid
		}, false},
		{"another condition's message", func(st *v1alpha1.ResponsibilityModelStatus) {
			st.Conditions[0].Message = "changed"
		}, false},
		{"a condition's generation", func(st *v1alpha1.ResponsibilityModelStatus) {
			st.Conditions[1].ObservedGeneration = 3
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before, after := base(), base()
			tc.change(after)
			if got := countsOnly(before, after); got != tc.want {
				t.Errorf("countsOnly = %v, want %v", got, tc.want)
			}
		})
	}
}

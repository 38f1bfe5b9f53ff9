package webhook

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/responsibility-operator/responsibility-operator/api/v1alpha1"
)

func TestWaiverGrantor(t *testing.T) {
	then := metav1.NewTime(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	now := time.Date(2026, 12, 3, 12, 0, 0, 500, time.UTC)
	base := v1alpha1.DutyWaiverSpec{Model: "m", Duties: []string{"d"}, Objects: v1alpha1.WaiverObjects{Names: []string{"db"}}, Reason: "r",
		GrantedBy: &v1alpha1.WaiverGrant{User: "security", Time: then}}
	with := func(mutate func(*v1alpha1.DutyWaiverSpec)) v1alpha1.DutyWaiverSpec {
		s := *base.DeepCopy()
		mutate(&s)
		return s
	}
	tests := []struct {
		name string
		op   admissionv1.Operation
		old  *v1alpha1.DutyWaiverSpec
		spec v1alpha1.DutyWaiverSpec
		want v1alpha1.WaiverGrant
	}{
		{name: "create records the user", op: admissionv1.Create, spec: with(func(s *v1alpha1.DutyWaiverSpec) { s.GrantedBy = nil }),
			want: v1alpha1.WaiverGrant{User: "alice", Time: metav1.NewTime(now.Truncate(time.Second))}},
		{name: "create replaces a typed grant", op: admissionv1.Create, spec: with(func(s *v1alpha1.DutyWaiverSpec) { s.GrantedBy.User = "mallory" }),
			want: v1alpha1.WaiverGrant{User: "alice", Time: metav1.NewTime(now.Truncate(time.Second))}},
		{name: "update of the spec records the updater", op: admissionv1.Update, old: &base, spec: with(func(s *v1alpha1.DutyWaiverSpec) { s.Reason = "new" }),
			want: v1alpha1.WaiverGrant{User: "alice", Time: metav1.NewTime(now.Truncate(time.Second))}},
		{name: "update of nothing else keeps the grant", op: admissionv1.Update, old: &base, spec: base,
			want: *base.GrantedBy},
		{name: "update that only types a grant keeps the old one", op: admissionv1.Update, old: &base, spec: with(func(s *v1alpha1.DutyWaiverSpec) { s.GrantedBy.User = "mallory" }),
			want: *base.GrantedBy},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{Operation: tt.op, UserInfo: authenticationv1.UserInfo{Username: "alice"}}}
			if tt.old != nil {
				raw, err := json.Marshal(&v1alpha1.DutyWaiver{Spec: *tt.old})
				if err != nil {
					t.Fatal(err)
				}
				req.OldObject = runtime.RawExtension{Raw: raw}
			}
			dw := &v1alpha1.DutyWaiver{Spec: *tt.spec.DeepCopy()}
			ctx := admission.NewContextWithRequest(context.Background(), req)
			if err := (WaiverGrantor{Now: func() time.Time { return now }}).Default(ctx, dw); err != nil {
				t.Fatal(err)
			}
			if got := dw.Spec.GrantedBy; got == nil || got.User != tt.want.User || !got.Time.Equal(&tt.want.Time) {
				t.Errorf("grantedBy = %+v, want %+v", got, tt.want)
			}
		})
	}
}

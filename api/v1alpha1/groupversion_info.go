// Package v1alpha1 contains the responsibility.io/v1alpha1 API: the
// ResponsibilityModel resource that holds one service's shared responsibility
// matrix and the customer duties that a cluster can check.
// +kubebuilder:object:generate=true
// +groupName=responsibility.io
package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

var (
	// GroupVersion is the group and version of this API.
	GroupVersion = schema.GroupVersion{Group: "responsibility.io", Version: "v1alpha1"}

	// SchemeBuilder adds the types of this API to a scheme.
	SchemeBuilder = runtime.NewSchemeBuilder(addKnownTypes)

	// AddToScheme adds the types of this API to a scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)

func addKnownTypes(s *runtime.Scheme) error {
	s.AddKnownTypes(GroupVersion, &ResponsibilityModel{}, &ResponsibilityModelList{}, &DutyWaiver{}, &DutyWaiverList{})
	metav1.AddToGroupVersion(s, GroupVersion)
	return nil
}

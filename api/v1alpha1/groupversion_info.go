// Package v1alpha1 contains the responsibility.io/v1alpha1 API: the
// ResponsibilityModel resource that holds one service's shared responsibility
// matrix and the customer duties that a cluster can check.
// +kubebuilder:object:generate=true
// +groupName=responsibility.io
package v1alpha1

import (
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/scheme"
)

var (
	// GroupVersion is the group and version of this API.
	GroupVersion = schema.GroupVersion{Group: "responsibility.io", Version: "v1alpha1"}

	// SchemeBuilder adds the types of this API to a scheme.
	SchemeBuilder = &scheme.Builder{GroupVersion: GroupVersion}

	// AddToScheme adds the types of this API to a scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)

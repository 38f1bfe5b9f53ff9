package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// DutyWaiverSpec is an exception to some duties of one model, for some
// objects of the waiver's namespace, for a reason, until a time.
type DutyWaiverSpec struct {
	// Model is the name of the ResponsibilityModel whose duties are waived.
	// The model must accept DutyWaivers (spec.waivers Allowed or DutyWaivers).
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Model string `json:"model"`

	// Duties are the names of the model's duties that are waived. A name the
	// model does not have is reported in the status, never silently ignored.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=57
	// +listType=set
	Duties []string `json:"duties"`

	// Objects selects the waived objects of the model's target kinds in the
	// waiver's namespace: by name, or by label selector (an empty selector
	// selects every object the model matches in the namespace).
	Objects WaiverObjects `json:"objects"`

	// Reason says why the duties are waived. It is shown wherever the waived
	// duty is: the object's duties annotation, kubectl responsibility show
	// and unmet, and the policy reports.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=1024
	Reason string `json:"reason"`

	// Ticket is the reference of the exception's approval: an issue key or a
	// URL.
	// +kubebuilder:validation:MaxLength=512
	// +optional
	Ticket string `json:"ticket,omitempty"`

	// Expires is the instant from which the waiver no longer applies: the
	// duties turn Unmet again (with their event) at that instant. The model's
	// spec.waiverExpiry may require one, or cap how far ahead it may be.
	// +optional
	Expires *metav1.Time `json:"expires,omitempty"`

	// GrantedBy is who created the waiver or last changed its spec, and
	// when. The operator's admission webhook sets it from the request; a
	// value written by hand is replaced.
	// +optional
	GrantedBy *WaiverGrant `json:"grantedBy,omitempty"`
}

// WaiverObjects selects objects in the waiver's namespace. Exactly one of
// names and selector is set.
// +kubebuilder:validation:XValidation:rule="has(self.names) != has(self.selector)",message="set exactly one of names and selector"
type WaiverObjects struct {
	// Names are the names of the waived objects.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=256
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=253
	// +listType=set
	// +optional
	Names []string `json:"names,omitempty"`

	// Selector selects the waived objects by label.
	// +optional
	Selector *metav1.LabelSelector `json:"selector,omitempty"`
}

// WaiverGrant records who granted a waiver.
type WaiverGrant struct {
	// User is the name of the user whose request created the waiver or last
	// changed its spec.
	// +kubebuilder:validation:MaxLength=512
	User string `json:"user"`

	// Time is when that request was admitted.
	Time metav1.Time `json:"time"`
}

// DutyWaiverStatus is what the operator observed of a waiver.
type DutyWaiverStatus struct {
	// ObservedGeneration is the generation the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// Conditions: Accepted (the model exists, accepts DutyWaivers, has every
	// named duty, and allows the expiry) and Active (accepted and not
	// expired: the waiver applies now).
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// Expired is true from the waiver's expiry on.
	// +optional
	Expired bool `json:"expired,omitempty"`

	// WaivedObjects counts the objects on which the waiver currently turns
	// an unmet duty into Waived.
	// +optional
	WaivedObjects int32 `json:"waivedObjects"`

	// Objects are those objects with the duties waived on each, sorted by
	// kind and name; at most 100 are listed (WaivedObjects counts them all).
	// +kubebuilder:validation:MaxItems=100
	// +listType=atomic
	// +optional
	Objects []WaivedObject `json:"objects,omitempty"`
}

// WaivedObject is an object on which a waiver applies.
type WaivedObject struct {
	// APIVersion of the object.
	APIVersion string `json:"apiVersion"`
	// Kind of the object.
	Kind string `json:"kind"`
	// Name of the object.
	Name string `json:"name"`
	// Duties are the duties the waiver turns from Unmet into Waived on it.
	// +listType=atomic
	Duties []string `json:"duties"`
}

// DutyWaiver is an exception to customer duties that someone RBAC allows
// (the waiver-approver role) grants for some objects of a namespace, with a
// reason, a ticket and an expiry: a duty it covers that is unmet on one of
// those objects reads Waived, naming the waiver, everywhere the operator
// reports duties, until the waiver expires or is deleted.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=dw,categories=responsibility
// +kubebuilder:printcolumn:name="Model",type=string,JSONPath=`.spec.model`
// +kubebuilder:printcolumn:name="Duties",type=string,JSONPath=`.spec.duties`
// +kubebuilder:printcolumn:name="Active",type=string,JSONPath=`.status.conditions[?(@.type=="Active")].status`
// +kubebuilder:printcolumn:name="Waived",type=integer,JSONPath=`.status.waivedObjects`
// +kubebuilder:printcolumn:name="Expires",type=date,JSONPath=`.spec.expires`
// +kubebuilder:printcolumn:name="Granted-By",type=string,JSONPath=`.spec.grantedBy.user`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type DutyWaiver struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Spec is the exception.
	Spec DutyWaiverSpec `json:"spec"`
	// Status is what the controller observed.
	// +optional
	Status DutyWaiverStatus `json:"status,omitempty"`
}

// DutyWaiverList is a list of DutyWaiver.
// +kubebuilder:object:root=true
type DutyWaiverList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	// Items are the waivers.
	Items []DutyWaiver `json:"items"`
}

package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Severity says how loudly an unmet duty is reported.
// +kubebuilder:validation:Enum=Warning;Info
type Severity string

const (
	// SeverityWarning reports an unmet duty with a Warning event.
	SeverityWarning Severity = "Warning"
	// SeverityInfo reports an unmet duty with a Normal event: it is shown and
	// counted, but does not raise alerts.
	SeverityInfo Severity = "Info"
)

// WaiverPolicy says which waivers of a model's duties apply: a tenant's
// annotation on its own object, a DutyWaiver object granted by whoever RBAC
// lets create one, both, or neither.
// +kubebuilder:validation:Enum=Allowed;Annotations;DutyWaivers;Forbidden
type WaiverPolicy string

const (
	// WaiversAllowed accepts both kinds of waiver: the annotation
	// responsibility.io/waive.<duty>: "<reason>" on an object, and DutyWaiver
	// objects.
	WaiversAllowed WaiverPolicy = "Allowed"
	// WaiversAnnotations accepts waiver annotations only; DutyWaivers of the
	// model are reported as not accepted.
	WaiversAnnotations WaiverPolicy = "Annotations"
	// WaiversDutyWaivers accepts DutyWaiver objects only, so that who may
	// waive is a matter of RBAC (the waiver-approver role), not of who may
	// edit the workload; waiver annotations are ignored (and reported).
	WaiversDutyWaivers WaiverPolicy = "DutyWaivers"
	// WaiversForbidden accepts no waiver; annotations and DutyWaivers are
	// ignored (and reported).
	WaiversForbidden WaiverPolicy = "Forbidden"
)

// AcceptsAnnotations reports whether the policy accepts waiver annotations
// (the empty policy is the default, Allowed).
func (p WaiverPolicy) AcceptsAnnotations() bool {
	return p == "" || p == WaiversAllowed || p == WaiversAnnotations
}

// AcceptsDutyWaivers reports whether the policy accepts DutyWaiver objects.
func (p WaiverPolicy) AcceptsDutyWaivers() bool {
	return p == "" || p == WaiversAllowed || p == WaiversDutyWaivers
}

// AdmissionAction is what the API server itself does when an object a model
// targets is created or updated with a duty unmet: the operator generates a
// ValidatingAdmissionPolicy from the duty's rule, so no webhook of this
// project is in the request path.
// +kubebuilder:validation:Enum=None;Warn;Deny;Audit
type AdmissionAction string

const (
	// AdmissionNone does nothing at admission; the operator reports the
	// duty after the fact (annotations, events), as it always does.
	AdmissionNone AdmissionAction = "None"
	// AdmissionWarn stores the object, and the client (kubectl) prints the
	// duty's message as a warning.
	AdmissionWarn AdmissionAction = "Warn"
	// AdmissionDeny makes the API server refuse the object with the duty's message.
	AdmissionDeny AdmissionAction = "Deny"
	// AdmissionAudit stores the object, and the API server's audit log
	// records the duty's message as an audit annotation.
	AdmissionAudit AdmissionAction = "Audit"
)

// ResponsibilityModelSpec is one service's shared responsibility matrix and
// the objects it applies to.
// +kubebuilder:validation:XValidation:rule="self.areas.all(a, !has(a.duties) || a.duties.all(d, self.areas.filter(b, has(b.duties) && b.duties.exists(e, e.name == d.name)).size() == 1))",message="duty names must be unique across all areas of a model"
type ResponsibilityModelSpec struct {
	// Service is the human name of the service this matrix describes, for
	// example "Managed Databases (MySQL, PostgreSQL, MariaDB)".
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=256
	Service string `json:"service"`

	// Provider is who runs the service, for example "DanubeData".
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=128
	Provider string `json:"provider"`

	// Description summarises the split of responsibilities in a sentence or two.
	// +kubebuilder:validation:MaxLength=4096
	// +optional
	Description string `json:"description,omitempty"`

	// Targets selects the objects this model applies to. An object matches
	// when it matches any target.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=32
	// +listType=atomic
	Targets []Target `json:"targets"`

	// Areas are the rows of the matrix: for each area, what the provider and
	// what the customer is responsible for, and the customer duties a cluster
	// can check.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=32
	// +listType=map
	// +listMapKey=name
	Areas []Area `json:"areas"`

	// Waivers says which waivers of this model's duties apply: Allowed (the
	// default) accepts both the annotation responsibility.io/waive.<duty>:
	// "<reason>" a tenant writes on its object and DutyWaiver objects;
	// Annotations only the former; DutyWaivers only the latter, so that only
	// those RBAC lets create a DutyWaiver (a security team, say) can waive;
	// Forbidden neither.
	// +kubebuilder:default=Allowed
	// +optional
	Waivers WaiverPolicy `json:"waivers,omitempty"`

	// WaiverExpiry constrains the expiry of every waiver of this model: the
	// one a waiver annotation carries (responsibility.io/waive.<duty>:
	// "expires <RFC 3339 time>: <reason>") and a DutyWaiver's spec.expires.
	// Absent, a waiver may carry an expiry or not.
	// +optional
	WaiverExpiry *WaiverExpiry `json:"waiverExpiry,omitempty"`

	// Admission is what the API server does when an object is created or
	// updated with one of this model's duties unmet: None (the default),
	// Warn, Deny or Audit. A duty's own admission overrides it. The operator
	// keeps a ValidatingAdmissionPolicy and bindings equal to the model;
	// duties whose rule reads related objects or `now` cannot be evaluated
	// by the API server and stay the operator's alone (the model's
	// AdmissionPolicies condition names them).
	// +optional
	Admission AdmissionAction `json:"admission,omitempty"`

	// Parameters are values the rules and message expressions read as
	// params.<name> (strings), so that a platform team can tune a duty, a
	// backup's maximum age say, without editing CEL: a rule reads
	// duration(params.backupMaxAge).
	// +kubebuilder:validation:MaxItems=32
	// +listType=map
	// +listMapKey=name
	// +optional
	Parameters []Parameter `json:"parameters,omitempty"`

	// RecheckInterval is how often the objects this model matches are
	// evaluated again, without any change to them, when a rule or message of
	// the model reads `now` (a duty that turns unmet as time passes, such as
	// "the last successful backup is less than a day old"). Each object is
	// re-checked at its own point in the interval, so that many objects do
	// not evaluate at once. Models whose rules do not read `now` are never
	// re-checked. Default 5m; at least 10s.
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('10s')",message="recheckInterval must be at least 10s"
	// +optional
	RecheckInterval *metav1.Duration `json:"recheckInterval,omitempty"`
}

// WaiverExpiry constrains the expiry of a model's waivers.
type WaiverExpiry struct {
	// Required ignores (and reports) a waiver without an expiry.
	// +optional
	Required bool `json:"required,omitempty"`

	// MaxDuration ignores (and reports) a waiver that expires further than
	// this from now, e.g. "2160h" for 90 days.
	// +optional
	MaxDuration *metav1.Duration `json:"maxDuration,omitempty"`
}

// Parameter is a named value the rules of a model read as params.<name>.
type Parameter struct {
	// Name of the parameter in rules: params.<name>. A CEL identifier.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-zA-Z_][a-zA-Z0-9_]*$`
	Name string `json:"name"`

	// Value, a string; a rule converts it (duration(params.x), int(params.x)).
	// +kubebuilder:validation:MaxLength=1024
	Value string `json:"value"`

	// Description says what the parameter tunes, for the platform team.
	// +kubebuilder:validation:MaxLength=1024
	// +optional
	Description string `json:"description,omitempty"`
}

// Target selects objects of one kind.
type Target struct {
	// APIVersion of the target kind, for example "postgresql.cnpg.io/v1" or "apps/v1".
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?v[0-9]+((alpha|beta)[0-9]+)?$`
	APIVersion string `json:"apiVersion"`

	// Kind of the target objects, for example "Cluster".
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[A-Z][A-Za-z0-9]*$`
	Kind string `json:"kind"`

	// Selector restricts the target to objects with matching labels. Empty or
	// absent selects every object of the kind.
	// +optional
	Selector *metav1.LabelSelector `json:"selector,omitempty"`

	// NamespaceSelector restricts the target to objects in namespaces with
	// matching labels. Empty or absent selects every namespace. A
	// cluster-scoped object matches only an absent or empty namespaceSelector.
	// +optional
	NamespaceSelector *metav1.LabelSelector `json:"namespaceSelector,omitempty"`
}

// Area is one row of the matrix.
type Area struct {
	// Name of the area, for example "Connection Security".
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=128
	Name string `json:"name"`

	// Provider is what the provider is responsible for in this area.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=1024
	Provider string `json:"provider"`

	// Customer is what the customer is responsible for in this area.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=1024
	Customer string `json:"customer"`

	// Controls are the framework controls this area addresses (an ISO/IEC
	// 27001 Annex A control, a NIST SP 800-53 control, a CCM control), as the
	// provider's published material maps them: `kubectl responsibility
	// export` writes them into OSCAL documents. Leave it empty rather than
	// guess a mapping.
	// +kubebuilder:validation:MaxItems=32
	// +listType=atomic
	// +optional
	Controls []ControlReference `json:"controls,omitempty"`

	// Duties are the customer responsibilities of this area that can be
	// checked on a cluster object.
	// +kubebuilder:validation:MaxItems=16
	// +listType=map
	// +listMapKey=name
	// +optional
	Duties []Duty `json:"duties,omitempty"`
}

// ControlReference names one control of a compliance framework.
type ControlReference struct {
	// Framework names the catalog the control belongs to, for example
	// "NIST SP 800-53 Rev. 5" or "ISO/IEC 27001:2022".
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=128
	Framework string `json:"framework"`

	// ID is the control's identifier in that framework, for example "sc-8"
	// or "A.8.24".
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=64
	ID string `json:"id"`

	// URL points to the control's text or to the provider's mapping.
	// +kubebuilder:validation:MaxLength=2048
	// +optional
	URL string `json:"url,omitempty"`
}

// Duty is a customer responsibility that a CEL rule can check.
type Duty struct {
	// Name identifies the duty, unique within the model. It is a DNS-1123
	// label of at most 57 characters so that the waiver annotation
	// responsibility.io/waive.<name> is a valid annotation key.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=57
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	Name string `json:"name"`

	// Description says what the duty asks of the customer.
	// +kubebuilder:validation:MaxLength=1024
	// +optional
	Description string `json:"description,omitempty"`

	// Rule is a CEL expression that is true when the duty is met. It can read
	// `object` (the target object), `namespaceObject` (its Namespace, null for
	// cluster-scoped objects), `related.<name>` (lists of the related objects
	// declared below), `params.<name>` (the model's parameters) and `now`
	// (a timestamp, the time of the evaluation: a rule that reads it is
	// evaluated again every spec.recheckInterval). An evaluation error makes
	// the duty Unknown, never Met.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=4096
	Rule string `json:"rule"`

	// Message tells the customer what to do when the duty is unmet.
	// +kubebuilder:validation:MaxLength=1024
	// +optional
	Message string `json:"message,omitempty"`

	// MessageExpression is a CEL expression returning a string, used instead of
	// Message when the duty is unmet. It sees the same variables as Rule.
	// +kubebuilder:validation:MaxLength=4096
	// +optional
	MessageExpression string `json:"messageExpression,omitempty"`

	// Severity of an unmet duty: Warning raises a Warning event, Info a Normal one.
	// +kubebuilder:default=Warning
	// +optional
	Severity Severity `json:"severity,omitempty"`

	// Admission overrides the model's spec.admission for this duty. Deny is
	// refused on a duty whose rule or message reads related objects or
	// `now`: the API server cannot evaluate it.
	// +optional
	Admission AdmissionAction `json:"admission,omitempty"`

	// Related declares other objects in the target's namespace that the rule
	// may read, as lists under `related.<name>`.
	// +kubebuilder:validation:MaxItems=8
	// +listType=map
	// +listMapKey=name
	// +optional
	Related []RelatedResource `json:"related,omitempty"`
}

// RelatedResource declares a list of objects a rule may read.
type RelatedResource struct {
	// Name of the list in the rule: related.<name>. A CEL identifier.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-zA-Z_][a-zA-Z0-9_]*$`
	Name string `json:"name"`

	// APIVersion of the related kind, for example "postgresql.cnpg.io/v1".
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?v[0-9]+((alpha|beta)[0-9]+)?$`
	APIVersion string `json:"apiVersion"`

	// Kind of the related objects, for example "ScheduledBackup".
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[A-Z][A-Za-z0-9]*$`
	Kind string `json:"kind"`

	// Selector restricts the list to objects with matching labels.
	// +optional
	Selector *metav1.LabelSelector `json:"selector,omitempty"`

	// Namespace to read the objects from, for objects that live in one
	// well-known namespace, such as Velero Schedules in "velero". Empty: the
	// workload's own namespace. The kind must be namespaced.
	// +optional
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	Namespace string `json:"namespace,omitempty"`
}

// ResponsibilityModelStatus is what the controller observed of a model.
type ResponsibilityModelStatus struct {
	// ObservedGeneration is the generation of the spec this status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// TargetKinds lists the distinct kinds the model targets, comma-separated,
	// for the Targets printer column (kubectl prints only the first value of
	// a list in a column).
	// +optional
	TargetKinds string `json:"targetKinds,omitempty"`

	// Conditions: Ready summarises TargetsResolved (every target kind is
	// served and may be watched and patched) and RulesValid (every rule
	// compiles).
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// MatchedObjects counts the objects this model currently applies to.
	// +optional
	MatchedObjects int32 `json:"matchedObjects"`

	// UnmetObjects counts the matched objects with at least one unmet duty.
	// +optional
	UnmetObjects int32 `json:"unmetObjects"`

	// FailedObjects counts the matched objects whose annotations the API
	// server refused to write (too large once annotated, an admission policy,
	// a webhook): their duty states are not counted above. The Ready
	// condition's message names one and the error; the operator retries each
	// with backoff, at least every five minutes, and an ApplyFailed event on
	// the object says why.
	// +optional
	FailedObjects int32 `json:"failedObjects,omitempty"`

	// Duties counts the states of each duty over the matched objects.
	// +listType=map
	// +listMapKey=name
	// +optional
	Duties []DutyStatus `json:"duties,omitempty"`
}

// DutyStatus counts the states of one duty over the matched objects.
type DutyStatus struct {
	// Name of the duty.
	Name string `json:"name"`
	// Met counts objects where the rule is true.
	Met int32 `json:"met"`
	// Unmet counts objects where the rule is false and no waiver applies.
	Unmet int32 `json:"unmet"`
	// Unknown counts objects where the rule could not be evaluated.
	Unknown int32 `json:"unknown"`
	// Waived counts objects where the rule is false and a waiver applies (a
	// DutyWaiver or the object's waiver annotation).
	Waived int32 `json:"waived"`
}

// ResponsibilityModel holds one service's shared responsibility matrix: per
// area, what the provider and what the customer secures, and the customer
// duties a cluster can check. The controller annotates every target object
// with the matrix and reports unmet duties as events.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,shortName=rm,categories=responsibility
// +kubebuilder:printcolumn:name="Service",type=string,JSONPath=`.spec.service`
// +kubebuilder:printcolumn:name="Targets",type=string,JSONPath=`.status.targetKinds`
// +kubebuilder:printcolumn:name="Matched",type=integer,JSONPath=`.status.matchedObjects`
// +kubebuilder:printcolumn:name="Unmet",type=integer,JSONPath=`.status.unmetObjects`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type ResponsibilityModel struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Spec is the matrix and its targets.
	Spec ResponsibilityModelSpec `json:"spec"`
	// Status is what the controller observed.
	// +optional
	Status ResponsibilityModelStatus `json:"status,omitempty"`
}

// ResponsibilityModelList is a list of ResponsibilityModel.
// +kubebuilder:object:root=true
type ResponsibilityModelList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	// Items are the models.
	Items []ResponsibilityModel `json:"items"`
}

// TargetKinds returns the distinct kinds the spec targets, in spec order.
func (s *ResponsibilityModelSpec) TargetKinds() []string {
	kinds := make([]string, 0, len(s.Targets))
	seen := make(map[string]bool, len(s.Targets))
	for _, t := range s.Targets {
		if !seen[t.Kind] {
			seen[t.Kind] = true
			kinds = append(kinds, t.Kind)
		}
	}
	return kinds
}

package v1alpha1

// Condition types of a ResponsibilityModel.
const (
	// ConditionReady is True when the model is applied to its targets: every
	// target kind resolved and every rule compiled.
	ConditionReady = "Ready"
	// ConditionTargetsResolved is True when every target and related kind is
	// served by the API server and the operator may list, watch and patch it.
	ConditionTargetsResolved = "TargetsResolved"
	// ConditionRulesValid is True when every duty's rule compiles.
	ConditionRulesValid = "RulesValid"
	// ConditionAdmissionPolicies is True when the ValidatingAdmissionPolicies
	// of the duties with an admission action (spec.admission) are applied;
	// its message names the duties only the operator can evaluate. Absent
	// when no duty has one.
	ConditionAdmissionPolicies = "AdmissionPolicies"
)

// Condition reasons of a ResponsibilityModel.
const (
	// ReasonResolved: every target kind is served and permitted.
	ReasonResolved = "Resolved"
	// ReasonTargetNotInstalled: a target kind is not served; its CRD is missing.
	ReasonTargetNotInstalled = "TargetNotInstalled"
	// ReasonForbidden: the operator lacks a permission on a target kind.
	ReasonForbidden = "Forbidden"
	// ReasonRulesCompiled: every rule compiled.
	ReasonRulesCompiled = "Compiled"
	// ReasonRuleInvalid: at least one rule does not compile.
	ReasonRuleInvalid = "RuleInvalid"
	// ReasonPoliciesApplied: the admission policies are applied.
	ReasonPoliciesApplied = "PoliciesApplied"
	// ReasonPoliciesTypeWarnings: the admission policies are applied, and
	// type-checking them against the target kinds' schemas found fields the
	// schemas do not have; the message names the duties.
	ReasonPoliciesTypeWarnings = "PoliciesAppliedWithWarnings"
	// ReasonPoliciesFailed: the API server refused an admission policy.
	ReasonPoliciesFailed = "PoliciesFailed"
	// ReasonApplied: the model is applied to its targets.
	ReasonApplied = "Applied"
	// ReasonNotReady: a prerequisite condition is False; its message says which.
	ReasonNotReady = "NotReady"
	// ReasonDeleting: the model is being deleted and its annotations removed.
	ReasonDeleting = "Deleting"
)

// Condition types of a DutyWaiver.
const (
	// ConditionWaiverAccepted is True when the waiver's model exists, accepts
	// DutyWaivers, has every duty the waiver names, and allows its expiry.
	ConditionWaiverAccepted = "Accepted"
	// ConditionWaiverActive is True when the waiver applies now: accepted (at
	// least for the duties that exist) and not expired.
	ConditionWaiverActive = "Active"
)

// Condition reasons of a DutyWaiver.
const (
	// ReasonWaiverAccepted: the model accepts the waiver as written.
	ReasonWaiverAccepted = "Accepted"
	// ReasonModelNotFound: no ResponsibilityModel has the waiver's model name.
	ReasonModelNotFound = "ModelNotFound"
	// ReasonModelNotReady: the model exists but no generation of it applies
	// (a rule does not compile).
	ReasonModelNotReady = "ModelNotReady"
	// ReasonSelectorInvalid: spec.objects.selector does not parse.
	ReasonSelectorInvalid = "SelectorInvalid"
	// ReasonDutyNotFound: the model has no duty of a name the waiver lists;
	// the waiver still applies to the duties that exist.
	ReasonDutyNotFound = "DutyNotFound"
	// ReasonWaiversNotAccepted: the model's spec.waivers does not accept
	// DutyWaivers (Annotations or Forbidden).
	ReasonWaiversNotAccepted = "WaiversNotAccepted"
	// ReasonExpiryNotAllowed: the model's spec.waiverExpiry requires an
	// expiry the waiver lacks, or caps how far ahead it may be.
	ReasonExpiryNotAllowed = "ExpiryNotAllowed"
	// ReasonWaiverActive: the waiver applies now.
	ReasonWaiverActive = "Active"
	// ReasonWaiverExpired: the waiver's expiry has passed.
	ReasonWaiverExpired = "Expired"
	// ReasonWaiverNotAccepted: the waiver does not apply; see the Accepted
	// condition.
	ReasonWaiverNotAccepted = "NotAccepted"
)

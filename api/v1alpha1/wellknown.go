package v1alpha1

// Every annotation key, label, event reason, finalizer and field manager the
// operator reads or writes, in one place. docs/reference.md documents each.

// Prefix of every key the operator owns on a workload.
const Prefix = "responsibility.io/"

// Annotations the operator writes on every object a model matches.
const (
	// AnnotationModels lists the names of the matching models, sorted, comma-separated.
	AnnotationModels = Prefix + "models"
	// AnnotationProvider names the provider(s) of the matching models.
	AnnotationProvider = Prefix + "provider"
	// AnnotationService names the service(s) of the matching models.
	AnnotationService = Prefix + "service"
	// AnnotationMatrix is compact JSON: model → area → {provider, customer}.
	AnnotationMatrix = Prefix + "matrix"
	// AnnotationDuties is compact JSON: model → duty → {state, message}.
	AnnotationDuties = Prefix + "duties"
	// AnnotationUnmet lists the unmet duties as model/duty, sorted,
	// comma-separated; empty when none is unmet.
	AnnotationUnmet = Prefix + "unmet"
	// AnnotationIgnoredWaivers lists, sorted and comma-separated, the duty
	// names of waiver annotations that had no effect: the duty does not exist
	// in any matching model, or its model forbids waivers. Absent when none.
	AnnotationIgnoredWaivers = Prefix + "ignored-waivers"
	// AnnotationEventsHeldUntil is present on an object created less than
	// the operator's --event-grace-period ago that has an unmet duty: its
	// states are written, but its duty events wait until this instant
	// (RFC 3339), so that a duty met by a related object applied a moment
	// later never raises a Warning. At that instant the operator reports
	// the duties still unmet and removes the annotation.
	AnnotationEventsHeldUntil = Prefix + "events-held-until"
)

// OwnedAnnotations are the annotations the operator writes, in a stable order.
var OwnedAnnotations = []string{
	AnnotationModels, AnnotationProvider, AnnotationService,
	AnnotationMatrix, AnnotationDuties, AnnotationUnmet, AnnotationIgnoredWaivers,
	AnnotationEventsHeldUntil,
}

// LabelStatus is the label the operator writes on every matched object:
// StatusUnmet, StatusUnknown or StatusMet, so that
// `kubectl get KIND -l responsibility.io/status=unmet` lists what needs work.
const LabelStatus = Prefix + "status"

// Values of LabelStatus.
const (
	// StatusMet: every duty is met or waived.
	StatusMet = "met"
	// StatusUnmet: at least one duty is unmet.
	StatusUnmet = "unmet"
	// StatusUnknown: no duty is unmet, but at least one could not be evaluated.
	StatusUnknown = "unknown"
)

// AnnotationWaivePrefix starts the annotation a tenant writes to waive a
// duty: responsibility.io/waive.<duty>: "<reason>". The operator never writes it.
const AnnotationWaivePrefix = Prefix + "waive."

// WaiverExpiresPrefix starts the value of a waiver annotation that expires:
// responsibility.io/waive.<duty>: "expires 2027-03-31T00:00:00Z: <reason>".
// From that instant the waiver no longer applies.
const WaiverExpiresPrefix = "expires "

// DutyState is the state of one customer duty on one object.
type DutyState string

// Duty states.
const (
	// DutyMet: the rule is true.
	DutyMet DutyState = "Met"
	// DutyUnmet: the rule is false.
	DutyUnmet DutyState = "Unmet"
	// DutyUnknown: the rule could not be evaluated (missing field, cost limit).
	DutyUnknown DutyState = "Unknown"
	// DutyWaived: the rule is false and the tenant waived the duty.
	DutyWaived DutyState = "Waived"
)

// FieldManager is the server-side apply field manager of every write the
// operator makes to a workload.
const FieldManager = "responsibility-operator"

// Finalizer on a model: the operator removes the model's annotations from
// every object before the model goes away.
const Finalizer = "responsibility.io/cleanup"

// Event reasons.
const (
	// EventCustomerDutyUnmet (Warning, on a workload): a duty turned unmet.
	EventCustomerDutyUnmet = "CustomerDutyUnmet"
	// EventCustomerDutyMet (Normal, on a workload): a duty turned met again.
	EventCustomerDutyMet = "CustomerDutyMet"
	// EventWaiverIgnored (Warning, on a workload): a waiver names no duty of
	// the matching models, or the model forbids waivers.
	EventWaiverIgnored = "WaiverIgnored"
	// EventTargetNotInstalled (Warning, on a model): a target kind is not served.
	EventTargetNotInstalled = "TargetNotInstalled"
	// EventRuleInvalid (Warning, on a model): a rule does not compile.
	EventRuleInvalid = "RuleInvalid"
	// EventForbidden (Warning, on a model): the operator may not watch or patch a target kind.
	EventForbidden = "Forbidden"
	// EventApplyFailed (Warning, on a workload): the annotations could not be written.
	EventApplyFailed = "ApplyFailed"
	// EventWaiverNotAccepted (Warning, on a DutyWaiver): its model is
	// missing, does not accept DutyWaivers, lacks a named duty, or does not
	// allow its expiry; the message says which and how to fix it.
	EventWaiverNotAccepted = "WaiverNotAccepted"
	// EventWaiverAccepted (Normal, on a DutyWaiver): a waiver that was not
	// accepted now is.
	EventWaiverAccepted = "WaiverAccepted"
	// EventWaiverExpired (Normal, on a DutyWaiver): the waiver reached its
	// expiry; the duties it waived are evaluated as they are again.
	EventWaiverExpired = "WaiverExpired"
)

// LabelModel is on every ValidatingAdmissionPolicy and binding the operator
// generates from a model (spec.admission): the model's name, so that the
// policies of a model are found and removed with it.
const LabelModel = Prefix + "model"

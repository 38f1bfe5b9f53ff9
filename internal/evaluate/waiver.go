package evaluate

import (
	"fmt"
	"slices"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/responsibility-operator/responsibility-operator/api/v1alpha1"
)

// Waiver is a compiled DutyWaiver: the exception it grants, as plain values.
type Waiver struct {
	// Namespace and Name are the DutyWaiver's.
	Namespace, Name string
	// Model and Duties are what it waives; Duties is sorted.
	Model  string
	Duties []string
	// Names are the objects it selects by name, sorted; nil when it selects
	// by label (Selector).
	Names    []string
	Selector labels.Selector
	Reason   string
	Ticket   string
	// GrantedBy is the user who granted it; empty when the webhook did not
	// record one.
	GrantedBy string
	// Expires is when it stops applying; zero when it does not.
	Expires time.Time
}

// CompileWaiver turns a DutyWaiver into a Waiver. It fails only on a label
// selector that does not parse (the API's schema admits some that
// metav1.LabelSelectorAsSelector refuses, e.g. an invalid value).
func CompileWaiver(dw *v1alpha1.DutyWaiver) (*Waiver, error) {
	w := &Waiver{
		Namespace: dw.Namespace,
		Name:      dw.Name,
		Model:     dw.Spec.Model,
		Duties:    slices.Sorted(slices.Values(dw.Spec.Duties)),
		Reason:    dw.Spec.Reason,
		Ticket:    dw.Spec.Ticket,
	}
	if dw.Spec.GrantedBy != nil {
		w.GrantedBy = dw.Spec.GrantedBy.User
	}
	if dw.Spec.Expires != nil {
		w.Expires = dw.Spec.Expires.UTC()
	}
	if dw.Spec.Objects.Selector != nil {
		sel, err := metav1.LabelSelectorAsSelector(dw.Spec.Objects.Selector)
		if err != nil {
			return nil, fmt.Errorf("spec.objects.selector: %w", err)
		}
		w.Selector = sel
	} else {
		w.Names = slices.Sorted(slices.Values(dw.Spec.Objects.Names))
	}
	return w, nil
}

// Selects reports whether the waiver covers an object of its namespace.
func (w *Waiver) Selects(name string, objectLabels labels.Set) bool {
	if w.Selector != nil {
		return w.Selector.Matches(objectLabels)
	}
	_, found := slices.BinarySearch(w.Names, name)
	return found
}

// Waives reports whether the waiver names a duty of a model.
func (w *Waiver) Waives(model, duty string) bool {
	if w.Model != model {
		return false
	}
	_, found := slices.BinarySearch(w.Duties, duty)
	return found
}

// message is the duty message of a duty the waiver applies to.
func (w *Waiver) message() string {
	var b strings.Builder
	b.WriteString("waived by DutyWaiver ")
	b.WriteString(w.Name)
	if !w.Expires.IsZero() {
		b.WriteString(" until ")
		b.WriteString(w.Expires.Format(time.RFC3339))
	}
	var about []string
	if w.Ticket != "" {
		about = append(about, "ticket "+w.Ticket)
	}
	if w.GrantedBy != "" {
		about = append(about, "granted by "+w.GrantedBy)
	}
	if len(about) > 0 {
		b.WriteString(" (" + strings.Join(about, ", ") + ")")
	}
	b.WriteString(": ")
	b.WriteString(w.Reason)
	return b.String()
}

// WaiverVerdict is what a model says of a DutyWaiver, for its status.
type WaiverVerdict struct {
	// MissingDuties are the duties the waiver names that the model lacks.
	MissingDuties []string
	// Refused says why the model does not accept the waiver now ("" when it
	// does); Reason is the condition reason that goes with it.
	Refused, Reason string
	// Expired is true from the waiver's expiry on.
	Expired bool
	// NextChange is when the verdict changes with time alone: the expiry,
	// or when an expiry comes within the model's maximum duration. Zero
	// when it will not.
	NextChange time.Time
}

// Judge says whether model m (nil: no such model) accepts waiver w at now:
// the same checks Evaluate applies before it lets the waiver turn a duty
// Waived.
func Judge(m *Model, w *Waiver, now time.Time) WaiverVerdict {
	v := WaiverVerdict{Expired: !w.Expires.IsZero() && !now.Before(w.Expires)}
	if !v.Expired && !w.Expires.IsZero() {
		v.NextChange = w.Expires
	}
	if m == nil {
		v.Refused, v.Reason = fmt.Sprintf("no ResponsibilityModel is named %q", w.Model), v1alpha1.ReasonModelNotFound
		return v
	}
	for _, d := range w.Duties {
		if !hasDuty([]*Model{m}, d) {
			v.MissingDuties = append(v.MissingDuties, d)
		}
	}
	why, next := m.refusesDutyWaiver(w, now)
	switch {
	case why != "" && !m.DutyWaivers:
		v.Refused, v.Reason = why, v1alpha1.ReasonWaiversNotAccepted
	case why != "" && !v.Expired:
		v.Refused, v.Reason, v.NextChange = why, v1alpha1.ReasonExpiryNotAllowed, next
	}
	return v
}

// refusesDutyWaiver says why the model does not let a DutyWaiver apply at
// now ("" when it does), and when that may change with time alone.
func (m *Model) refusesDutyWaiver(w *Waiver, now time.Time) (why string, next time.Time) {
	if !m.DutyWaivers {
		return fmt.Sprintf("model %s does not accept DutyWaivers (spec.waivers: %s)", m.Name, m.WaiverPolicy()), time.Time{}
	}
	return m.refusesExpiry(w.Expires, now, "spec.expires")
}

// WaiverPolicy spells the model's spec.waivers back.
func (m *Model) WaiverPolicy() v1alpha1.WaiverPolicy {
	switch {
	case m.AnnotationWaivers && m.DutyWaivers:
		return v1alpha1.WaiversAllowed
	case m.AnnotationWaivers:
		return v1alpha1.WaiversAnnotations
	case m.DutyWaivers:
		return v1alpha1.WaiversDutyWaivers
	}
	return v1alpha1.WaiversForbidden
}

// refusesExpiry applies the model's waiverExpiry and the expiry itself to a
// waiver's expiry (zero: none); field names where a missing one goes.
func (m *Model) refusesExpiry(expires, now time.Time, field string) (why string, next time.Time) {
	switch {
	case expires.IsZero() && m.WaiverExpiryRequired:
		return fmt.Sprintf("model %s requires an expiry (%s)", m.Name, field), time.Time{}
	case !expires.IsZero() && !now.Before(expires):
		return "it expired at " + expires.Format(time.RFC3339), time.Time{}
	case !expires.IsZero() && m.WaiverMaxDuration > 0 && expires.Sub(now) > m.WaiverMaxDuration:
		return fmt.Sprintf("it expires more than %s from now, the most model %s allows", m.WaiverMaxDuration, m.Name), expires.Add(-m.WaiverMaxDuration)
	}
	return "", time.Time{}
}

// dutyWaiverFor returns the first waiver, by name, that covers a duty of a
// model on an object and that the model lets apply at now, and the earliest
// instant at which the answer changes with time alone.
func dutyWaiverFor(waivers []*Waiver, m *Model, duty, name string, objectLabels labels.Set, now time.Time) (applies *Waiver, next time.Time) {
	for _, w := range waivers {
		if !w.Waives(m.Name, duty) || !w.Selects(name, objectLabels) {
			continue
		}
		why, at := m.refusesDutyWaiver(w, now)
		if why != "" {
			next = earliest(next, at)
			continue
		}
		return w, earliest(next, w.Expires)
	}
	return nil, next
}

func earliest(a, b time.Time) time.Time {
	if a.IsZero() || (!b.IsZero() && b.Before(a)) {
		return b
	}
	return a
}

// SortWaivers sorts waivers by name, the order in which the first that
// applies is chosen.
func SortWaivers(ws []*Waiver) {
	slices.SortFunc(ws, func(a, b *Waiver) int { return strings.Compare(a.Name, b.Name) })
}

package plugin

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/duration"

	"github.com/responsibility-operator/responsibility-operator/api/v1alpha1"
	"github.com/responsibility-operator/responsibility-operator/internal/evaluate"
)

// Sources of a waiver in WaiverRow.Source.
const (
	sourceDutyWaiver = "DutyWaiver"
	sourceAnnotation = "annotation"
)

// Values of WaiverRow.Active besides a DutyWaiver's condition reasons.
const (
	activeTrue    = "True"
	activeUnknown = "Unknown"
	// activeExpired is also the reason of a DutyWaiver's Active condition
	// after its expiry (v1alpha1.ReasonWaiverExpired).
	activeExpired = v1alpha1.ReasonWaiverExpired
	// activeNotAccepted: a waiver annotation that the duty's model ignores
	// (as v1alpha1.ReasonWaiverNotAccepted for a DutyWaiver).
	activeNotAccepted = v1alpha1.ReasonWaiverNotAccepted
	// activeDutyNotFound: a waiver annotation names a duty that no model of
	// the object has.
	activeDutyNotFound = v1alpha1.ReasonDutyNotFound
)

// dutyWaiverViewerRole is the ClusterRole that grants reading DutyWaivers,
// as `make deploy` installs it; it is aggregated into view.
const dutyWaiverViewerRole = "responsibility-operator-dutywaiver-viewer-role"

// WaiverRow is one waiver: a DutyWaiver, or the waiver annotation
// responsibility.io/waive.<duty> on one object.
type WaiverRow struct {
	Namespace string `json:"namespace,omitempty"`
	// Source is "DutyWaiver" or "annotation".
	Source string `json:"source"`
	// Name is the DutyWaiver's name, or the annotated object as kubectl
	// names it (kind.group/name).
	Name string `json:"name"`
	// Object is the annotated object of an annotation waiver.
	Object *ObjectRef `json:"object,omitempty"`
	// Model is the DutyWaiver's model, or the models of the object that
	// have the annotation's duty.
	Model  string   `json:"model,omitempty"`
	Duties []string `json:"duties"`
	// WaivedObjects counts the objects on which the waiver turns an unmet
	// duty into Waived now (a DutyWaiver's status.waivedObjects; 1 or 0 for
	// an annotation).
	WaivedObjects int32 `json:"waivedObjects"`
	// Objects are those objects, as the DutyWaiver's status lists them.
	Objects []v1alpha1.WaivedObject `json:"objects,omitempty"`
	// Active is True when the waiver applies now; else why not: Expired,
	// NotAccepted, DutyNotFound, or Unknown before the operator said. A
	// DutyWaiver that applies to some of its duties only is "True
	// (DutyNotFound)".
	Active string `json:"active"`
	// Message says why a waiver is not accepted, when it is not.
	Message string `json:"message,omitempty"`
	// Expires is when the waiver stops applying; absent when it does not.
	Expires *time.Time `json:"expires,omitempty"`
	// InvalidExpiry is an annotation's expiry that is not an RFC 3339 time.
	InvalidExpiry string `json:"invalidExpiry,omitempty"`
	// Expired is true from the expiry on.
	Expired   bool   `json:"expired,omitempty"`
	GrantedBy string `json:"grantedBy,omitempty"`
	Ticket    string `json:"ticket,omitempty"`
	Reason    string `json:"reason"`
}

func newWaiversCommand(o *Options) *cobra.Command {
	var all bool
	cmd := &cobra.Command{
		Use:   "waivers [-A | -n NAMESPACE]",
		Short: "List the waivers: DutyWaivers and waiver annotations, with their expiry and time left",
		Long: `List every waiver of customer duties, the soonest to expire first: the DutyWaivers
(granted by whoever holds the waiver-approver role in their namespace) with the objects
they waive now, whether they apply, their expiry, who granted them, their ticket and
reason; and the waiver annotations responsibility.io/waive.<duty> on the objects the
operator evaluated. Without permission to list DutyWaivers, or on a cluster without
their CRD, it says so and lists the annotations.`,
		Example: `  kubectl responsibility waivers -n team-a
  kubectl responsibility waivers -A -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return o.waivers(cmd.Context(), all) },
	}
	cmd.Flags().BoolVarP(&all, "all-namespaces", "A", false, "List the waivers of every namespace.")
	return cmd
}

func (o *Options) waivers(ctx context.Context, all bool) error {
	c, err := o.cluster()
	if err != nil {
		return err
	}
	ns := ""
	if !all {
		if ns, err = c.DefaultNamespace(); err != nil {
			return err
		}
	}
	now := o.Now()
	var rows []WaiverRow
	dws, err := c.DutyWaivers(ctx, ns)
	switch {
	case err == nil:
		for i := range dws {
			rows = append(rows, dutyWaiverRow(&dws[i], now))
		}
	case apierrors.IsForbidden(err):
		o.errorf("Note: you may not list DutyWaivers %s (ask for the ClusterRole %s, aggregated into view, by a RoleBinding)%s; listing the waiver annotations only.\n",
			scope(ns), dutyWaiverViewerRole, allNamespacesHint(all))
	case meta.IsNoMatchError(err) || isResourceNotFound(err):
		o.errorln("Note: the API server does not serve DutyWaivers (the operator's DutyWaiver CRD is not installed); listing the waiver annotations only.")
	default:
		return err
	}
	evaluated, err := c.Evaluated(ctx, ns)
	if err != nil {
		return err
	}
	o.warnListing(evaluated, ns, all)
	rows = append(rows, annotationWaiverRows(evaluated.Objects, waiverPolicies(readableModels(ctx, c)), now)...)
	sortWaivers(rows)
	if o.Output != outputTable {
		if rows == nil {
			rows = []WaiverRow{}
		}
		return printData(o.Streams.Out, o.Output, rows)
	}
	if len(rows) == 0 {
		o.errorf("No waivers found %s.\n", scope(ns))
		return nil
	}
	t := newTable("NAMESPACE", "SOURCE", "NAME", "MODEL", "DUTIES", "OBJECTS", "ACTIVE", "EXPIRES", "GRANTED BY", "TICKET", "REASON")
	t.wrap, t.width = []int{4, 7, 8, 9, 10}, o.width()
	t.optional = []string{"TICKET", "GRANTED BY", "MODEL", "OBJECTS"}
	for _, r := range rows {
		t.add(r.Namespace, r.Source, r.Name, r.Model, strings.Join(r.Duties, ", "), strconv.Itoa(int(r.WaivedObjects)), r.Active,
			expiresText(r, now), r.GrantedBy, r.Ticket, r.Reason)
	}
	if dropped := t.fit(); len(dropped) > 0 {
		what := "the column " + dropped[0] + " is"
		if len(dropped) > 1 {
			what = "the columns " + strings.Join(dropped, ", ") + " are"
		}
		o.errorf("Note: %s left out to fit the terminal's %d columns; -o yaml prints every field.\n", what, t.width)
	}
	return t.print(o.Streams.Out, o.Color)
}

// warnListing warns, as unmet does, about the kinds that could not be
// listed.
func (o *Options) warnListing(l *FlaggedList, ns string, all bool) {
	for _, w := range l.Warnings {
		o.errorf("Warning: %s\n", sanitize(w))
	}
	if l.Listed == 0 && len(l.Forbidden) > 0 {
		o.errorf("Warning: you may not list any of the %d kinds that could carry duties %s (%s)%s\n",
			len(l.Forbidden), scope(ns), summarize(l.Forbidden, 5), allNamespacesHint(all))
	}
}

// dutyWaiverRow is the row of a DutyWaiver. Its expiry is read against now
// rather than from its status, so that a waiver reads Expired from the
// instant the operator stops applying it.
func dutyWaiverRow(dw *v1alpha1.DutyWaiver, now time.Time) WaiverRow {
	r := WaiverRow{
		Namespace: dw.Namespace, Source: sourceDutyWaiver, Name: dw.Name, Model: dw.Spec.Model,
		Duties: slices.Clone(dw.Spec.Duties), WaivedObjects: dw.Status.WaivedObjects, Objects: dw.Status.Objects,
		Ticket: dw.Spec.Ticket, Reason: dw.Spec.Reason,
	}
	if r.Duties == nil {
		r.Duties = []string{}
	}
	if dw.Spec.GrantedBy != nil {
		r.GrantedBy = dw.Spec.GrantedBy.User
	}
	if dw.Spec.Expires != nil {
		at := dw.Spec.Expires.UTC()
		r.Expires = &at
		r.Expired = !now.Before(at)
	}
	accepted := meta.FindStatusCondition(dw.Status.Conditions, v1alpha1.ConditionWaiverAccepted)
	if accepted != nil && accepted.Status == metav1.ConditionFalse {
		r.Message = accepted.Message
	}
	active := meta.FindStatusCondition(dw.Status.Conditions, v1alpha1.ConditionWaiverActive)
	switch {
	case r.Expired:
		r.Active = activeExpired
	case active == nil:
		r.Active = activeUnknown
	case active.Status == metav1.ConditionTrue && accepted != nil && accepted.Status == metav1.ConditionFalse && accepted.Reason != "":
		r.Active = activeTrue + " (" + accepted.Reason + ")"
	case active.Status == metav1.ConditionTrue:
		r.Active = activeTrue
	case active.Reason != "":
		r.Active = active.Reason
	default:
		r.Active = string(active.Status)
	}
	return r
}

// annotationWaiverRows are the waiver annotations of objects, one row per
// object and duty. Whether one applies is read from what the operator
// wrote: the duty's state (Waived, by no DutyWaiver) and the
// ignored-waivers annotation, and from the models' waiver policies when
// the user may read models.
func annotationWaiverRows(objects []Flagged, policies map[string]v1alpha1.WaiverPolicy, now time.Time) []WaiverRow {
	var rows []WaiverRow
	for _, obj := range objects {
		var waived []string
		for key := range obj.Annotations {
			if duty, ok := strings.CutPrefix(key, v1alpha1.AnnotationWaivePrefix); ok {
				waived = append(waived, duty)
			}
		}
		if len(waived) == 0 {
			continue
		}
		slices.Sort(waived)
		ref := ObjectRef{APIVersion: obj.GVK.GroupVersion().String(), Kind: obj.GVK.Kind, Namespace: obj.Namespace, Name: obj.Name}
		duties, dutiesErr := parseDuties(obj.Annotations[v1alpha1.AnnotationDuties])
		ignored := splitList(obj.Annotations[v1alpha1.AnnotationIgnoredWaivers])
		for _, duty := range waived {
			value := obj.Annotations[v1alpha1.AnnotationWaivePrefix+duty]
			r := WaiverRow{
				Namespace: obj.Namespace, Source: sourceAnnotation, Name: resourceArg(obj.GVK, obj.Name), Object: &ref,
				Duties: []string{duty}, Reason: annotationReason(value),
			}
			if exp := evaluate.WaiverExpiry(value); !exp.IsZero() {
				r.Expires = &exp
				r.Expired = !now.Before(exp)
			} else if rest, ok := strings.CutPrefix(value, v1alpha1.WaiverExpiresPrefix); ok {
				r.InvalidExpiry, _, _ = strings.Cut(rest, ": ")
			}
			var models []string
			for _, d := range duties {
				if d.Duty != duty {
					continue
				}
				models = append(models, d.Model)
				if d.State == v1alpha1.DutyWaived && d.Waiver == "" {
					r.WaivedObjects = 1
				}
			}
			r.Model = strings.Join(models, ", ")
			r.Active, r.Message = annotationActive(r, models, dutiesErr, contains(ignored, duty), policies)
			rows = append(rows, r)
		}
	}
	return rows
}

// annotationActive says whether a waiver annotation applies, and why not
// when it does not.
func annotationActive(r WaiverRow, models []string, dutiesErr error, ignored bool, policies map[string]v1alpha1.WaiverPolicy) (active, message string) {
	if dutiesErr != nil {
		return activeUnknown, dutiesErr.Error()
	}
	if len(models) == 0 {
		return activeDutyNotFound, fmt.Sprintf("no model of the object has a duty named %q", r.Duties[0])
	}
	var refusals []string
	for _, m := range models {
		policy, known := policies[m]
		switch {
		case !known || policy.AcceptsAnnotations():
		case policy.AcceptsDutyWaivers():
			refusals = append(refusals, "model "+m+" accepts DutyWaivers only, not waiver annotations")
		default:
			refusals = append(refusals, "model "+m+" forbids waivers")
		}
	}
	switch {
	case len(refusals) == len(models):
		return activeNotAccepted, strings.Join(refusals, "; ")
	case r.InvalidExpiry != "":
		return activeNotAccepted, fmt.Sprintf("its expiry %q is not an RFC 3339 time", r.InvalidExpiry)
	case r.Expired:
		return activeExpired, ""
	case ignored:
		return activeNotAccepted, "the operator ignores it: see the object's WaiverIgnored event"
	}
	return activeTrue, ""
}

// annotationReason is the reason of a waiver annotation's value: the value,
// or what follows "expires <time>: ".
func annotationReason(value string) string {
	rest, ok := strings.CutPrefix(value, v1alpha1.WaiverExpiresPrefix)
	if !ok {
		return value
	}
	_, reason, _ := strings.Cut(rest, ": ")
	return reason
}

// sortWaivers sorts waivers by expiry, the soonest (or longest expired)
// first and those without one last, then by namespace, name and duties.
func sortWaivers(rows []WaiverRow) {
	slices.SortStableFunc(rows, func(a, b WaiverRow) int {
		switch {
		case a.Expires != nil && b.Expires != nil:
			if c := a.Expires.Compare(*b.Expires); c != 0 {
				return c
			}
		case a.Expires != nil:
			return -1
		case b.Expires != nil:
			return 1
		}
		for _, pair := range [][2]string{{a.Namespace, b.Namespace}, {a.Source, b.Source}, {a.Name, b.Name}, {strings.Join(a.Duties, ","), strings.Join(b.Duties, ",")}} {
			if c := strings.Compare(pair[0], pair[1]); c != 0 {
				return c
			}
		}
		return 0
	})
}

// expiresText is a waiver's expiry with the time left:
// "2027-01-31T00:00:00Z (in 12d)", "2026-08-01T09:00:00Z (expired 3h ago)",
// or "never".
func expiresText(r WaiverRow, now time.Time) string {
	switch {
	case r.InvalidExpiry != "":
		return fmt.Sprintf("invalid: %q", r.InvalidExpiry)
	case r.Expires == nil:
		return "never"
	}
	return r.Expires.UTC().Format(time.RFC3339) + " (" + timeLeft(*r.Expires, now) + ")"
}

// timeLeft is "in 12d" before at, "expired 3h ago" from at on, in the units
// of kubectl's ages.
func timeLeft(at, now time.Time) string {
	if now.Before(at) {
		return "in " + duration.HumanDuration(at.Sub(now))
	}
	return "expired " + duration.HumanDuration(now.Sub(at)) + " ago"
}

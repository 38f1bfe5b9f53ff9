package plugin

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/duration"

	"github.com/responsibility-operator/responsibility-operator/api/v1alpha1"
	"github.com/responsibility-operator/responsibility-operator/internal/evaluate"
)

// maxEvents is how many of an object's most recent events show prints.
const maxEvents = 10

// ObjectView is what show prints: one object's matrix, duties and events.
type ObjectView struct {
	ObjectRef
	Status         string      `json:"status,omitempty"`
	Models         []string    `json:"models"`
	Provider       string      `json:"provider,omitempty"`
	Service        string      `json:"service,omitempty"`
	Matrix         []MatrixRow `json:"matrix"`
	Duties         []DutyRow   `json:"duties"`
	IgnoredWaivers []string    `json:"ignoredWaivers,omitempty"`
	// EventsHeldUntil is, on a new object, until when its duty events wait
	// for the objects applied with it (responsibility.io/events-held-until).
	EventsHeldUntil string  `json:"eventsHeldUntil,omitempty"`
	Events          []Event `json:"events"`
	// Problems are annotations that could not be read and events that
	// could not be listed.
	Problems []string `json:"problems,omitempty"`

	matrixProblem, dutiesProblem, eventsProblem string
	// areaOrder is each model's areas in the order of its spec, when the
	// user may read models.
	areaOrder map[string]map[string]int
}

// showFlags are the table options of show.
type showFlags struct {
	// customer shows only the customer's side of the matrix.
	customer bool
	// hideNA hides the matrix rows where the customer has nothing to do.
	hideNA bool
}

func newShowCommand(o *Options) *cobra.Command {
	var flags showFlags
	cmd := &cobra.Command{
		Use:   "show KIND/NAME",
		Short: "Show an object's responsibility matrix, its customer duties and the operator's events",
		Long: `Show what the responsibility-operator wrote on one object: the matrix of every
model that applies (who is responsible for what), the state of each customer duty
with what to do and how to waive it, and the object's recent responsibility events.
KIND is resolved like kubectl does: a short name, a plural, or resource.group.`,
		Example: `  kubectl responsibility show vm/web-vm -n shop
  kubectl responsibility show clusters.postgresql.cnpg.io/orders-db
  kubectl responsibility show deployment wordpress -o yaml
  kubectl responsibility show vm/web-vm --customer --hide-na   # only what the customer does`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error { return o.show(cmd.Context(), args, flags) },
	}
	cmd.Flags().BoolVar(&flags.customer, "customer", false, "Show only the customer's side of the matrix.")
	cmd.Flags().BoolVar(&flags.hideNA, "hide-na", false, "Hide the matrix rows where the customer's side is N/A.")
	return cmd
}

func (o *Options) show(ctx context.Context, args []string, flags showFlags) error {
	c, err := o.cluster()
	if err != nil {
		return err
	}
	ns, err := c.DefaultNamespace()
	if err != nil {
		return err
	}
	obj, err := c.Get(ctx, ns, args)
	if err != nil {
		return err
	}
	models := readableModels(ctx, c)
	view := newObjectView(obj, waiverPolicies(models))
	view.areaOrder = areaOrders(models)
	events, err := c.Events(ctx, obj)
	if err != nil {
		view.eventsProblem = fmt.Sprintf("could not be read: %v", err)
		view.Problems = append(view.Problems, "events "+view.eventsProblem)
	}
	view.Events = recentEvents(events)
	if o.Output != outputTable {
		return printData(o.Streams.Out, o.Output, view)
	}
	w := &printer{w: o.Streams.Out}
	return w.done(o.printObject(w, view, flags))
}

// readableModels lists the models the user may read; nil when the user may
// not list models, which is fine for show.
func readableModels(ctx context.Context, c Cluster) []v1alpha1.ResponsibilityModel {
	models, err := c.Models(ctx)
	if err != nil {
		return nil
	}
	return models
}

// waiverPolicies returns the waiver policy of each model.
func waiverPolicies(models []v1alpha1.ResponsibilityModel) map[string]v1alpha1.WaiverPolicy {
	if models == nil {
		return nil
	}
	out := make(map[string]v1alpha1.WaiverPolicy, len(models))
	for i := range models {
		out[models[i].Name] = models[i].Spec.Waivers
	}
	return out
}

// areaOrders returns each model's areas by their position in its spec.
func areaOrders(models []v1alpha1.ResponsibilityModel) map[string]map[string]int {
	out := make(map[string]map[string]int, len(models))
	for i := range models {
		order := make(map[string]int, len(models[i].Spec.Areas))
		for j, a := range models[i].Spec.Areas {
			order[a.Name] = j
		}
		out[models[i].Name] = order
	}
	return out
}

func newObjectView(obj *unstructured.Unstructured, policies map[string]v1alpha1.WaiverPolicy) ObjectView {
	objAnnotations := obj.GetAnnotations()
	a := readAnnotations(objAnnotations)
	view := ObjectView{
		ObjectRef:       refOf(obj),
		Status:          obj.GetLabels()[v1alpha1.LabelStatus],
		Models:          a.Models,
		Provider:        a.Provider,
		Service:         a.Service,
		Matrix:          a.Matrix,
		Duties:          a.Duties,
		IgnoredWaivers:  a.IgnoredWaivers,
		EventsHeldUntil: objAnnotations[v1alpha1.AnnotationEventsHeldUntil],
		matrixProblem:   a.MatrixProblem,
		dutiesProblem:   a.DutiesProblem,
	}
	for _, p := range []string{a.MatrixProblem, a.DutiesProblem} {
		if p != "" {
			view.Problems = append(view.Problems, p)
		}
	}
	for i := range view.Duties {
		d := &view.Duties[i]
		d.Waive = waiveHint(*d, objAnnotations, a.IgnoredWaivers, policies, obj.GetNamespace() != "")
		if d.Waiver != "" {
			// A DutyWaiver waives it; its message says until when.
			continue
		}
		if exp := evaluate.WaiverExpiry(objAnnotations[v1alpha1.AnnotationWaivePrefix+d.Duty]); !exp.IsZero() {
			d.WaiverExpires = &exp
		}
	}
	return view
}

// ignoredWaivers lists the ignored waivers for a person: each duty, with
// when its waiver expired if that is why.
// eventsHeld says until when a new object's duty events wait, if they do.
func (v ObjectView) eventsHeld() string {
	if v.EventsHeldUntil == "" {
		return ""
	}
	return "until " + v.EventsHeldUntil + " (a new object: its duty events wait for the objects applied with it; its states above are current)"
}

func (v ObjectView) ignoredWaivers(now time.Time) string {
	expired := map[string]time.Time{}
	for _, d := range v.Duties {
		if d.WaiverExpires != nil && !now.Before(*d.WaiverExpires) {
			expired[d.Duty] = *d.WaiverExpires
		}
	}
	out := make([]string, len(v.IgnoredWaivers))
	for i, duty := range v.IgnoredWaivers {
		out[i] = duty
		if at, ok := expired[duty]; ok {
			out[i] += " (expired " + at.UTC().Format(time.RFC3339) + ")"
		}
	}
	return strings.Join(out, ", ")
}

// recentEvents sorts events oldest first and keeps the last maxEvents.
func recentEvents(events []Event) []Event {
	sort.SliceStable(events, func(i, j int) bool { return events[i].Last.Before(events[j].Last) })
	if len(events) > maxEvents {
		events = events[len(events)-maxEvents:]
	}
	if events == nil {
		events = []Event{}
	}
	return events
}

func (o *Options) printObject(w *printer, v ObjectView, flags showFlags) error {
	gvk := v.GVK()
	if err := printFields(w,
		"Object", v.String(),
		"Status", v.Status,
		"Models", strings.Join(v.Models, ", "),
		"Provider", v.Provider,
		"Service", v.Service,
		"Ignored waivers?", v.ignoredWaivers(o.Now()),
		"Events held?", v.eventsHeld(),
	); err != nil {
		return err
	}
	if len(v.Models) == 0 && len(v.Matrix) == 0 && len(v.Duties) == 0 && len(v.Problems) == 0 {
		w.println("\nNo ResponsibilityModel applies to this object: it carries no responsibility.io annotations.")
	}
	if err := o.printMatrix(w, v, flags); err != nil {
		return err
	}
	if err := o.printDuties(w, v, gvk); err != nil {
		return err
	}
	return o.printEvents(w, v)
}

// section prints a section's title, followed by its problem when it has
// one. It returns whether the section's rows are to be printed.
func section(w *printer, title, problem string, rows int) bool {
	if problem == "" && rows == 0 {
		return false
	}
	w.printf("\n%s\n", title)
	if problem != "" {
		w.printf("  %s\n", sanitize(problem))
		return false
	}
	return true
}

// printMatrix prints the matrix in each model's area order (when the user
// may read models; else as the annotation lists it), wrapped to the
// terminal, with only the customer's side or without N/A rows if asked.
func (o *Options) printMatrix(w *printer, v ObjectView, flags showFlags) error {
	rows := slices.Clone(v.Matrix)
	if flags.hideNA {
		rows = slices.DeleteFunc(rows, func(m MatrixRow) bool { return isNA(m.Customer) })
	}
	if !section(w, "MATRIX", v.matrixProblem, len(rows)) {
		if v.matrixProblem == "" && len(v.Matrix) > 0 {
			w.printf("\nMATRIX\n  every area is N/A for the customer\n")
		}
		return nil
	}
	slices.SortStableFunc(rows, func(a, b MatrixRow) int {
		if a.Model != b.Model {
			return strings.Compare(a.Model, b.Model)
		}
		order := v.areaOrder[a.Model]
		ia, oka := order[a.Area]
		ib, okb := order[b.Area]
		if oka && okb {
			return ia - ib
		}
		return 0
	})
	t := newTable("MODEL", "AREA", "PROVIDER", "CUSTOMER")
	t.wrap = []int{2, 3}
	if flags.customer {
		t = newTable("MODEL", "AREA", "CUSTOMER")
		t.wrap = []int{2}
	}
	t.width = o.width()
	for _, m := range rows {
		if flags.customer {
			t.add(m.Model, m.Area, m.Customer)
		} else {
			t.add(m.Model, m.Area, m.Provider, m.Customer)
		}
	}
	return t.print(w, o.Color)
}

// isNA is whether a matrix cell says the party has nothing to do.
func isNA(cell string) bool {
	return strings.EqualFold(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(cell), ".")), "N/A")
}

// stateOrder puts the duties that need work first: unmet, unknown, waived, met.
var stateOrder = map[v1alpha1.DutyState]int{v1alpha1.DutyUnmet: 0, v1alpha1.DutyUnknown: 1, v1alpha1.DutyWaived: 2, v1alpha1.DutyMet: 3}

func (o *Options) printDuties(w *printer, v ObjectView, gvk schema.GroupVersionKind) error {
	if !section(w, "DUTIES", v.dutiesProblem, len(v.Duties)) {
		return nil
	}
	t := newTable("MODEL", "DUTY", "STATE", "MESSAGE", "WAIVE WITH")
	t.stateColumn = 2
	t.wrap, t.width = []int{3, 4}, o.width()
	waivable, askDutyWaiver := "", false
	duties := slices.Clone(v.Duties)
	slices.SortStableFunc(duties, func(a, b DutyRow) int { return stateOrder[a.State] - stateOrder[b.State] })
	for _, d := range duties {
		t.add(d.Model, d.Duty, string(d.State), d.Message, d.Waive)
		if waivable == "" && strings.HasPrefix(d.Waive, v1alpha1.AnnotationWaivePrefix) {
			waivable = d.Waive
		}
		askDutyWaiver = askDutyWaiver || d.Waive == dutyWaiverHint(d.Model)
	}
	if err := t.print(w, o.Color); err != nil {
		return err
	}
	nsFlag := ""
	if v.Namespace != "" {
		nsFlag = "-n " + v.Namespace + " "
	}
	if waivable != "" {
		w.printf("\nFix an unmet duty, or waive it with a reason, for example:\n  kubectl annotate %s%s %s\n", nsFlag, resourceArg(gvk, v.Name), sanitize(waivable))
	}
	if askDutyWaiver {
		w.printf("\nFix an unmet duty, or ask for a DutyWaiver: whoever holds the waiver-approver role in namespace %s\n"+
			"creates one. The namespace's waivers:\n  kubectl responsibility waivers %s\n", sanitize(v.Namespace), strings.TrimSpace(nsFlag))
	}
	return nil
}

func (o *Options) printEvents(w *printer, v ObjectView) error {
	problem := v.eventsProblem
	if problem == "" && len(v.Events) == 0 {
		problem = "none in the event retention window"
	}
	if !section(w, "EVENTS", problem, len(v.Events)) {
		return nil
	}
	t := newTable("AGE", "TYPE", "REASON", "MESSAGE")
	t.wrap, t.width = []int{3}, o.width()
	for _, e := range v.Events {
		t.add(eventAge(e, o.Now()), e.Type, e.Reason, e.Message)
	}
	return t.print(w, o.Color)
}

// eventAge is the age column of kubectl describe: "5m", or "5m (x3 over 20m)".
func eventAge(e Event, now time.Time) string {
	if e.Last.IsZero() {
		return "unknown"
	}
	age := duration.HumanDuration(now.Sub(e.Last))
	if e.Count > 1 && !e.First.IsZero() {
		return fmt.Sprintf("%s (x%d over %s)", age, e.Count, duration.HumanDuration(now.Sub(e.First)))
	}
	return age
}

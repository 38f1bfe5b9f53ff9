package plugin

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/responsibility-operator/responsibility-operator/api/v1alpha1"
	"github.com/responsibility-operator/responsibility-operator/internal/evaluate"
)

// UnmetRow is one unmet or unknown duty of one object, or of a namespace:
// a namespace-wide duty (scope Namespace) is one row that regards the
// Namespace and lists the objects of the model there.
type UnmetRow struct {
	ObjectRef
	Model   string             `json:"model"`
	Duty    string             `json:"duty"`
	State   v1alpha1.DutyState `json:"state"`
	Message string             `json:"message,omitempty"`
	// Scope is "Namespace" for a namespace-wide duty; absent for an
	// object's.
	Scope string `json:"scope,omitempty"`
	// Objects are the objects (kind/name) that share a namespace-wide
	// finding.
	Objects []string `json:"objects,omitempty"`
}

// UnmetSummaryRow is one duty unmet or unknown on some objects of one
// namespace (unmet --summary).
type UnmetSummaryRow struct {
	Namespace string             `json:"namespace"`
	Model     string             `json:"model"`
	Duty      string             `json:"duty"`
	State     v1alpha1.DutyState `json:"state"`
	Objects   int                `json:"objects"`
	// Example is one of the objects, kind/name.
	Example string `json:"example"`
}

func newUnmetCommand(o *Options) *cobra.Command {
	var all, summary bool
	cmd := &cobra.Command{
		Use:   "unmet [-A | -n NAMESPACE]",
		Short: "List every unmet or unknown customer duty, one row per duty",
		Long: `List the objects the operator labelled responsibility.io/status=unmet or unknown,
one row per unmet or unknown duty. With permission to list ResponsibilityModels it
lists their target kinds; without (a tenant with a namespaced Role), it lists every
namespaced kind that discovery reports and skips the kinds it may not read.`,
		Example: `  kubectl responsibility unmet -n team-a
  kubectl responsibility unmet -A -o json
  kubectl responsibility unmet -A --summary       # one row per namespace, model and duty`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return o.unmet(cmd.Context(), all, summary) },
	}
	cmd.Flags().BoolVarP(&all, "all-namespaces", "A", false, "List the duties of every namespace.")
	cmd.Flags().BoolVar(&summary, "summary", false, "One row per namespace, model, duty and state, with the number of objects.")
	return cmd
}

func (o *Options) unmet(ctx context.Context, all, summary bool) error {
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
	flagged, err := c.Flagged(ctx, ns)
	if err != nil {
		return err
	}
	o.warnListing(flagged, ns, all)
	rows := unmetRows(flagged.Objects)
	if summary {
		return o.printUnmetSummary(summarizeUnmet(rows), ns)
	}
	if o.Output != outputTable {
		if rows == nil {
			rows = []UnmetRow{}
		}
		return printData(o.Streams.Out, o.Output, rows)
	}
	if len(rows) == 0 {
		o.errorf("No unmet or unknown duties found %s.\n", scope(ns))
		return nil
	}
	t := newTable("NAMESPACE", "KIND", "NAME", "MODEL", "DUTY", "STATE", "MESSAGE")
	t.stateColumn = 5
	t.wrap, t.width = []int{6}, o.width()
	for _, r := range rows {
		msg := r.Message
		if len(r.Objects) > 0 {
			msg = fmt.Sprintf("%s (namespace-wide: %s, %s)", msg, plural(len(r.Objects), "object"), summarize(r.Objects, 3))
		}
		t.add(r.Namespace, kindName(r.GVK()), r.Name, r.Model, r.Duty, string(r.State), msg)
	}
	return t.print(o.Streams.Out, o.Color)
}

// summarizeUnmet groups rows by namespace, model, duty and state, in the
// rows' order.
func summarizeUnmet(rows []UnmetRow) []UnmetSummaryRow {
	index := map[[4]string]int{}
	out := []UnmetSummaryRow{}
	for _, r := range rows {
		key := [4]string{r.Namespace, r.Model, r.Duty, string(r.State)}
		i, ok := index[key]
		if !ok {
			i = len(out)
			index[key] = i
			example := resourceArg(r.GVK(), r.Name)
			if len(r.Objects) > 0 {
				example = r.Objects[0]
			}
			out = append(out, UnmetSummaryRow{Namespace: r.Namespace, Model: r.Model, Duty: r.Duty, State: r.State, Example: example})
		}
		out[i].Objects += max(1, len(r.Objects))
	}
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i], out[j]
		for _, pair := range [][2]string{{a.Namespace, b.Namespace}, {a.Model, b.Model}, {a.Duty, b.Duty}, {string(a.State), string(b.State)}} {
			if pair[0] != pair[1] {
				return pair[0] < pair[1]
			}
		}
		return false
	})
	return out
}

func (o *Options) printUnmetSummary(rows []UnmetSummaryRow, ns string) error {
	if o.Output != outputTable {
		return printData(o.Streams.Out, o.Output, rows)
	}
	if len(rows) == 0 {
		o.errorf("No unmet or unknown duties found %s.\n", scope(ns))
		return nil
	}
	t := newTable("NAMESPACE", "MODEL", "DUTY", "STATE", "OBJECTS", "FOR EXAMPLE")
	t.stateColumn = 3
	for _, r := range rows {
		t.add(r.Namespace, r.Model, r.Duty, string(r.State), strconv.Itoa(r.Objects), r.Example)
	}
	return t.print(o.Streams.Out, o.Color)
}

func scope(ns string) string {
	if ns == "" {
		return "in any namespace"
	}
	return "in namespace " + ns
}

func allNamespacesHint(all bool) string {
	if all {
		return ": a namespaced Role does not allow listing across namespaces, use -n NAMESPACE"
	}
	return ""
}

// summarize lists at most n names and counts the rest.
func summarize(names []string, n int) string {
	if len(names) <= n {
		return strings.Join(names, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(names[:n], ", "), len(names)-n)
}

// unmetRows are the unmet and unknown duties of flagged objects, sorted by
// namespace, kind, name, model and duty. An object whose duties annotation
// does not parse, or lists no such duty although the label says so, gets
// one Unknown row that says why.
func unmetRows(objects []Flagged) []UnmetRow {
	var rows []UnmetRow
	for _, obj := range objects {
		base := UnmetRow{ObjectRef: ObjectRef{APIVersion: obj.GVK.GroupVersion().String(), Kind: obj.GVK.Kind, Namespace: obj.Namespace, Name: obj.Name}}
		duties, err := parseDuties(obj.Annotations[v1alpha1.AnnotationDuties])
		if err != nil {
			r := base
			r.State, r.Message = v1alpha1.DutyUnknown, err.Error()
			rows = append(rows, r)
			continue
		}
		found := false
		for _, d := range duties {
			if d.State != v1alpha1.DutyUnmet && d.State != v1alpha1.DutyUnknown {
				continue
			}
			found = true
			r := base
			r.Model, r.Duty, r.State, r.Message, r.Scope = d.Model, d.Duty, d.State, d.Message, d.Scope
			rows = append(rows, r)
		}
		if !found {
			r := base
			r.State = v1alpha1.DutyUnknown
			r.Message = fmt.Sprintf("labelled %s=%s, but the annotation %s lists no unmet or unknown duty: the operator has not evaluated it yet, or someone edited it",
				v1alpha1.LabelStatus, obj.Labels[v1alpha1.LabelStatus], v1alpha1.AnnotationDuties)
			rows = append(rows, r)
		}
	}
	rows = foldNamespaceFindings(rows)
	sort.SliceStable(rows, func(i, j int) bool {
		a, b := rows[i], rows[j]
		for _, pair := range [][2]string{{a.Namespace, b.Namespace}, {a.Kind, b.Kind}, {a.APIVersion, b.APIVersion}, {a.Name, b.Name}, {a.Model, b.Model}, {a.Duty, b.Duty}, {a.Message, b.Message}} {
			if pair[0] != pair[1] {
				return pair[0] < pair[1]
			}
		}
		return false
	})
	return rows
}

// foldNamespaceFindings turns the rows of a namespace-wide duty into one row
// of the namespace per model, duty, state and message, regarding the
// Namespace and listing the objects (kind/name, sorted) that share it.
func foldNamespaceFindings(rows []UnmetRow) []UnmetRow {
	out := rows[:0:0]
	index := map[[5]string]int{}
	for _, r := range rows {
		if r.Scope != evaluate.ScopeNamespace || r.Namespace == "" {
			out = append(out, r)
			continue
		}
		key := [5]string{r.Namespace, r.Model, r.Duty, string(r.State), r.Message}
		i, ok := index[key]
		if !ok {
			i = len(out)
			index[key] = i
			out = append(out, UnmetRow{ObjectRef: ObjectRef{APIVersion: "v1", Kind: "Namespace", Namespace: r.Namespace, Name: r.Namespace},
				Model: r.Model, Duty: r.Duty, State: r.State, Message: r.Message, Scope: r.Scope})
		}
		out[i].Objects = append(out[i].Objects, resourceArg(r.GVK(), r.Name))
	}
	for i := range out {
		sort.Strings(out[i].Objects)
	}
	return out
}

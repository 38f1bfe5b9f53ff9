package plugin

import (
	"context"
	"fmt"
	"strings"
	"unicode"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/duration"

	"github.com/responsibility-operator/responsibility-operator/api/v1alpha1"
	"github.com/responsibility-operator/responsibility-operator/internal/evaluate"
)

// ModelView is what explain prints: one model's summary (as models lists
// it), its targets with their selectors, its matrix and its duties.
type ModelView struct {
	ModelRow
	Description string                `json:"description,omitempty"`
	Waivers     v1alpha1.WaiverPolicy `json:"waivers"`
	// WaiverExpiry is the model's spec.waiverExpiry, when it has one.
	WaiverExpiry    *v1alpha1.WaiverExpiry `json:"waiverExpiry,omitempty"`
	TargetSelectors []TargetView           `json:"targetSelectors"`
	Matrix          []MatrixRow            `json:"matrix"`
	DutyRules       []DutyView             `json:"dutyRules"`
}

// TargetView is one target of a model.
type TargetView struct {
	APIVersion        string `json:"apiVersion"`
	Kind              string `json:"kind"`
	Selector          string `json:"selector,omitempty"`
	NamespaceSelector string `json:"namespaceSelector,omitempty"`
}

// DutyView is one duty of a model, with its counts from the model's status.
type DutyView struct {
	Area              string              `json:"area"`
	Name              string              `json:"name"`
	Severity          v1alpha1.Severity   `json:"severity"`
	Description       string              `json:"description,omitempty"`
	Rule              string              `json:"rule"`
	Message           string              `json:"message,omitempty"`
	MessageExpression string              `json:"messageExpression,omitempty"`
	Related           []RelatedView       `json:"related,omitempty"`
	Counts            v1alpha1.DutyStatus `json:"counts"`
	// Admission is the duty's admission action (spec.admission), absent for
	// None; AdmissionOperatorOnly says why the API server cannot evaluate
	// it, when it cannot.
	Admission             v1alpha1.AdmissionAction `json:"admission,omitempty"`
	AdmissionOperatorOnly string                   `json:"admissionOperatorOnly,omitempty"`
}

// RelatedView is one related list a duty's rule reads.
type RelatedView struct {
	Name       string `json:"name"`
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Selector   string `json:"selector,omitempty"`
	Namespace  string `json:"namespace,omitempty"`
}

func newExplainCommand(o *Options) *cobra.Command {
	return &cobra.Command{
		Use:   "explain MODEL",
		Short: "Show one ResponsibilityModel: its targets, full matrix and duties with their rules",
		Example: `  kubectl responsibility explain danubedata-managed-databases
  kubectl responsibility explain danubedata-vps -o yaml`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error { return o.explain(cmd.Context(), args[0]) },
	}
}

func (o *Options) explain(ctx context.Context, name string) error {
	c, err := o.cluster()
	if err != nil {
		return err
	}
	rm, err := c.Model(ctx, name)
	if apierrors.IsNotFound(err) && !isResourceNotFound(err) {
		return fmt.Errorf("no ResponsibilityModel named %q: list them with kubectl responsibility models", name)
	}
	if err != nil {
		return modelsError(err, "get")
	}
	view := newModelView(rm)
	if o.Output != outputTable {
		return printData(o.Streams.Out, o.Output, view)
	}
	w := &printer{w: o.Streams.Out}
	return w.done(o.printModel(w, view))
}

func newModelView(rm *v1alpha1.ResponsibilityModel) ModelView {
	waivers := rm.Spec.Waivers
	if waivers == "" {
		waivers = v1alpha1.WaiversAllowed
	}
	v := ModelView{
		ModelRow: modelRow(rm), Description: rm.Spec.Description, Waivers: waivers, WaiverExpiry: rm.Spec.WaiverExpiry,
		TargetSelectors: []TargetView{}, Matrix: []MatrixRow{}, DutyRules: []DutyView{},
	}
	for _, t := range rm.Spec.Targets {
		v.TargetSelectors = append(v.TargetSelectors, TargetView{APIVersion: t.APIVersion, Kind: t.Kind, Selector: formatSelector(t.Selector), NamespaceSelector: formatSelector(t.NamespaceSelector)})
	}
	counts := map[string]v1alpha1.DutyStatus{}
	for _, d := range rm.Status.Duties {
		counts[d.Name] = d
	}
	admission := map[string]evaluate.AdmissionDuty{}
	if m, err := evaluate.Compile(rm); err == nil {
		for _, d := range m.Admission() {
			admission[d.Name] = d
		}
	}
	for _, a := range rm.Spec.Areas {
		v.Matrix = append(v.Matrix, MatrixRow{Model: rm.Name, Area: a.Name, Provider: a.Provider, Customer: a.Customer})
		for _, d := range a.Duties {
			dv := DutyView{
				Area: a.Name, Name: d.Name, Severity: d.Severity, Description: d.Description,
				Rule: d.Rule, Message: d.Message, MessageExpression: d.MessageExpression, Counts: counts[d.Name],
			}
			if dv.Severity == "" {
				dv.Severity = v1alpha1.SeverityWarning
			}
			dv.Counts.Name = d.Name
			if a, ok := admission[d.Name]; ok {
				dv.Admission, dv.AdmissionOperatorOnly = a.Action, a.NotEvaluable
			}
			for _, r := range d.Related {
				dv.Related = append(dv.Related, RelatedView{Name: r.Name, APIVersion: r.APIVersion, Kind: r.Kind, Selector: formatSelector(r.Selector), Namespace: r.Namespace})
			}
			v.DutyRules = append(v.DutyRules, dv)
		}
	}
	return v
}

func formatSelector(s *metav1.LabelSelector) string {
	if s == nil {
		return ""
	}
	if out := metav1.FormatLabelSelector(s); out != "<none>" {
		return out
	}
	return ""
}

func (o *Options) printModel(w *printer, v ModelView) error {
	if err := printFields(w,
		"Name", v.Name,
		"Service", v.Service,
		"Provider", v.Provider,
		"Description?", v.Description,
		"Waivers", waiverPolicyText(v.Waivers),
		"Waiver expiry?", waiverExpiryText(v.Waivers, v.WaiverExpiry),
		"Ready", v.Ready,
		"Objects", fmt.Sprintf("%d matched, %d with an unmet duty", v.Matched, v.Unmet),
	); err != nil {
		return err
	}
	w.println("\nTARGETS")
	targets := newTable("API VERSION", "KIND", "SELECTOR", "NAMESPACE SELECTOR")
	for _, t := range v.TargetSelectors {
		targets.add(t.APIVersion, t.Kind, t.Selector, t.NamespaceSelector)
	}
	if err := targets.print(w, o.Color); err != nil {
		return err
	}
	w.println("\nMATRIX")
	matrix := newTable("AREA", "PROVIDER", "CUSTOMER")
	for _, m := range v.Matrix {
		matrix.add(m.Area, m.Provider, m.Customer)
	}
	if err := matrix.print(w, o.Color); err != nil {
		return err
	}
	if len(v.DutyRules) == 0 {
		w.println("\nNo duties: the matrix is documentation only.")
		return nil
	}
	w.println("\nDUTIES (objects per state, from the model's status)")
	duties := newTable("AREA", "DUTY", "SEVERITY", "MET", "UNMET", "UNKNOWN", "WAIVED")
	for _, d := range v.DutyRules {
		duties.add(d.Area, d.Name, string(d.Severity), fmt.Sprint(d.Counts.Met), fmt.Sprint(d.Counts.Unmet), fmt.Sprint(d.Counts.Unknown), fmt.Sprint(d.Counts.Waived))
	}
	if err := duties.print(w, o.Color); err != nil {
		return err
	}
	for _, d := range v.DutyRules {
		w.printf("\nDuty %s (area %s, %s):\n", sanitize(d.Name), sanitize(d.Area), d.Severity)
		printBlock(w, "Description", d.Description)
		printBlock(w, "Rule", d.Rule)
		printBlock(w, "Message", d.Message)
		printBlock(w, "Message expression", d.MessageExpression)
		switch {
		case d.Admission != "" && d.AdmissionOperatorOnly != "":
			w.printf("  Admission: %s, but not at kubectl apply: %s, which only the operator can evaluate\n", d.Admission, sanitize(d.AdmissionOperatorOnly))
		case d.Admission != "":
			w.printf("  Admission: %s (the API server answers at kubectl apply, by a ValidatingAdmissionPolicy)\n", d.Admission)
		}
		for _, r := range d.Related {
			where := ""
			if r.Namespace != "" {
				where = " in namespace " + r.Namespace
			}
			if r.Selector != "" {
				where += " with labels " + r.Selector
			}
			w.printf("  Related: related.%s = %s %s%s\n", sanitize(r.Name), sanitize(r.APIVersion), sanitize(r.Kind), sanitize(where))
		}
	}
	return nil
}

// waiverPolicyText is a model's spec.waivers with what it means.
func waiverPolicyText(p v1alpha1.WaiverPolicy) string {
	switch p {
	case v1alpha1.WaiversAllowed:
		return string(p) + " (waiver annotations and DutyWaivers)"
	case v1alpha1.WaiversAnnotations:
		return string(p) + " (waiver annotations only; DutyWaivers are not accepted)"
	case v1alpha1.WaiversDutyWaivers:
		return string(p) + " (DutyWaivers only; waiver annotations are ignored)"
	case v1alpha1.WaiversForbidden:
		return string(p) + " (no waiver applies)"
	}
	return string(p)
}

// waiverExpiryText says what the model requires of a waiver's expiry; ""
// when nothing, or when it accepts no waiver.
func waiverExpiryText(p v1alpha1.WaiverPolicy, e *v1alpha1.WaiverExpiry) string {
	if e == nil || p == v1alpha1.WaiversForbidden {
		return ""
	}
	var out []string
	if e.Required {
		out = append(out, "required")
	}
	if e.MaxDuration != nil && e.MaxDuration.Duration > 0 {
		out = append(out, "at most "+duration.HumanDuration(e.MaxDuration.Duration)+" ahead")
	}
	return strings.Join(out, ", ")
}

// printBlock prints a labelled value on its own indented lines, keeping the
// line breaks and indentation of rules and expressions.
func printBlock(w *printer, label, value string) {
	value = strings.TrimRight(value, "\n ")
	if value == "" {
		return
	}
	w.printf("  %s:\n", label)
	for _, line := range strings.Split(value, "\n") {
		line = strings.Map(func(r rune) rune {
			if unicode.IsControl(r) {
				return ' '
			}
			return r
		}, line)
		w.printf("    %s\n", strings.TrimRight(line, " "))
	}
}

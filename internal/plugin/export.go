package plugin

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"

	"github.com/responsibility-operator/responsibility-operator/api/v1alpha1"
	"github.com/responsibility-operator/responsibility-operator/internal/evidence"
)

// Formats of export --format.
const (
	formatOSCALComponent = "oscal-component"
	formatOSCALAR        = "oscal-ar"
	formatCSV            = "csv"
	formatHTML           = "html"
)

// exportFormat is a format of export with its renderer.
type exportFormat struct {
	name   string
	render func(io.Writer, evidence.Snapshot) error
}

// exportFormats are the formats.
var exportFormats = []exportFormat{
	{formatOSCALComponent, evidence.WriteComponentDefinition},
	{formatOSCALAR, evidence.WriteAssessmentResults},
	{formatCSV, evidence.WriteCSV},
	{formatHTML, evidence.RenderHTML},
}

func exportFormatNames() []string {
	out := make([]string, 0, len(exportFormats))
	for _, f := range exportFormats {
		out = append(out, f.name)
	}
	return out
}

func newExportCommand(o *Options) *cobra.Command {
	var all bool
	var format, file string
	cmd := &cobra.Command{
		Use:   "export --format oscal-component|oscal-ar|csv|html [-n NAMESPACE | -A] [-o FILE] [MODEL...]",
		Short: "Write evidence for auditors: OSCAL documents, CSV or an HTML report, with the time of collection",
		Long: `Write what the cluster holds as evidence an auditor can file, stamped with the time
the objects were read:

  oscal-component  the ResponsibilityModels (all, or the MODELs named) as one OSCAL
                   component definition: a component per model, the provider's and the
                   customer's part of each area, per framework control when areas name them
  oscal-ar         OSCAL assessment results of a namespace (-n) or of every namespace (-A):
                   each evaluated object a subject, each duty's state a finding (met duties
                   satisfied by the object, unmet and unknown ones not), each applied
                   waiver a risk with its reason, ticket, grantor and expiry
  csv              one row per object and duty (RFC 4180)
  html             one self-contained page per namespace to read or print

The OSCAL documents follow OSCAL 1.1.3 and validate against NIST's JSON schemas of
1.1.3 and 1.2.1. Their UUIDs are derived from the names of what they identify: the
same models give the same component definition but for its last-modified time.
import reads a component definition back into models.`,
		Example: `  kubectl responsibility export --format oscal-component -o matrices.json
  kubectl responsibility export --format oscal-ar -n team-a -o team-a-assessment.json
  kubectl responsibility export --format csv -A > duties.csv
  kubectl responsibility export --format html -n team-a -o team-a.html`,
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.export(cmd.Context(), format, all, file, args)
		},
	}
	cmd.Flags().StringVar(&format, "format", "", "What to write: "+strings.Join(exportFormatNames(), ", ")+".")
	cmd.Flags().BoolVarP(&all, "all-namespaces", "A", false, "Export the objects of every namespace.")
	// -o names the file here: it shadows the root's --output (the table,
	// json or yaml format of the other commands).
	cmd.Flags().StringVarP(&file, "output", "o", "", "Write to FILE instead of standard output.")
	_ = cmd.RegisterFlagCompletionFunc("format", func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
		return exportFormatNames(), cobra.ShellCompDirectiveNoFileComp
	})
	return cmd
}

func (o *Options) export(ctx context.Context, format string, all bool, file string, only []string) error {
	i := slices.IndexFunc(exportFormats, func(f exportFormat) bool { return f.name == format })
	if i < 0 {
		if format == "" {
			return fmt.Errorf("--format is required: %s", strings.Join(exportFormatNames(), ", "))
		}
		return fmt.Errorf("unknown format %q: use %s", format, strings.Join(exportFormatNames(), ", "))
	}
	withObjects := format != formatOSCALComponent
	if len(only) > 0 && withObjects {
		return fmt.Errorf("MODEL arguments select the models of --format %s only", formatOSCALComponent)
	}
	c, err := o.cluster()
	if err != nil {
		return err
	}
	ns := ""
	if withObjects && !all {
		if ns, err = c.DefaultNamespace(); err != nil {
			return err
		}
	}
	s, err := o.collect(ctx, c, collectScope{namespace: ns, all: all, objects: withObjects, models: only})
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	if err := exportFormats[i].render(&buf, s); err != nil {
		return fmt.Errorf("write the %s document: %w", format, err)
	}
	if file == "" || file == "-" {
		if _, err := o.Streams.Out.Write(buf.Bytes()); err != nil {
			return fmt.Errorf("write the %s document: %w", format, err)
		}
		return nil
	}
	if err := os.WriteFile(file, buf.Bytes(), 0o644); err != nil { //nolint:gosec // a document for others to read, like kubectl's output
		return fmt.Errorf("write the %s document: %w", format, err)
	}
	o.errorf("Wrote %s (%s): %s.\n", file, format, snapshotSummary(s, withObjects))
	return nil
}

// snapshotSummary counts what a Snapshot holds.
func snapshotSummary(s evidence.Snapshot, withObjects bool) string {
	models := plural(len(s.Models), "model")
	if !withObjects {
		return models
	}
	objects, duties := 0, 0
	for _, ns := range s.Namespaces {
		objects += len(ns.Objects)
		for _, obj := range ns.Objects {
			duties += len(obj.Duties)
		}
	}
	return fmt.Sprintf("%s, %s, %s in %s, collected at %s", models, plural(objects, "object"), plural(duties, "duty state"),
		plural(len(s.Namespaces), "namespace"), s.CollectedAt.Format(time.RFC3339))
}

// collectScope is what collect reads.
type collectScope struct {
	// namespace is the namespace of the objects and waivers, "" for every
	// namespace; all is -A, for the hints of warnings.
	namespace string
	all       bool
	// objects reads the evaluated objects and the waivers, besides the
	// models.
	objects bool
	// models, when set, are the only models to keep.
	models []string
}

// collect reads a Snapshot from the cluster at o.Now(): the models, and
// with sc.objects the evaluated objects of the namespace (their duty
// states from the duties annotation) and its DutyWaivers and waiver
// annotations, as waivers lists them. Without the permission to list
// models or DutyWaivers it notes so and does without, unless the models
// are what is asked for.
func (o *Options) collect(ctx context.Context, c Cluster, sc collectScope) (evidence.Snapshot, error) {
	now := o.Now()
	s := evidence.Snapshot{CollectedAt: now.UTC(), Cluster: o.contextName(), Namespace: sc.namespace,
		Models: []evidence.Model{}, Namespaces: []evidence.Namespace{}}
	models, err := c.Models(ctx)
	switch {
	case err == nil:
	case sc.objects && apierrors.IsForbidden(err):
		o.errorf("Note: you may not list ResponsibilityModels (a ClusterRoleBinding to %s grants it); "+
			"the evidence names the models of the objects but holds no matrix.\n", viewerClusterRole)
	default:
		return s, modelsError(err, "list")
	}
	slices.SortFunc(models, func(a, b v1alpha1.ResponsibilityModel) int { return strings.Compare(a.Name, b.Name) })
	for _, name := range sc.models {
		if !slices.ContainsFunc(models, func(m v1alpha1.ResponsibilityModel) bool { return m.Name == name }) {
			return s, fmt.Errorf("no ResponsibilityModel is named %q (kubectl responsibility models lists them)", name)
		}
	}
	for i := range models {
		if len(sc.models) == 0 || slices.Contains(sc.models, models[i].Name) {
			s.Models = append(s.Models, evidenceModel(&models[i]))
		}
	}
	if !sc.objects {
		return s, nil
	}
	rows, err := o.collectDutyWaivers(ctx, c, sc)
	if err != nil {
		return s, err
	}
	evaluated, err := c.Evaluated(ctx, sc.namespace)
	if err != nil {
		return s, err
	}
	o.warnListing(evaluated, sc.namespace, sc.all)
	rows = append(rows, annotationWaiverRows(evaluated.Objects, waiverPolicies(models), now)...)
	sortWaivers(rows)

	byName := map[string]*evidence.Namespace{}
	namespace := func(name string) *evidence.Namespace {
		if n, ok := byName[name]; ok {
			return n
		}
		n := &evidence.Namespace{Name: name, Objects: []evidence.Object{}}
		byName[name] = n
		return n
	}
	for _, f := range evaluated.Objects {
		n := namespace(f.Namespace)
		n.Objects = append(n.Objects, evidenceObject(f))
	}
	for _, r := range rows {
		n := namespace(r.Namespace)
		n.Waivers = append(n.Waivers, evidenceWaiver(r))
	}
	for _, name := range sortedKeys(byName) {
		n := byName[name]
		slices.SortFunc(n.Objects, func(a, b evidence.Object) int {
			for _, pair := range [][2]string{{a.Kind, b.Kind}, {a.APIVersion, b.APIVersion}, {a.Name, b.Name}} {
				if c := strings.Compare(pair[0], pair[1]); c != 0 {
					return c
				}
			}
			return 0
		})
		s.Namespaces = append(s.Namespaces, *n)
	}
	return s, nil
}

// collectDutyWaivers reads the DutyWaivers as waivers does: without the
// permission or the CRD, it notes so and goes on with the annotations.
func (o *Options) collectDutyWaivers(ctx context.Context, c Cluster, sc collectScope) ([]WaiverRow, error) {
	dws, err := c.DutyWaivers(ctx, sc.namespace)
	switch {
	case err == nil:
	case apierrors.IsForbidden(err):
		o.errorf("Note: you may not list DutyWaivers %s (ask for the ClusterRole %s, aggregated into view, by a RoleBinding)%s; "+
			"the evidence holds the waiver annotations only.\n", scope(sc.namespace), dutyWaiverViewerRole, allNamespacesHint(sc.all))
		return nil, nil
	case meta.IsNoMatchError(err) || isResourceNotFound(err):
		o.errorln("Note: the API server does not serve DutyWaivers (the operator's DutyWaiver CRD is not installed); the evidence holds the waiver annotations only.")
		return nil, nil
	default:
		return nil, err
	}
	now := o.Now()
	rows := make([]WaiverRow, 0, len(dws))
	for i := range dws {
		rows = append(rows, dutyWaiverRow(&dws[i], now))
	}
	return rows, nil
}

// contextName is the kubeconfig context the command uses: --context, else
// the current context; "" when there is no kubeconfig.
func (o *Options) contextName() string {
	if o.ConfigFlags == nil {
		return ""
	}
	if o.ConfigFlags.Context != nil && *o.ConfigFlags.Context != "" {
		return *o.ConfigFlags.Context
	}
	raw, err := o.ConfigFlags.ToRawKubeConfigLoader().RawConfig()
	if err != nil {
		return ""
	}
	return raw.CurrentContext
}

// evidenceModel is a model's matrix and duties.
func evidenceModel(rm *v1alpha1.ResponsibilityModel) evidence.Model {
	m := evidence.Model{
		Name: rm.Name, Service: rm.Spec.Service, Provider: rm.Spec.Provider, Description: rm.Spec.Description,
		Waivers: string(rm.Spec.Waivers), Areas: make([]evidence.Area, 0, len(rm.Spec.Areas)),
	}
	if m.Waivers == "" {
		m.Waivers = string(v1alpha1.WaiversAllowed)
	}
	for _, a := range rm.Spec.Areas {
		ea := evidence.Area{Name: a.Name, Provider: a.Provider, Customer: a.Customer}
		for _, c := range a.Controls {
			ea.Controls = append(ea.Controls, evidence.Control{Framework: c.Framework, ID: c.ID, URL: c.URL})
		}
		for _, d := range a.Duties {
			severity := string(d.Severity)
			if severity == "" {
				severity = string(v1alpha1.SeverityWarning)
			}
			ea.Duties = append(ea.Duties, evidence.Duty{Name: d.Name, Description: d.Description, Severity: severity})
		}
		m.Areas = append(m.Areas, ea)
	}
	return m
}

// evidenceObject is an evaluated object with the states of its duties.
func evidenceObject(f Flagged) evidence.Object {
	obj := evidence.Object{
		APIVersion: f.GVK.GroupVersion().String(), Kind: f.GVK.Kind, Name: f.Name,
		Models: splitList(f.Annotations[v1alpha1.AnnotationModels]), Duties: []evidence.DutyState{},
	}
	slices.Sort(obj.Models)
	if obj.Models == nil {
		obj.Models = []string{}
	}
	duties, err := parseDuties(f.Annotations[v1alpha1.AnnotationDuties])
	if err != nil {
		obj.Problem = err.Error()
	}
	for _, d := range duties {
		obj.Duties = append(obj.Duties, evidence.DutyState{Model: d.Model, Duty: d.Duty, State: string(d.State), Message: d.Message, Waiver: d.Waiver})
	}
	return obj
}

// evidenceWaiver is a waiver row as evidence.
func evidenceWaiver(r WaiverRow) evidence.Waiver {
	return evidence.Waiver{
		Source: r.Source, Name: r.Name, Model: r.Model, Duties: r.Duties, Reason: r.Reason, Ticket: r.Ticket,
		GrantedBy: r.GrantedBy, Expires: r.Expires, Active: r.Active, Message: r.Message,
	}
}

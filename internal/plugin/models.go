package plugin

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/responsibility-operator/responsibility-operator/api/v1alpha1"
)

// viewerClusterRole is the ClusterRole that grants reading models, as
// `make deploy` (config/default, name prefix responsibility-operator-)
// installs it. It is also aggregated into the built-in view ClusterRole.
const viewerClusterRole = "responsibility-operator-responsibilitymodel-viewer-role"

// ModelRow is one model in the models list.
type ModelRow struct {
	Name     string   `json:"name"`
	Provider string   `json:"provider"`
	Service  string   `json:"service"`
	Targets  []string `json:"targets"`
	Areas    int      `json:"areas"`
	Duties   int      `json:"duties"`
	Matched  int32    `json:"matchedObjects"`
	Unmet    int32    `json:"unmetObjects"`
	Ready    string   `json:"ready"`
}

func newModelsCommand(o *Options) *cobra.Command {
	return &cobra.Command{
		Use:   "models",
		Short: "List the ResponsibilityModels with their targets and counts",
		Long: `List the ResponsibilityModels: provider, target kinds, number of duties, and from
their status the objects they match, of which unmet, and whether they are Ready.
Models are cluster-scoped: reading them needs a ClusterRoleBinding.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return o.models(cmd.Context()) },
	}
}

func (o *Options) models(ctx context.Context) error {
	c, err := o.cluster()
	if err != nil {
		return err
	}
	models, err := c.Models(ctx)
	if err != nil {
		return modelsError(err, "list")
	}
	sort.Slice(models, func(i, j int) bool { return models[i].Name < models[j].Name })
	rows := make([]ModelRow, 0, len(models))
	for i := range models {
		rows = append(rows, modelRow(&models[i]))
	}
	if o.Output != outputTable {
		return printData(o.Streams.Out, o.Output, rows)
	}
	if len(rows) == 0 {
		o.errorln("No ResponsibilityModels found: apply some, for example kubectl apply -k config/catalog.")
		return nil
	}
	t := newTable("NAME", "PROVIDER", "TARGETS", "DUTIES", "MATCHED", "UNMET", "READY", "SERVICE")
	for _, r := range rows {
		t.add(r.Name, r.Provider, strings.Join(r.Targets, ","), fmt.Sprint(r.Duties), fmt.Sprint(r.Matched), fmt.Sprint(r.Unmet), r.Ready, r.Service)
	}
	return t.print(o.Streams.Out, o.Color)
}

func modelRow(rm *v1alpha1.ResponsibilityModel) ModelRow {
	row := ModelRow{
		Name:     rm.Name,
		Provider: rm.Spec.Provider,
		Service:  rm.Spec.Service,
		Targets:  targetKinds(rm),
		Areas:    len(rm.Spec.Areas),
		Matched:  rm.Status.MatchedObjects,
		Unmet:    rm.Status.UnmetObjects,
		Ready:    readiness(rm),
	}
	for _, a := range rm.Spec.Areas {
		row.Duties += len(a.Duties)
	}
	return row
}

// targetKinds are the distinct target kinds as Kind.group.
func targetKinds(rm *v1alpha1.ResponsibilityModel) []string {
	var out []string
	for _, t := range rm.Spec.Targets {
		gvk := schema.FromAPIVersionAndKind(t.APIVersion, t.Kind)
		if k := kindName(gvk); !contains(out, k) {
			out = append(out, k)
		}
	}
	return out
}

// readiness is the Ready condition's status, "Unknown" before the operator
// reported one, with a note when the status describes an older generation.
func readiness(rm *v1alpha1.ResponsibilityModel) string {
	ready := "Unknown"
	if c := meta.FindStatusCondition(rm.Status.Conditions, v1alpha1.ConditionReady); c != nil {
		ready = string(c.Status)
		if c.Status != "True" && c.Reason != "" {
			ready += " (" + c.Reason + ")"
		}
	}
	if rm.Generation != 0 && rm.Status.ObservedGeneration != rm.Generation {
		ready += fmt.Sprintf(" (status of generation %d of %d)", rm.Status.ObservedGeneration, rm.Generation)
	}
	return ready
}

// modelsError turns an error reading models into a sentence that says what
// to do: a tenant's Role cannot grant a cluster-scoped resource.
func modelsError(err error, verb string) error {
	switch {
	case apierrors.IsForbidden(err):
		return fmt.Errorf("you may not %s ResponsibilityModels (%w). Models are cluster-scoped, so a namespaced Role cannot grant them: "+
			"ask a cluster administrator for a ClusterRoleBinding to the ClusterRole %s. "+
			"Without it, `kubectl responsibility show KIND/NAME` and `kubectl responsibility unmet -n NAMESPACE` work on the objects you may read",
			verb, err, viewerClusterRole)
	case meta.IsNoMatchError(err) || isResourceNotFound(err):
		return fmt.Errorf("the API server does not serve ResponsibilityModels (%w): is the responsibility-operator's CRD installed?", err)
	}
	return err
}

// isResourceNotFound reports a 404 for the resource itself (its CRD is not
// installed), as opposed to a named object that does not exist.
func isResourceNotFound(err error) bool {
	var status apierrors.APIStatus
	if !apierrors.IsNotFound(err) || !errors.As(err, &status) {
		return false
	}
	details := status.Status().Details
	return details == nil || details.Name == ""
}

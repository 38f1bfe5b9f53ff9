package plugin

import (
	"context"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/responsibility-operator/responsibility-operator/api/v1alpha1"
)

// Cluster is what the commands read from the API server. NewKubeCluster is
// the real one; the golden tests use a fake built from testdata.
type Cluster interface {
	// DefaultNamespace is the namespace of --namespace, else of the
	// kubeconfig context, else "default".
	DefaultNamespace() (string, error)
	// Get returns the one object that kubectl-style arguments name
	// (KIND/NAME or KIND NAME, KIND resolved like kubectl: vm,
	// clusters.postgresql.cnpg.io, Deployment.apps) in namespace.
	Get(ctx context.Context, namespace string, args []string) (*unstructured.Unstructured, error)
	// Events returns the operator's events about an object.
	Events(ctx context.Context, obj *unstructured.Unstructured) ([]Event, error)
	// Models lists the ResponsibilityModels.
	Models(ctx context.Context) ([]v1alpha1.ResponsibilityModel, error)
	// Model returns one ResponsibilityModel.
	Model(ctx context.Context, name string) (*v1alpha1.ResponsibilityModel, error)
	// Flagged lists the objects whose status label is unmet or unknown, in
	// one namespace, or in every namespace when namespace is empty.
	Flagged(ctx context.Context, namespace string) (*FlaggedList, error)
	// Evaluated lists the objects the operator evaluated (they carry the
	// status label, whatever its value), like Flagged: waivers reads their
	// waiver annotations, which a met object carries as well.
	Evaluated(ctx context.Context, namespace string) (*FlaggedList, error)
	// DutyWaivers lists the DutyWaivers of one namespace, or of every
	// namespace when namespace is empty.
	DutyWaivers(ctx context.Context, namespace string) ([]v1alpha1.DutyWaiver, error)
}

// Event is one event the operator reported on an object.
type Event struct {
	Type    string    `json:"type"`
	Reason  string    `json:"reason"`
	Message string    `json:"message"`
	Count   int32     `json:"count"`
	First   time.Time `json:"firstSeen"`
	Last    time.Time `json:"lastSeen"`
}

// isOperatorEvent reports whether an event is one of the operator's: it is
// reported by the operator's controller, or (for a reporter that does not
// set the field) has one of the reasons the operator uses on workloads.
func isOperatorEvent(reportingController, reason string) bool {
	if reportingController == v1alpha1.FieldManager {
		return true
	}
	if reportingController != "" {
		return false
	}
	switch reason {
	case v1alpha1.EventCustomerDutyUnmet, v1alpha1.EventCustomerDutyMet, v1alpha1.EventWaiverIgnored, v1alpha1.EventApplyFailed:
		return true
	}
	return false
}

// Flagged is an object whose status label says unmet or unknown.
type Flagged struct {
	GVK         schema.GroupVersionKind
	Namespace   string
	Name        string
	Labels      map[string]string
	Annotations map[string]string
}

// FlaggedList is the result of Cluster.Flagged.
type FlaggedList struct {
	Objects []Flagged
	// Listed counts the kinds that were listed.
	Listed int
	// Forbidden names the resources the user may not list; they are skipped.
	Forbidden []string
	// Warnings are other kinds that could not be listed, with the reason.
	Warnings []string
}

// ObjectRef names an object in the commands' output.
type ObjectRef struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Namespace  string `json:"namespace,omitempty"`
	Name       string `json:"name"`
}

func refOf(obj *unstructured.Unstructured) ObjectRef {
	return ObjectRef{APIVersion: obj.GetAPIVersion(), Kind: obj.GetKind(), Namespace: obj.GetNamespace(), Name: obj.GetName()}
}

// GVK is the object's group, version and kind.
func (r ObjectRef) GVK() schema.GroupVersionKind {
	return schema.FromAPIVersionAndKind(r.APIVersion, r.Kind)
}

// String is "Kind.group namespace/name", sanitised for a terminal.
func (r ObjectRef) String() string {
	name := r.Name
	if r.Namespace != "" {
		name = r.Namespace + "/" + r.Name
	}
	return sanitize(kindName(r.GVK()) + " " + name)
}

// kindName is how the commands print a kind: Kind.group, or Kind for the
// core group. kubectl accepts it back: `show Cluster.postgresql.cnpg.io/db`.
func kindName(gvk schema.GroupVersionKind) string {
	if gvk.Group == "" {
		return gvk.Kind
	}
	return gvk.Kind + "." + gvk.Group
}

// resourceArg is how a kubectl command names an object of a kind:
// cluster.postgresql.cnpg.io/db.
func resourceArg(gvk schema.GroupVersionKind, name string) string {
	return strings.ToLower(kindName(gvk)) + "/" + name
}

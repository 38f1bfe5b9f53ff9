package watch

import "k8s.io/apimachinery/pkg/runtime/schema"

// Key identifies one object of a watched kind (a workload the models
// target): its kind, namespace and name.
type Key struct {
	GVK       schema.GroupVersionKind
	Namespace string
	Name      string
}

func (k Key) String() string {
	if k.Namespace == "" {
		return k.GVK.Kind + "/" + k.Name
	}
	return k.GVK.Kind + "/" + k.Namespace + "/" + k.Name
}

// storeKey is the key of the object in an informer's store
// (namespace/name, or name for a cluster-scoped object).
func (k Key) storeKey() string {
	if k.Namespace == "" {
		return k.Name
	}
	return k.Namespace + "/" + k.Name
}

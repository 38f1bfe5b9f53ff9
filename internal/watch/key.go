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

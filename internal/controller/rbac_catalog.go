package controller

// The operator's ClusterRole grants, for each kind a model of config/catalog
// targets, exactly what the workload reconciler needs: get, list and watch
// to cache the objects and patch to apply its annotations; for each related
// kind, get, list and watch. A model for another kind reports
// TargetsResolved=False with reason Forbidden until the role is extended
// (docs/operations.md shows how).

// Targets of config/catalog.
// +kubebuilder:rbac:groups=kubevirt.io,resources=virtualmachines,verbs=get;list;watch;patch
// +kubebuilder:rbac:groups=postgresql.cnpg.io,resources=clusters,verbs=get;list;watch;patch
// +kubebuilder:rbac:groups=serving.knative.dev,resources=services,verbs=get;list;watch;patch

// Related kinds read by rules of config/catalog.
// +kubebuilder:rbac:groups=postgresql.cnpg.io,resources=scheduledbackups,verbs=get;list;watch

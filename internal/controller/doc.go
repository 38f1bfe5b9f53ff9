// Package controller holds the operator's reconcilers, one per file, and
// Setup, which wires them to a manager:
//
//   - ModelReconciler (model_controller.go, with its finalizer in
//     model_cleanup.go and its status in model_status.go) compiles a
//     ResponsibilityModel, resolves the kinds it needs (resolve.go), starts
//     their watches and installs it in the registry.
//   - WorkloadReconciler (workload_controller.go) evaluates one target
//     object with the registered models and writes the operator's
//     annotations with server-side apply (applier.go), and its duty events
//     (events.go).
//   - ReportReconciler (report_controller.go) keeps one namespace's policy
//     reports equal to the duties annotations of its objects.
//
// What they share lives below: internal/watch (the informers of kinds
// chosen at run time, and the workload keys their events become),
// internal/registry (the compiled models by kind), internal/ledger (what
// the operator wrote on each object and what it counts toward each model)
// and internal/metrics. The rules themselves are internal/evaluate, which
// has no client.
package controller

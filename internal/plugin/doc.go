// Package plugin is the kubectl plugin kubectl-responsibility: the commands
// show, unmet, models, explain, lint, test and version, for tenants who read the
// responsibility annotations and events on their objects and for the
// operators and model authors who write ResponsibilityModels.
//
// The commands read the cluster through the Cluster interface, so that their
// output is tested with golden files against a fake; the real Cluster uses
// the standard kubeconfig flags of k8s.io/cli-runtime. lint never builds a
// Cluster: it is the model author's offline loop.
package plugin

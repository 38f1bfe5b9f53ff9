//go:build tools

// Package controlplane pins the sources of the local control plane binaries
// (kube-apiserver, etcd, kubectl) that tests, the demo and benchmarks run.
// It is a module of its own so the operator's go.mod never imports
// k8s.io/kubernetes.
package controlplane

import (
	_ "go.etcd.io/etcd/server/v3"
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kubectl"
)

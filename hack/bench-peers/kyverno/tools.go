//go:build tools

// Package kyverno pins the source of Kyverno's background controller, which
// `make bench-peers` builds and runs out of cluster beside the operator. It
// is a module of its own so that Kyverno's dependencies never enter the
// operator's go.mod.
package kyverno

import (
	_ "github.com/kyverno/kyverno/cmd/background-controller"
)

// Command kubectl-responsibility is the kubectl plugin of the
// responsibility-operator: on PATH, `kubectl responsibility` shows the
// shared responsibility matrix and customer duties of objects, lists unmet
// duties, explains models and lints model files offline.
package main

import (
	"fmt"
	"os"

	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/responsibility-operator/responsibility-operator/internal/plugin"
)

func main() {
	cmd := plugin.NewCommand(genericiooptions.IOStreams{In: os.Stdin, Out: os.Stdout, ErrOut: os.Stderr})
	if err := cmd.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}

package plugin

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
)

// Output formats of -o.
const (
	outputTable = ""
	outputJSON  = "json"
	outputYAML  = "yaml"
)

// Options are the settings every command shares.
type Options struct {
	Streams genericiooptions.IOStreams
	// ConfigFlags are the standard kubeconfig, context and namespace flags.
	ConfigFlags *genericclioptions.ConfigFlags
	// Output is the -o flag: empty for a table, json or yaml.
	Output string
	// Color colours duty states in tables.
	Color bool
	// Now is the clock of event ages, of the rules lint --against
	// evaluates, and of the time left to waivers.
	Now func() time.Time
	// NewCluster opens the cluster the flags name. Tests replace it.
	NewCluster func(*genericclioptions.ConfigFlags) (Cluster, error)
	// Width is the terminal's width, which tables wrap their long text
	// columns to; nil or 0 does not wrap (output to a file or a pipe).
	Width func() int
}

// width is the width tables wrap to, 0 for none.
func (o *Options) width() int {
	if o.Width == nil {
		return 0
	}
	return o.Width()
}

// terminalWidth is the width of w when it is a terminal, else $COLUMNS
// when set (a pipe to less -S, say), else 0: no wrapping.
func terminalWidth(w io.Writer) func() int {
	return func() int {
		if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
			if width, _, err := term.GetSize(int(f.Fd())); err == nil {
				return width
			}
		}
		if n, err := strconv.Atoi(os.Getenv("COLUMNS")); err == nil && n > 0 {
			return n
		}
		return 0
	}
}

// NewCommand returns the kubectl-responsibility command with the standard
// kubectl flags, writing to streams. States are coloured when standard
// output is a terminal and NO_COLOR is not set.
func NewCommand(streams genericiooptions.IOStreams) *cobra.Command {
	return newRootCommand(&Options{
		Streams:     streams,
		ConfigFlags: genericclioptions.NewConfigFlags(true),
		Color:       isTerminal(streams.Out) && os.Getenv("NO_COLOR") == "",
		Now:         time.Now,
		NewCluster:  NewKubeCluster,
		Width:       terminalWidth(streams.Out),
	})
}

func newRootCommand(o *Options) *cobra.Command {
	root := &cobra.Command{
		Use:   "kubectl-responsibility",
		Short: "Read shared responsibility matrices and customer duties, and lint ResponsibilityModels",
		Long: `kubectl responsibility shows what the responsibility-operator found on your objects:
who is responsible for what (the matrix of each ResponsibilityModel that applies),
which customer duties are met, and how to fix or waive the others.

  kubectl responsibility show vm/web-vm          # one object's matrix, duties and events
  kubectl responsibility unmet -A                # every unmet or unknown duty
  kubectl responsibility waivers -n NAMESPACE    # the waivers, the soonest to expire first
  kubectl responsibility models                  # the models, their targets and counts
  kubectl responsibility explain MODEL           # one model's matrix and rules
  kubectl responsibility lint model.yaml --against samples.yaml   # offline, no cluster
  kubectl responsibility test tests/                               # expected duty states, offline
  kubectl responsibility export --format oscal-ar -n NAMESPACE -o FILE   # evidence: OSCAL, CSV, HTML
  kubectl responsibility import component-definition.json         # OSCAL component definition to models
  kubectl responsibility version                 # the plugin's release`,
		Annotations:   map[string]string{cobra.CommandDisplayNameAnnotation: "kubectl responsibility"},
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetIn(o.Streams.In)
	root.SetOut(o.Streams.Out)
	root.SetErr(o.Streams.ErrOut)
	o.ConfigFlags.AddFlags(root.PersistentFlags())
	root.PersistentFlags().StringVarP(&o.Output, "output", "o", outputTable, "Output format: json or yaml (default: a table); junit for test.")
	root.PersistentPreRunE = func(cmd *cobra.Command, _ []string) error {
		switch o.Output {
		case outputTable, outputJSON, outputYAML:
			return nil
		case outputJUnit:
			if isTestCommand(cmd) {
				return nil
			}
			return fmt.Errorf("-o junit is for the test command only: use -o json or -o yaml, or omit -o for a table")
		}
		return fmt.Errorf("unknown output format %q: use -o json or -o yaml, or omit -o for a table", o.Output)
	}
	root.AddCommand(newShowCommand(o), newUnmetCommand(o), newWaiversCommand(o), newModelsCommand(o), newExplainCommand(o), newLintCommand(o), newTestCommand(o),
		newExportCommand(o), newImportCommand(o), newVersionCommand(o))
	return root
}

// cluster opens the cluster of the kubeconfig flags.
func (o *Options) cluster() (Cluster, error) {
	c, err := o.NewCluster(o.ConfigFlags)
	if err != nil {
		return nil, fmt.Errorf("connect to the cluster: %w", err)
	}
	return c, nil
}

// ErrProblems is returned (wrapped) by a command that printed problems, such
// as lint: the command ran, and its result is a failure.
var ErrProblems = errors.New("lint failed")

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

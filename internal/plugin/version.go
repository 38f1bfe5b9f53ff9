package plugin

import (
	"runtime"

	"github.com/spf13/cobra"

	"github.com/responsibility-operator/responsibility-operator/internal/version"
)

// VersionInfo is what version prints with -o json or -o yaml: the release
// version, and the Go toolchain and platform of the binary, which a bug
// report needs as well.
type VersionInfo struct {
	Version   string `json:"version"`
	GoVersion string `json:"goVersion"`
	Platform  string `json:"platform"`
}

func newVersionCommand(o *Options) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the plugin's version",
		Long: `Print the release version of the plugin, the one krew installed (v0.1.0), or the
module version of a go install, or "devel" for a local build. -o json and -o yaml
add the Go version and platform of the binary.`,
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error { return o.version() },
	}
}

func (o *Options) version() error {
	info := VersionInfo{Version: version.Get(), GoVersion: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	if o.Output != outputTable {
		return printData(o.Streams.Out, o.Output, info)
	}
	p := &printer{w: o.Streams.Out}
	p.println(info.Version)
	return p.done(nil)
}

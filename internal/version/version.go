// Package version is the release version of the manager and the kubectl
// plugin. Release builds set it with
//
//	-ldflags "-X github.com/responsibility-operator/responsibility-operator/internal/version.Version=v0.1.0"
//
// (make image, make plugin-archives); other builds report the module version
// Go recorded, or "devel".
package version

import "runtime/debug"

// Version is set at link time by release builds.
var Version = ""

// LinkSymbol is the linker's name of Version, for -ldflags "-X
// LinkSymbol=v0.1.0" in the release builds (hack/image, hack/release).
const LinkSymbol = "github.com/responsibility-operator/responsibility-operator/internal/version.Version"

// Get returns the version: the linked-in one, else the main module's version
// from the build information, else "devel".
func Get() string {
	if Version != "" {
		return Version
	}
	if info, ok := debug.ReadBuildInfo(); ok && info.Main.Version != "" && info.Main.Version != "(devel)" {
		return info.Main.Version
	}
	return "devel"
}

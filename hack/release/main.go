// Command release builds the kubectl plugin's release assets, the ones krew
// installs from: for every platform of -platforms, kubectl-responsibility
// cross-compiled without cgo, packed with LICENSE into
// kubectl-responsibility_<tag>_<os>_<arch>.tar.gz (.zip for Windows, as
// krew expects there); sha256sums.txt; and responsibility.yaml, the krew
// plugin manifest rendered from the repository's .krew.yaml, the template
// krew-release-bot renders on a release, with the sha256 of each archive.
//
//	go run ./hack/release -version 0.1.0 -out dist/plugin
//
// The archives are reproducible: the same tree and Go toolchain give the
// same bytes (fixed file times, owners and modes, -trimpath, no VCS stamp),
// so anyone can check a published archive by building it again. `make
// plugin-archives` runs it; its test installs what it builds with krew.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
)

func main() {
	var c config
	flag.StringVar(&c.Root, "root", ".", "repository root: the module to build, its .krew.yaml and LICENSE")
	flag.StringVar(&c.Version, "version", "", "release version, with or without the leading v, for example 0.1.0 (required)")
	flag.StringVar(&c.Out, "out", "dist/plugin", "directory to write the archives, sha256sums.txt and responsibility.yaml to")
	platforms := flag.String("platforms", defaultPlatforms, "comma-separated os/arch list to build; a subset renders a manifest of those platforms only")
	flag.Parse()
	if flag.NArg() > 0 {
		fail(fmt.Errorf("unexpected arguments %q", flag.Args()))
	}
	var err error
	if c.Platforms, err = parsePlatforms(*platforms); err != nil {
		fail(err)
	}
	c.Log = os.Stderr
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if _, err := release(ctx, c); err != nil {
		stop()
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "release:", err)
	os.Exit(1)
}

// Command image builds the manager's OCI image without a container engine, so
// that `make image` works on a machine (or in CI) without Docker: it
// cross-compiles cmd/manager for each platform with the Dockerfile's flags,
// lays the binary on an empty base with CA certificates, /etc/passwd and
// /etc/group (root and nonroot 65532), /tmp 1777 and /home/nonroot, and writes
//
//   - <out>/oci: an OCI image layout whose index.json names one multi-arch
//     image index, for `crane push <out>/oci REF` (crane reads a directory as
//     an OCI layout and pushes its one entry, an index as an index:
//     go-containerregistry cmd/crane/cmd/push.go, loadImage);
//   - <out>/<os>-<arch>.tar per platform: a docker-archive tarball tagged with
//     -tag, for `kind load image-archive` and `docker load`.
//
// The CA certificates are the build machine's /etc/ssl/certs/ca-certificates.crt
// (-ca-certs), not a pinned distribution's: the label
// io.responsibility.ca-certificates records the file, its digest and the
// Debian package version. Timestamps come from SOURCE_DATE_EPOCH or the commit time of HEAD, so two
// builds of one tree give the same digests. The Dockerfile stays for those who
// have Docker; both give the same runtime layout (user 65532:65532, working
// directory /, entrypoint /manager), which the tests hold.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "image:", err)
		os.Exit(1)
	}
}

func run() error {
	opts := options{Stderr: os.Stderr}
	var platforms, tag, epoch string
	flag.StringVar(&opts.Dir, "dir", ".", "Root of the module to build.")
	flag.StringVar(&opts.Package, "package", defaultPackage, "Main package to build into /manager, relative to -dir.")
	flag.StringVar(&platforms, "platforms", "linux/amd64,linux/arm64", "Comma-separated platforms (os/arch[/variant]) of the multi-arch index.")
	flag.StringVar(&opts.Version, "version", "", "Release version linked into the binary as v<version> and written in the labels (e.g. 0.1.0); empty: devel.")
	flag.StringVar(&tag, "tag", "", "Image reference the tarballs and the layout are tagged with, the chart's default image (default: "+defaultRepository+":v<version>, or :devel).")
	flag.StringVar(&opts.Out, "out", "bin/image", "Output directory: <out>/oci (OCI layout) and <out>/<os>-<arch>.tar (docker archives).")
	flag.StringVar(&opts.CACerts, "ca-certs", defaultCACerts, "CA certificate bundle copied into the image (the build machine's).")
	flag.StringVar(&epoch, "source-date-epoch", os.Getenv("SOURCE_DATE_EPOCH"), "Unix time of every timestamp in the image (default: $SOURCE_DATE_EPOCH, else the commit time of HEAD).")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()

	var err error
	if opts.Platforms, err = parsePlatforms(platforms); err != nil {
		return err
	}
	if tag == "" {
		tag = defaultTag(opts.Version)
	}
	if opts.Tag, err = parseTag(tag); err != nil {
		return err
	}
	if opts.Created, err = sourceDate(ctx, opts.Dir, epoch); err != nil {
		return err
	}
	opts.Revision = gitRevision(ctx, opts.Dir)

	res, err := build(ctx, opts)
	if err != nil {
		return err
	}
	fmt.Printf("%s\n  %-12s %s  %s\n", opts.Tag.Name(), "index", res.Index, res.Layout)
	for _, p := range res.Platforms {
		fmt.Printf("  %-12s %s  %s\n", p.Platform.String(), p.Digest, p.Tarball)
	}
	fmt.Printf("push the index: crane push %s %s\n", res.Layout, opts.Tag.Name())
	fmt.Printf("load into kind: kind load image-archive %s\n", filepath.Join(opts.Out, "linux-<arch of the nodes>.tar"))
	return nil
}

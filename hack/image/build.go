package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/responsibility-operator/responsibility-operator/internal/version"
)

const (
	// defaultPackage is the manager's main package.
	defaultPackage = "./cmd/manager"
	// defaultRepository is where release images are pushed.
	defaultRepository = "ghcr.io/responsibility-operator/responsibility-operator"
	// sourceURL is the project's home, the image's org.opencontainers.image.source.
	sourceURL = "https://github.com/responsibility-operator/responsibility-operator"
	// defaultCACerts is the build machine's CA bundle (Debian's
	// update-ca-certificates writes it), the file distroless ships too.
	defaultCACerts = "/etc/ssl/certs/ca-certificates.crt"

	// The runtime layout the Dockerfile's final stage gives (FROM
	// gcr.io/distroless/static:nonroot, WORKDIR /, COPY manager ., USER
	// 65532:65532, ENTRYPOINT ["/manager"]); dockerfile_test.go holds the two
	// in step.
	binaryPath = "/manager"
	imageUser  = "65532:65532"
	workingDir = "/"

	// labelCACerts records where the image's CA certificates came from: they
	// are the build machine's, not a pinned distribution's.
	labelCACerts = "io.responsibility.ca-certificates"
)

// goBuildFlags are the Dockerfile's `go build` flags (besides -ldflags):
// dockerfile_test.go checks that the Dockerfile still uses them.
var goBuildFlags = []string{"-trimpath"}

// goLinkFlags are the Dockerfile's -ldflags: no symbol table, no DWARF.
const goLinkFlags = "-s -w"

// options is one build: what to compile, for which platforms, how to tag it
// and where to write it.
type options struct {
	// Dir is the module root `go build` runs in.
	Dir string
	// Package is the main package compiled into /manager, relative to Dir.
	Package string
	// Platforms are the images of the index, in order.
	Platforms []v1.Platform
	// Version is the release version without or with its "v"; empty: devel.
	Version string
	// Tag names the image in the docker archives and the layout.
	Tag name.Tag
	// Out is the output directory.
	Out string
	// CACerts is the CA bundle copied to /etc/ssl/certs/ca-certificates.crt.
	CACerts string
	// Created is every timestamp in the image: config, history, files.
	Created time.Time
	// Revision is the commit built, for org.opencontainers.image.revision.
	Revision string
	// Stderr receives the output of `go build`.
	Stderr io.Writer
}

// result is what build wrote.
type result struct {
	// Layout is the OCI layout directory, Index the digest of its index.
	Layout string
	Index  v1.Hash
	// Platforms are the per-platform images, in the order of the options.
	Platforms []platformResult
}

// platformResult is one platform's image.
type platformResult struct {
	Platform v1.Platform
	// Digest is the image manifest's digest, as listed in the index.
	Digest v1.Hash
	// Tarball is the docker archive of this image.
	Tarball string
}

// build compiles the manager for every platform, assembles the images and
// the index, and writes the OCI layout and the docker archives.
func build(ctx context.Context, opts options) (result, error) {
	if len(opts.Platforms) == 0 {
		return result{}, errors.New("no platform to build")
	}
	caCerts, err := os.ReadFile(opts.CACerts)
	if err != nil {
		return result{}, fmt.Errorf("read the CA certificates to put in the image: %w", err)
	}
	caSource := caCertsSource(ctx, opts.CACerts, caCerts)
	base, err := baseLayer(caCerts, caSource, opts.Created)
	if err != nil {
		return result{}, err
	}
	work, err := os.MkdirTemp("", "responsibility-image-")
	if err != nil {
		return result{}, fmt.Errorf("create a build directory: %w", err)
	}
	defer func() { _ = os.RemoveAll(work) }()

	images := make([]v1.Image, 0, len(opts.Platforms))
	for _, p := range opts.Platforms {
		bin := filepath.Join(work, "manager-"+platformSlug(p))
		if err := compile(ctx, opts, p, bin); err != nil {
			return result{}, err
		}
		img, err := platformImage(opts, p, base, bin, caSource)
		if err != nil {
			return result{}, fmt.Errorf("assemble the %s image: %w", p, err)
		}
		images = append(images, img)
	}
	return write(opts, images)
}

// compile cross-compiles the manager for one platform with the Dockerfile's
// flags plus the release version.
func compile(ctx context.Context, opts options, p v1.Platform, out string) error {
	env, err := platformEnv(p)
	if err != nil {
		return err
	}
	ldflags := goLinkFlags
	if v := releaseVersion(opts.Version); v != "" {
		ldflags += " -X " + version.LinkSymbol + "=" + v
	}
	args := append([]string{"build"}, goBuildFlags...)
	args = append(args, "-ldflags="+ldflags, "-o", out, opts.Package)
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = opts.Dir
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = opts.Stderr, opts.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go build %s for %s: %w", opts.Package, p, err)
	}
	return nil
}

// platformEnv is the go command's environment for one platform: static
// (CGO_ENABLED=0, as the Dockerfile builds), GOOS, GOARCH and the variant.
func platformEnv(p v1.Platform) ([]string, error) {
	if p.OS == "" || p.Architecture == "" {
		return nil, fmt.Errorf("platform %q: want os/arch[/variant]", p.String())
	}
	env := []string{"CGO_ENABLED=0", "GOOS=" + p.OS, "GOARCH=" + p.Architecture}
	switch {
	case p.Variant == "":
	case p.Architecture == "arm":
		env = append(env, "GOARM="+strings.TrimPrefix(p.Variant, "v"))
	case p.Architecture == "amd64":
		env = append(env, "GOAMD64="+p.Variant)
	case p.Architecture == "arm64" && p.Variant == "v8":
	default:
		return nil, fmt.Errorf("platform %q: no Go setting for variant %q", p.String(), p.Variant)
	}
	return env, nil
}

// platformImage is one platform's image: the base layer, the manager's layer
// and the config the Dockerfile gives.
func platformImage(opts options, p v1.Platform, base v1.Layer, binary, caSource string) (v1.Image, error) {
	manager, err := managerLayer(binary, opts.Created)
	if err != nil {
		return nil, err
	}
	created := v1.Time{Time: opts.Created}
	cfg := &v1.ConfigFile{
		Created:      created,
		Architecture: p.Architecture,
		OS:           p.OS,
		Variant:      p.Variant,
		RootFS:       v1.RootFS{Type: "layers"},
		Config: v1.Config{
			// distroless/static's environment (its base/base.bzl): Go
			// finds the bundle on its own, other code through SSL_CERT_FILE.
			Env: []string{
				"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
				"SSL_CERT_FILE=" + caCertsPath,
			},
			User:       imageUser,
			WorkingDir: workingDir,
			Entrypoint: []string{binaryPath},
			Labels:     labels(opts, caSource),
		},
	}
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err = mutate.ConfigFile(img, cfg)
	if err != nil {
		return nil, fmt.Errorf("set the config: %w", err)
	}
	img, err = mutate.Append(img,
		mutate.Addendum{
			Layer:       base,
			History:     v1.History{Created: created, CreatedBy: "hack/image: CA certificates, /etc/passwd, /etc/group, /tmp, /home/nonroot", Comment: caSource},
			Annotations: map[string]string{labelCACerts: caSource},
		},
		mutate.Addendum{
			Layer:   manager,
			History: v1.History{Created: created, CreatedBy: "hack/image: go build " + opts.Package + " -> " + binaryPath},
		},
	)
	if err != nil {
		return nil, fmt.Errorf("add the layers: %w", err)
	}
	return img, nil
}

// labels are the image's OCI labels (and the index's annotations):
// https://github.com/opencontainers/image-spec/blob/main/annotations.md
func labels(opts options, caSource string) map[string]string {
	l := map[string]string{
		"org.opencontainers.image.title":       "responsibility-operator",
		"org.opencontainers.image.description": "The responsibility-operator's manager",
		"org.opencontainers.image.source":      sourceURL,
		"org.opencontainers.image.licenses":    "Apache-2.0",
		"org.opencontainers.image.version":     "devel",
		"org.opencontainers.image.created":     opts.Created.UTC().Format(time.RFC3339),
		labelCACerts:                           caSource,
	}
	if v := releaseVersion(opts.Version); v != "" {
		l["org.opencontainers.image.version"] = v
	}
	if opts.Revision != "" {
		l["org.opencontainers.image.revision"] = opts.Revision
	}
	return l
}

// write writes the multi-arch index into the OCI layout and each image into
// its docker archive. An earlier build's outputs are removed first, so that
// the layout holds no stale blobs.
func write(opts options, images []v1.Image) (result, error) {
	adds := make([]mutate.IndexAddendum, 0, len(images))
	res := result{Layout: filepath.Join(opts.Out, "oci")}
	if err := os.MkdirAll(opts.Out, 0o755); err != nil {
		return result{}, fmt.Errorf("create %s: %w", opts.Out, err)
	}
	for i, img := range images {
		p := opts.Platforms[i]
		digest, err := img.Digest()
		if err != nil {
			return result{}, fmt.Errorf("digest of the %s image: %w", p, err)
		}
		tar := filepath.Join(opts.Out, platformSlug(p)+".tar")
		// The docker-archive format of `docker save`, which `docker load`
		// and `kind load image-archive` (containerd's import) read.
		if err := tarball.WriteToFile(tar, opts.Tag, img); err != nil {
			return result{}, fmt.Errorf("write %s: %w", tar, err)
		}
		platform := p
		adds = append(adds, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &platform}})
		res.Platforms = append(res.Platforms, platformResult{Platform: p, Digest: digest, Tarball: tar})
	}
	idx := mutate.AppendManifests(mutate.IndexMediaType(empty.Index, types.OCIImageIndex), adds...)
	annotated, ok := mutate.Annotations(idx, indexAnnotations(opts)).(v1.ImageIndex)
	if !ok {
		return result{}, errors.New("annotate the index: not an index")
	}
	var err error
	if res.Index, err = annotated.Digest(); err != nil {
		return result{}, fmt.Errorf("digest of the index: %w", err)
	}
	if err := os.RemoveAll(res.Layout); err != nil {
		return result{}, fmt.Errorf("remove the old layout: %w", err)
	}
	lp, err := layout.Write(res.Layout, empty.Index)
	if err != nil {
		return result{}, fmt.Errorf("create the OCI layout %s: %w", res.Layout, err)
	}
	// index.json lists this one index, so that `crane push DIR REF` pushes
	// it as is. ref.name is the tag, as the image-layout spec has it
	// (https://github.com/opencontainers/image-spec/blob/main/image-layout.md);
	// io.containerd.image.name the full name, which `ctr import` uses.
	if err := lp.AppendIndex(annotated, layout.WithAnnotations(map[string]string{
		"org.opencontainers.image.ref.name": opts.Tag.TagStr(),
		"io.containerd.image.name":          opts.Tag.Name(),
	})); err != nil {
		return result{}, fmt.Errorf("write the index into %s: %w", res.Layout, err)
	}
	return res, nil
}

// indexAnnotations are the index manifest's annotations: the labels that
// describe the project, which registries show for a multi-arch image.
func indexAnnotations(opts options) map[string]string {
	a := labels(opts, "")
	delete(a, labelCACerts)
	return a
}

// platformSlug names a platform's files: linux-amd64, linux-arm-v7.
func platformSlug(p v1.Platform) string {
	s := p.OS + "-" + p.Architecture
	if p.Variant != "" {
		s += "-" + p.Variant
	}
	return s
}

// releaseVersion is the version with its "v" (the Makefile passes the
// chart's appVersion, 0.1.0), or "" when none was given.
func releaseVersion(v string) string {
	if v == "" || strings.HasPrefix(v, "v") {
		return v
	}
	return "v" + v
}

// defaultTag is the release image of version in the project's repository,
// or its devel image when no version is given.
func defaultTag(release string) string {
	if v := releaseVersion(release); v != "" {
		return defaultRepository + ":" + v
	}
	return defaultRepository + ":devel"
}

// parsePlatforms parses -platforms: comma-separated os/arch[/variant].
func parsePlatforms(s string) ([]v1.Platform, error) {
	var out []v1.Platform
	seen := map[string]bool{}
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		p, err := v1.ParsePlatform(f)
		if err != nil {
			return nil, fmt.Errorf("-platforms: %w", err)
		}
		if _, err := platformEnv(*p); err != nil {
			return nil, fmt.Errorf("-platforms: %w", err)
		}
		if seen[p.String()] {
			return nil, fmt.Errorf("-platforms: %s twice", p)
		}
		seen[p.String()] = true
		out = append(out, *p)
	}
	if len(out) == 0 {
		return nil, errors.New("-platforms: none given")
	}
	return out, nil
}

// parseTag parses -tag: a tagged reference; a digest cannot name what is
// not built yet.
func parseTag(s string) (name.Tag, error) {
	t, err := name.NewTag(s, name.StrictValidation)
	if err != nil {
		return name.Tag{}, fmt.Errorf("-tag %q: want registry/repository:tag: %w", s, err)
	}
	return t, nil
}

// sourceDate is the time every timestamp in the image is set to, so that
// builds are reproducible (https://reproducible-builds.org/specs/source-date-epoch/):
// SOURCE_DATE_EPOCH when given, else the commit time of HEAD, else the Unix
// epoch outside a git checkout.
func sourceDate(ctx context.Context, dir, epoch string) (time.Time, error) {
	if epoch == "" {
		out, err := exec.CommandContext(ctx, "git", "-C", dir, "log", "-1", "--format=%ct").Output()
		if err != nil {
			return time.Unix(0, 0).UTC(), nil //nolint:nilerr // no git history: the epoch is as fixed as a commit time
		}
		epoch = strings.TrimSpace(string(out))
	}
	sec, err := strconv.ParseInt(epoch, 10, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("source date epoch %q: %w", epoch, err)
	}
	return time.Unix(sec, 0).UTC(), nil
}

// gitRevision is the commit of HEAD, or "" outside a git checkout.
func gitRevision(ctx context.Context, dir string) string {
	out, err := exec.CommandContext(ctx, "git", "-C", dir, "rev-parse", "HEAD").Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}

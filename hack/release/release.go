package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"github.com/responsibility-operator/responsibility-operator/internal/version"
)

const (
	// binary is the plugin's command: kubectl runs kubectl-responsibility
	// for `kubectl responsibility`.
	binary = "kubectl-responsibility"
	// pluginName is the krew plugin name, metadata.name of the manifest,
	// and so the manifest's file name: krew-index requires <name>.yaml.
	pluginName = "responsibility"
	// releaseBase is where GitHub serves a release's assets.
	releaseBase = "https://github.com/responsibility-operator/responsibility-operator/releases/download/"
	// defaultPlatforms are the platforms of a release: the ones most kubectl
	// users run, and the ones .krew.yaml lists.
	defaultPlatforms = "linux/amd64,linux/arm64,darwin/amd64,darwin/arm64,windows/amd64"
	// sumsFile lists the archives' sha256 in the format of sha256sum, so
	// that `sha256sum -c sha256sums.txt` checks a download.
	sumsFile = "sha256sums.txt"
)

// config is one run of release.
type config struct {
	// Root is the repository root.
	Root string
	// Version is the release version, with or without the leading v.
	Version string
	// Out is the directory of the assets.
	Out string
	// Platforms are the platforms to build.
	Platforms []platform
	// Log receives one line per asset written; nil for none.
	Log io.Writer
}

// asset is one archive written.
type asset struct {
	Platform platform
	Name     string
	Path     string
	Sha256   string
}

// result is what release wrote.
type result struct {
	Tag      string
	Archives []asset
	Sums     string
	Manifest string
}

// platform is a GOOS/GOARCH pair, the os and arch labels of krew's platform
// selectors (krew matches them against runtime.GOOS and runtime.GOARCH).
type platform struct {
	OS, Arch string
}

func (p platform) String() string { return p.OS + "/" + p.Arch }

// binaryName is the plugin's file name on p: Windows runs only .exe files.
func (p platform) binaryName() string {
	if p.OS == "windows" {
		return binary + ".exe"
	}
	return binary
}

// archiveName is the name of p's archive: zip on Windows, where tar is not a
// given, and tar.gz elsewhere, which keeps the executable bit.
func archiveName(tag string, p platform) string {
	ext := ".tar.gz"
	if p.OS == "windows" {
		ext = ".zip"
	}
	return fmt.Sprintf("%s_%s_%s_%s%s", binary, tag, p.OS, p.Arch, ext)
}

// releaseURL is the download URL of an asset of the release tag.
func releaseURL(tag, asset string) string { return releaseBase + tag + "/" + asset }

var platformPattern = regexp.MustCompile(`^[a-z0-9]+/[a-z0-9]+$`)

// parsePlatforms parses a comma-separated os/arch list. go build decides
// which pairs exist.
func parsePlatforms(s string) ([]platform, error) {
	var out []platform
	seen := map[string]bool{}
	for f := range strings.SplitSeq(s, ",") {
		f = strings.TrimSpace(f)
		if !platformPattern.MatchString(f) {
			return nil, fmt.Errorf("platform %q: want os/arch, for example linux/amd64", f)
		}
		if seen[f] {
			return nil, fmt.Errorf("platform %s is listed twice", f)
		}
		seen[f] = true
		osName, arch, _ := strings.Cut(f, "/")
		out = append(out, platform{OS: osName, Arch: arch})
	}
	return out, nil
}

// tagPattern is a semantic version with a leading v, which krew requires of
// spec.version (sigs.k8s.io/krew internal/installation/semver).
var tagPattern = regexp.MustCompile(`^v(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$`)

// releaseTag is the tag of a version: "0.1.0" and "v0.1.0" are v0.1.0.
func releaseTag(release string) (string, error) {
	tag := "v" + strings.TrimPrefix(release, "v")
	if !tagPattern.MatchString(tag) {
		return "", fmt.Errorf("version %q is not a semantic version such as 0.1.0", release)
	}
	return tag, nil
}

// release builds and packs the plugin for every platform of c, then writes
// sha256sums.txt and the krew manifest. The template is rendered and
// checked first, with placeholder sums, so that a broken .krew.yaml or a
// platform it lacks fails before minutes of builds.
func release(ctx context.Context, c config) (*result, error) {
	tag, err := releaseTag(c.Version)
	if err != nil {
		return nil, err
	}
	if len(c.Platforms) == 0 {
		return nil, errors.New("no platforms to build")
	}
	if _, err := os.Stat(filepath.Join(c.Root, "cmd", binary)); err != nil {
		return nil, fmt.Errorf("no plugin to build (run from the repository root, or set -root): %w", err)
	}
	templatePath := filepath.Join(c.Root, ".krew.yaml")
	tmpl, err := os.ReadFile(templatePath)
	if err != nil {
		return nil, fmt.Errorf("read the krew manifest template: %w", err)
	}
	planned := map[string]string{}
	for _, p := range c.Platforms {
		planned[archiveName(tag, p)] = strings.Repeat("f", sha256.Size*2) // hex, not a YAML number
	}
	if _, err := renderManifest(tmpl, tag, planned); err != nil {
		return nil, fmt.Errorf("%s: %w", templatePath, err)
	}
	license, err := os.ReadFile(filepath.Join(c.Root, "LICENSE"))
	if err != nil {
		return nil, fmt.Errorf("read the license to pack: %w", err)
	}
	if err := os.MkdirAll(c.Out, 0o755); err != nil {
		return nil, fmt.Errorf("create the output directory: %w", err)
	}
	buildDir, err := os.MkdirTemp("", "kubectl-responsibility-release-")
	if err != nil {
		return nil, fmt.Errorf("create a build directory: %w", err)
	}
	defer func() { _ = os.RemoveAll(buildDir) }()

	res := &result{Tag: tag}
	built := map[string]string{}
	for _, p := range c.Platforms {
		bin := filepath.Join(buildDir, p.OS+"_"+p.Arch, p.binaryName())
		if err := build(ctx, c.Root, tag, p, bin); err != nil {
			return nil, err
		}
		a, err := pack(c.Out, tag, p, bin, license)
		if err != nil {
			return nil, err
		}
		res.Archives = append(res.Archives, a)
		built[a.Name] = a.Sha256
		logf(c.Log, "%s  %s\n", a.Sha256, a.Path)
	}

	if res.Sums, err = writeSums(c.Out, res.Archives); err != nil {
		return nil, err
	}
	manifest, err := renderManifest(tmpl, tag, built)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", templatePath, err)
	}
	res.Manifest = filepath.Join(c.Out, pluginName+".yaml")
	if err := writeFileAtomic(res.Manifest, manifest); err != nil {
		return nil, err
	}
	logf(c.Log, "krew manifest %s\n", res.Manifest)
	return res, nil
}

func logf(w io.Writer, format string, args ...any) {
	if w != nil {
		_, _ = fmt.Fprintf(w, format, args...)
	}
}

// build cross-compiles the plugin for p into out. Everything that changes
// the bytes is pinned here rather than taken from the caller's environment:
// no cgo (a static binary, and no C toolchain per target), -trimpath (no
// paths of this machine), no VCS stamp (the bytes depend on the tree, not on
// its git state), the baseline instruction sets (GOAMD64=v1, GOARM64=v8.0:
// every amd64 and arm64 machine) and no GOFLAGS. -s -w leave out the symbol
// table and DWARF: a third of the size.
func build(ctx context.Context, root, tag string, p platform, out string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-buildvcs=false",
		"-ldflags", "-s -w -X "+version.LinkSymbol+"="+tag,
		"-o", out, "./cmd/"+binary)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS="+p.OS, "GOARCH="+p.Arch,
		"GOAMD64=v1", "GOARM64=v8.0", "GOFLAGS=")
	var stderr bytes.Buffer
	cmd.Stdout = &stderr
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("build %s for %s: %w\n%s", binary, p, err, stderr.String())
	}
	return nil
}

// pack writes p's archive of the binary at bin and the license into dir.
func pack(dir, tag string, p platform, bin string, license []byte) (asset, error) {
	data, err := os.ReadFile(bin)
	if err != nil {
		return asset{}, fmt.Errorf("read the %s binary: %w", p, err)
	}
	files := []archiveFile{
		{Name: p.binaryName(), Mode: 0o755, Data: data},
		{Name: "LICENSE", Mode: 0o644, Data: license},
	}
	var buf bytes.Buffer
	if p.OS == "windows" {
		err = writeZip(&buf, files)
	} else {
		err = writeTarGz(&buf, files)
	}
	if err != nil {
		return asset{}, fmt.Errorf("pack %s: %w", p, err)
	}
	a := asset{Platform: p, Name: archiveName(tag, p)}
	a.Path = filepath.Join(dir, a.Name)
	sum := sha256.Sum256(buf.Bytes())
	a.Sha256 = hex.EncodeToString(sum[:])
	if err := writeFileAtomic(a.Path, buf.Bytes()); err != nil {
		return asset{}, err
	}
	return a, nil
}

// writeSums writes sha256sums.txt: one "<sha256>  <archive>" line per
// archive, sorted by name, as sha256sum prints them.
func writeSums(dir string, archives []asset) (string, error) {
	sorted := append([]asset(nil), archives...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Name < sorted[j].Name })
	var b strings.Builder
	for _, a := range sorted {
		fmt.Fprintf(&b, "%s  %s\n", a.Sha256, a.Name)
	}
	path := filepath.Join(dir, sumsFile)
	return path, writeFileAtomic(path, []byte(b.String()))
}

// writeFileAtomic writes data to path through a temporary file in the same
// directory, so that an interrupted run leaves no truncated asset behind.
func writeFileAtomic(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	_, werr := f.Write(data)
	cerr := f.Close()
	if err := errors.Join(werr, cerr, os.Chmod(f.Name(), 0o644)); err != nil {
		_ = os.Remove(f.Name())
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		_ = os.Remove(f.Name())
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

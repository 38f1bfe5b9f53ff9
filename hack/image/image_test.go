package main

import (
	"archive/tar"
	"bytes"
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/google/go-containerregistry/pkg/v1/validate"

	"github.com/responsibility-operator/responsibility-operator/internal/version"
)

const (
	// moduleRoot is the repository root, seen from this package.
	moduleRoot = "../.."
	// testVersion is linked into the test builds: a string nothing else in a
	// binary contains.
	testVersion = "0.0.0-imagetest"
	testTag     = "ghcr.io/responsibility-operator/responsibility-operator:v0.0.0-imagetest"
	// fakeCACerts stands in for the build machine's bundle, so that the
	// tests do not depend on the machine's certificates.
	fakeCACerts = "-----BEGIN CERTIFICATE-----\nimage test\n-----END CERTIFICATE-----\n"
	// versionPackage prints the linked version; the multi-arch test builds
	// it instead of the manager.
	versionPackage = "./hack/image/testdata/version"
)

// testEpoch is SOURCE_DATE_EPOCH of the test builds.
var testEpoch = time.Unix(1_700_000_000, 0).UTC()

// hostPlatform is linux on the test machine's architecture: the platform
// whose manager the tests build for real, and can run.
var hostPlatform = v1.Platform{OS: "linux", Architecture: runtime.GOARCH}

var workDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "image-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	workDir = dir
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// testOptions builds pkg for platforms into out under workDir.
func testOptions(t *testing.T, out, pkg string, platforms ...v1.Platform) options {
	t.Helper()
	ca := filepath.Join(workDir, "ca-certificates.crt")
	if err := os.WriteFile(ca, []byte(fakeCACerts), 0o644); err != nil {
		t.Fatal(err)
	}
	tag, err := parseTag(testTag)
	if err != nil {
		t.Fatal(err)
	}
	return options{
		Dir:       moduleRoot,
		Package:   pkg,
		Platforms: platforms,
		Version:   testVersion,
		Tag:       tag,
		Out:       filepath.Join(workDir, out),
		CACerts:   ca,
		Created:   testEpoch,
		Revision:  "0123456789abcdef0123456789abcdef01234567",
		Stderr:    testWriter{t},
	}
}

// testWriter passes `go build` output to the test log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

var (
	hostOnce   sync.Once
	hostResult result
	hostOpts   options
	errHost    error
)

// hostBuild builds the manager's image for the host's architecture once for
// all tests.
func hostBuild(t *testing.T) (result, options) {
	t.Helper()
	hostOnce.Do(func() {
		hostOpts = testOptions(t, "host", defaultPackage, hostPlatform)
		// Shared by the tests: go build's output goes to the test binary's
		// stderr, not to the log of whichever test came first.
		hostOpts.Stderr = os.Stderr
		hostResult, errHost = build(context.Background(), hostOpts)
	})
	if errHost != nil {
		t.Fatalf("build the manager's image: %v", errHost)
	}
	return hostResult, hostOpts
}

// layoutImage reads the platform's image back from the OCI layout, through
// the index that index.json names.
func layoutImage(t *testing.T, res result, p v1.Platform) v1.Image {
	t.Helper()
	top, err := layout.ImageIndexFromPath(res.Layout)
	if err != nil {
		t.Fatalf("read the layout: %v", err)
	}
	idx, err := top.ImageIndex(res.Index)
	if err != nil {
		t.Fatalf("the layout's index %s: %v", res.Index, err)
	}
	m, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range m.Manifests {
		if d.Platform != nil && d.Platform.Equals(p) {
			img, err := idx.Image(d.Digest)
			if err != nil {
				t.Fatalf("image %s: %v", d.Digest, err)
			}
			return img
		}
	}
	t.Fatalf("the index lists no %s image", p)
	return nil
}

func TestImageConfig(t *testing.T) {
	res, _ := hostBuild(t)
	cf, err := layoutImage(t, res, hostPlatform).ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.OS != "linux" || cf.Architecture != runtime.GOARCH {
		t.Errorf("platform %s/%s, want linux/%s", cf.OS, cf.Architecture, runtime.GOARCH)
	}
	if !cf.Created.Equal(testEpoch) {
		t.Errorf("created %s, want %s", cf.Created.Time, testEpoch)
	}
	for i, h := range cf.History {
		if !h.Created.Equal(testEpoch) {
			t.Errorf("history[%d] created %s, want %s", i, h.Created.Time, testEpoch)
		}
	}
	if got, want := len(cf.History), len(cf.RootFS.DiffIDs); got != want {
		t.Errorf("%d history entries for %d layers", got, want)
	}
	c := cf.Config
	for _, tc := range []struct {
		field, got, want string
	}{
		{"user", c.User, "65532:65532"},
		{"working dir", c.WorkingDir, "/"},
		{"entrypoint", strings.Join(c.Entrypoint, " "), "/manager"},
		{"cmd", strings.Join(c.Cmd, " "), ""},
		{"SSL_CERT_FILE", envValue(c.Env, "SSL_CERT_FILE"), "/etc/ssl/certs/ca-certificates.crt"},
		{"label source", c.Labels["org.opencontainers.image.source"], "https://github.com/responsibility-operator/responsibility-operator"},
		{"label version", c.Labels["org.opencontainers.image.version"], "v" + testVersion},
		{"label revision", c.Labels["org.opencontainers.image.revision"], "0123456789abcdef0123456789abcdef01234567"},
		{"label licenses", c.Labels["org.opencontainers.image.licenses"], "Apache-2.0"},
		{"label title", c.Labels["org.opencontainers.image.title"], "responsibility-operator"},
		{"label created", c.Labels["org.opencontainers.image.created"], "2023-11-14T22:13:20Z"},
	} {
		if tc.got != tc.want {
			t.Errorf("%s = %q, want %q", tc.field, tc.got, tc.want)
		}
	}
	if src := c.Labels[labelCACerts]; !strings.Contains(src, "build machine's "+filepath.Join(workDir, "ca-certificates.crt")+" sha256:") {
		t.Errorf("label %s = %q, want where the CA certificates came from", labelCACerts, src)
	}
}

func envValue(env []string, key string) string {
	for _, e := range env {
		if v, ok := strings.CutPrefix(e, key+"="); ok {
			return v
		}
	}
	return ""
}

// file is one entry of the image's flattened filesystem.
type file struct {
	hdr  *tar.Header
	data []byte
}

// files flattens the image's layers as a runtime would unpack them.
func files(t *testing.T, img v1.Image) map[string]file {
	t.Helper()
	rc := mutate.Extract(img)
	defer func() { _ = rc.Close() }()
	out := map[string]file{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("read the image's filesystem: %v", err)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		out["/"+strings.TrimSuffix(h.Name, "/")] = file{hdr: h, data: data}
	}
}

func TestImageFiles(t *testing.T) {
	res, _ := hostBuild(t)
	fs := files(t, layoutImage(t, res, hostPlatform))
	for _, tc := range []struct {
		path     string
		dir      bool
		mode     int64
		uid, gid int
		contains string
	}{
		{path: "/manager", mode: 0o755},
		{path: "/etc/ssl/certs/ca-certificates.crt", mode: 0o644, contains: fakeCACerts},
		{path: "/etc/passwd", mode: 0o644, contains: "nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n"},
		{path: "/etc/passwd", mode: 0o644, contains: "root:x:0:0:"},
		{path: "/etc/group", mode: 0o644, contains: "nonroot:x:65532:\n"},
		{path: "/tmp", dir: true, mode: 0o1777},
		{path: "/home/nonroot", dir: true, mode: 0o700, uid: 65532, gid: 65532},
		{path: "/root", dir: true, mode: 0o700},
		{path: "/etc", dir: true, mode: 0o755},
	} {
		t.Run(tc.path, func(t *testing.T) {
			f, ok := fs[tc.path]
			if !ok {
				t.Fatalf("%s is missing", tc.path)
			}
			if isDir := f.hdr.Typeflag == tar.TypeDir; isDir != tc.dir {
				t.Errorf("directory: %v, want %v", isDir, tc.dir)
			}
			if f.hdr.Mode != tc.mode {
				t.Errorf("mode %#o, want %#o", f.hdr.Mode, tc.mode)
			}
			if f.hdr.Uid != tc.uid || f.hdr.Gid != tc.gid {
				t.Errorf("owner %d:%d, want %d:%d", f.hdr.Uid, f.hdr.Gid, tc.uid, tc.gid)
			}
			if !f.hdr.ModTime.Equal(testEpoch) {
				t.Errorf("mtime %s, want %s", f.hdr.ModTime, testEpoch)
			}
			if !strings.Contains(string(f.data), tc.contains) {
				t.Errorf("content %q lacks %q", f.data, tc.contains)
			}
		})
	}
	t.Run("/manager is the static binary with the version", func(t *testing.T) {
		bin := fs["/manager"].data
		checkELF(t, bin, runtime.GOARCH)
		if !bytes.Contains(bin, []byte("v"+testVersion)) {
			t.Errorf("the manager does not contain the linked version v%s: -X %s did not take", testVersion, version.LinkSymbol)
		}
	})
}

// elfMachines are the ELF machines of the Go architectures an image may be
// built for.
var elfMachines = map[string]elf.Machine{
	"amd64":   elf.EM_X86_64,
	"arm64":   elf.EM_AARCH64,
	"arm":     elf.EM_ARM,
	"ppc64le": elf.EM_PPC64,
	"s390x":   elf.EM_S390,
	"riscv64": elf.EM_RISCV,
}

// checkELF checks that bin is a static executable for arch: no interpreter,
// which a distroless or empty base could not provide.
func checkELF(t *testing.T, bin []byte, arch string) {
	t.Helper()
	f, err := elf.NewFile(bytes.NewReader(bin))
	if err != nil {
		t.Fatalf("not an ELF file: %v", err)
	}
	want, ok := elfMachines[arch]
	if !ok {
		t.Fatalf("no ELF machine known for %s: add it to elfMachines", arch)
	}
	if f.Machine != want {
		t.Errorf("ELF machine %s, want %s for %s", f.Machine, want, arch)
	}
	if f.Type != elf.ET_EXEC {
		t.Errorf("ELF type %s, want a static executable", f.Type)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Error("the binary asks for a dynamic loader: CGO_ENABLED=0 did not take")
		}
	}
}

func TestTarballLoads(t *testing.T) {
	res, opts := hostBuild(t)
	archive := res.Platforms[0].Tarball
	tag := opts.Tag
	img, err := tarball.ImageFromPath(archive, &tag)
	if err != nil {
		t.Fatalf("load %s as %s: %v", archive, tag, err)
	}
	if err := validate.Image(img); err != nil {
		t.Errorf("the tarball's image does not validate: %v", err)
	}
	want := layoutImage(t, res, hostPlatform)
	if got, want := mustConfigName(t, img), mustConfigName(t, want); got != want {
		t.Errorf("the tarball's config is %s, the layout's %s", got, want)
	}
	m, err := tarball.LoadManifest(func() (io.ReadCloser, error) { return os.Open(archive) })
	if err != nil {
		t.Fatal(err)
	}
	if len(m) != 1 || !slices.Equal(m[0].RepoTags, []string{testTag}) {
		t.Errorf("manifest.json %+v, want one image tagged %s", m, testTag)
	}
	other, err := name.NewTag("example.com/other:v1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tarball.ImageFromPath(archive, &other); err == nil {
		t.Error("the tarball loads under a tag it was not written with")
	}
}

func mustConfigName(t *testing.T, img v1.Image) v1.Hash {
	t.Helper()
	h, err := img.ConfigName()
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func TestLayout(t *testing.T) {
	res, opts := hostBuild(t)
	top, err := layout.ImageIndexFromPath(res.Layout)
	if err != nil {
		t.Fatal(err)
	}
	m, err := top.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	// crane push DIR REF pushes index.json's one entry.
	if len(m.Manifests) != 1 {
		t.Fatalf("index.json lists %d entries, want the one index crane pushes", len(m.Manifests))
	}
	d := m.Manifests[0]
	if d.MediaType != types.OCIImageIndex || d.Digest != res.Index {
		t.Errorf("index.json names %s %s, want %s %s", d.MediaType, d.Digest, types.OCIImageIndex, res.Index)
	}
	if got := d.Annotations["org.opencontainers.image.ref.name"]; got != opts.Tag.TagStr() {
		t.Errorf("ref.name %q, want %q", got, opts.Tag.TagStr())
	}
	idx, err := top.ImageIndex(res.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := validate.Index(idx); err != nil {
		t.Errorf("the layout's index does not validate: %v", err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if got := im.Annotations["org.opencontainers.image.source"]; got != sourceURL {
		t.Errorf("the index's source annotation is %q, want %q", got, sourceURL)
	}
}

// TestMultiArch builds the index for two platforms with a small program in
// place of the manager (cross-compiling the manager costs minutes cold):
// the index lists each platform with its image, each tarball holds its
// platform's binary, and the host's one reports the linked version.
func TestMultiArch(t *testing.T) {
	platforms := []v1.Platform{{OS: "linux", Architecture: "amd64"}, {OS: "linux", Architecture: "arm64"}}
	opts := testOptions(t, "multi", versionPackage, platforms...)
	res, err := build(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	top, err := layout.ImageIndexFromPath(res.Layout)
	if err != nil {
		t.Fatal(err)
	}
	idx, err := top.ImageIndex(res.Index)
	if err != nil {
		t.Fatal(err)
	}
	m, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Manifests) != len(platforms) {
		t.Fatalf("the index lists %d images, want %d", len(m.Manifests), len(platforms))
	}
	for i, p := range platforms {
		t.Run(platformSlug(p), func(t *testing.T) {
			d := m.Manifests[i]
			if d.Platform == nil || !d.Platform.Equals(p) || d.Digest != res.Platforms[i].Digest || d.MediaType != types.OCIManifestSchema1 {
				t.Errorf("index entry %d: %s %s %+v, want %s %s", i, d.MediaType, d.Digest, d.Platform, res.Platforms[i].Digest, p)
			}
			tag := opts.Tag
			img, err := tarball.ImageFromPath(res.Platforms[i].Tarball, &tag)
			if err != nil {
				t.Fatal(err)
			}
			cf, err := img.ConfigFile()
			if err != nil {
				t.Fatal(err)
			}
			if cf.Architecture != p.Architecture || cf.OS != p.OS {
				t.Errorf("the tarball's config is for %s/%s", cf.OS, cf.Architecture)
			}
			bin := files(t, img)["/manager"].data
			checkELF(t, bin, p.Architecture)
			if p.Architecture == runtime.GOARCH && runtime.GOOS == "linux" {
				path := filepath.Join(t.TempDir(), "version")
				if err := os.WriteFile(path, bin, 0o755); err != nil {
					t.Fatal(err)
				}
				out, err := exec.Command(path).Output()
				if err != nil {
					t.Fatalf("run the image's binary: %v", err)
				}
				if got := strings.TrimSpace(string(out)); got != "v"+testVersion {
					t.Errorf("the binary reports version %q, want %q", got, "v"+testVersion)
				}
			}
		})
	}
}

// TestReproducible builds the manager's image a second time from the same
// tree: every digest is the same.
func TestReproducible(t *testing.T) {
	first, opts := hostBuild(t)
	opts.Out, opts.Stderr = filepath.Join(workDir, "again"), testWriter{t}
	second, err := build(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	if first.Index != second.Index {
		t.Errorf("index digest %s, then %s", first.Index, second.Index)
	}
	for i := range first.Platforms {
		if a, b := first.Platforms[i].Digest, second.Platforms[i].Digest; a != b {
			t.Errorf("%s image digest %s, then %s", first.Platforms[i].Platform, a, b)
		}
		a, err := os.ReadFile(first.Platforms[i].Tarball)
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(second.Platforms[i].Tarball)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(a, b) {
			t.Errorf("the %s tarballs differ", first.Platforms[i].Platform)
		}
	}
}

func TestParsePlatforms(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    []string
		wantErr string
	}{
		{in: "linux/amd64,linux/arm64", want: []string{"linux/amd64", "linux/arm64"}},
		{in: " linux/arm64 , ", want: []string{"linux/arm64"}},
		{in: "linux/arm/v7", want: []string{"linux/arm/v7"}},
		{in: "linux/arm64/v8", want: []string{"linux/arm64/v8"}},
		{in: "", wantErr: "none given"},
		{in: "linux", wantErr: "want os/arch"},
		{in: "linux/amd64,linux/amd64", wantErr: "twice"},
		{in: "linux/arm64/v9", wantErr: "no Go setting"},
		{in: "linux/amd64/v3/x", wantErr: "too many slashes"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			ps, err := parsePlatforms(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one with %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, p := range ps {
				got = append(got, p.String())
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestPlatformEnv(t *testing.T) {
	for _, tc := range []struct {
		platform string
		want     []string
	}{
		{"linux/amd64", []string{"CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64"}},
		{"linux/amd64/v3", []string{"CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64", "GOAMD64=v3"}},
		{"linux/arm/v7", []string{"CGO_ENABLED=0", "GOOS=linux", "GOARCH=arm", "GOARM=7"}},
		{"linux/arm64/v8", []string{"CGO_ENABLED=0", "GOOS=linux", "GOARCH=arm64"}},
	} {
		p, err := v1.ParsePlatform(tc.platform)
		if err != nil {
			t.Fatal(err)
		}
		got, err := platformEnv(*p)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s: %v, want %v", tc.platform, got, tc.want)
		}
	}
}

func TestOptionParsing(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", ""}, {"0.1.0", "v0.1.0"}, {"v0.1.0", "v0.1.0"},
	} {
		if got := releaseVersion(tc.in); got != tc.want {
			t.Errorf("releaseVersion(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	for _, tc := range []struct{ in, want string }{
		{"", defaultRepository + ":devel"}, {"0.1.0", defaultRepository + ":v0.1.0"},
	} {
		if got := defaultTag(tc.in); got != tc.want {
			t.Errorf("defaultTag(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	for _, tc := range []struct {
		in   string
		want string
		ok   bool
	}{
		{"ghcr.io/responsibility-operator/responsibility-operator:v0.1.0", "v0.1.0", true},
		{"ghcr.io/responsibility-operator/responsibility-operator@sha256:" + strings.Repeat("0", 64), "", false},
		{"Not A Reference", "", false},
	} {
		tag, err := parseTag(tc.in)
		if (err == nil) != tc.ok || (tc.ok && tag.TagStr() != tc.want) {
			t.Errorf("parseTag(%q) = %v, %v; want tag %q, ok %v", tc.in, tag, err, tc.want, tc.ok)
		}
	}
	ctx := context.Background()
	if got, err := sourceDate(ctx, moduleRoot, "1700000000"); err != nil || !got.Equal(testEpoch) {
		t.Errorf("sourceDate(1700000000) = %s, %v", got, err)
	}
	if _, err := sourceDate(ctx, moduleRoot, "yesterday"); err == nil {
		t.Error("sourceDate accepts a SOURCE_DATE_EPOCH that is not a number")
	}
	noGit := t.TempDir()
	t.Setenv("GIT_DIR", filepath.Join(noGit, "no-such-repository")) // even if the temp dir is inside a checkout
	if got, err := sourceDate(ctx, noGit, ""); err != nil || !got.Equal(time.Unix(0, 0)) {
		t.Errorf("outside a git checkout: sourceDate = %s, %v; want the epoch", got, err)
	}
}

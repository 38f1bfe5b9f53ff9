package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// TestReleaseInstallsWithKrew builds the release assets of this machine's
// platform twice, as make plugin-archives builds them for every platform:
// the two builds are byte for byte the same, sha256sums.txt and the manifest
// carry the archive's sha256, and the real krew installs the plugin from
// them, after which the installed kubectl-responsibility reports the
// release version and runs.
func TestReleaseInstallsWithKrew(t *testing.T) {
	krewBin := krew(t)
	host := platform{OS: runtime.GOOS, Arch: runtime.GOARCH}
	var results [2]*result
	for i := range results {
		res, err := release(context.Background(), config{Root: repoRoot, Version: "0.1.0", Out: t.TempDir(), Platforms: []platform{host}})
		if err != nil {
			t.Fatal(err)
		}
		results[i] = res
	}
	res := results[0]
	if res.Tag != testTag || len(res.Archives) != 1 || res.Archives[0].Name != archiveName(testTag, host) {
		t.Fatalf("release wrote %+v", res)
	}
	archive := res.Archives[0]
	for _, f := range []string{archive.Name, sumsFile, pluginName + ".yaml"} {
		a, errA := os.ReadFile(filepath.Join(filepath.Dir(res.Manifest), f))
		b, errB := os.ReadFile(filepath.Join(filepath.Dir(results[1].Manifest), f))
		if errA != nil || errB != nil || !bytes.Equal(a, b) {
			t.Errorf("%s differs between two builds of the same tree (%v, %v)", f, errA, errB)
		}
	}

	data, err := os.ReadFile(archive.Path)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	if hex.EncodeToString(sum[:]) != archive.Sha256 {
		t.Errorf("sha256 of %s is not the one reported", archive.Name)
	}
	sums, err := os.ReadFile(res.Sums)
	if err != nil || string(sums) != archive.Sha256+"  "+archive.Name+"\n" {
		t.Errorf("%s: %q (%v)", sumsFile, sums, err)
	}
	manifestText, err := os.ReadFile(res.Manifest)
	if err != nil {
		t.Fatal(err)
	}
	m := decode(t, manifestText)
	if len(m.Spec.Platforms) != 1 || m.Spec.Platforms[0].Sha256 != archive.Sha256 || m.Spec.Platforms[0].Selector.String() != host.String() {
		t.Errorf("manifest platforms %+v, want %s with sha256 %s", m.Spec.Platforms, host, archive.Sha256)
	}

	root := krewInstall(t, krewBin, res.Manifest, archive.Path, testTag, host)
	plugin := filepath.Join(root, "bin", host.binaryName())
	run := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(plugin, args...)
		cmd.Env = isolatedEnv(t.TempDir(), root)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("kubectl-responsibility %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	if got := run("version"); got != testTag+"\n" {
		t.Errorf("version printed %q, want %s", got, testTag)
	}
	if got := run("--help"); !strings.Contains(got, "kubectl responsibility") || !strings.Contains(got, "version") {
		t.Errorf("--help:\n%s", got)
	}
}

// TestReleaseRejects: a bad version or platform list fails before anything
// is built.
func TestReleaseRejects(t *testing.T) {
	for _, tt := range []struct {
		version, platforms, want string
	}{
		{"0.1", "linux/amd64", "not a semantic version"},
		{"v0.1.0", "linux", "want os/arch"},
		{"0.1.0", "linux/amd64,linux/amd64", "listed twice"},
		{"0.1.0", "linux/riscv64", "no platform of the template downloads"},
	} {
		ps, err := parsePlatforms(tt.platforms)
		if err == nil {
			_, err = release(context.Background(), config{Root: repoRoot, Version: tt.version, Out: t.TempDir(), Platforms: ps})
		}
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("-version %s -platforms %s: error %v, want one containing %q", tt.version, tt.platforms, err, tt.want)
		}
	}
}

package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// repoRoot is the repository root, from this package's directory.
const repoRoot = "../.."

// krew returns the path of bin/krew, the pinned krew `make krew` builds.
func krew(t *testing.T) string {
	t.Helper()
	path, err := filepath.Abs(filepath.Join(repoRoot, "bin", "krew"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("krew is missing (%v): run make krew", err)
	}
	return path
}

// krewInstall runs `krew install --manifest --archive` of release tag as a
// new user would, on the platform p (krew's KREW_OS and KREW_ARCH stand in for the
// machine's), and returns the KREW_ROOT it installed into. It never reaches
// the network: --manifest skips the index, KREW_NO_UPGRADE_CHECK the release
// check, and every HTTP request would go to a closed local port. HOME and
// TMPDIR are fresh too, so that nothing of this machine's krew is read or
// written.
func krewInstall(t *testing.T, krewBin, manifest, archive, tag string, p platform) string {
	t.Helper()
	dir := t.TempDir()
	root := filepath.Join(dir, "krew")
	for _, d := range []string{"home", "tmp"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(krewBin, "install", "--manifest="+manifest, "--archive="+archive)
	cmd.Env = append(isolatedEnv(dir, root),
		"KREW_NO_UPGRADE_CHECK=1", "KREW_OS="+p.OS, "KREW_ARCH="+p.Arch)
	cmd.Stdin = strings.NewReader("")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("krew install of %s on %s: %v\n%s", filepath.Base(archive), p, err, out)
	}
	// krew copies the archive's files into its store and links the binary
	// into its bin directory, the one a user puts on PATH.
	store := filepath.Join(root, "store", pluginName, tag)
	for _, f := range []string{filepath.Join(store, "LICENSE"), filepath.Join(store, p.binaryName()), filepath.Join(root, "bin", p.binaryName())} {
		if _, err := os.Stat(f); err != nil {
			t.Errorf("after krew install on %s: %v\n%s", p, err, out)
		}
	}
	return root
}

// isolatedEnv is the environment of a command run as a user with nothing
// but the krew root: a fresh HOME and TMPDIR under dir, the krew bin
// directory on PATH, and proxies that refuse every connection.
func isolatedEnv(dir, root string) []string {
	closed := "http://127.0.0.1:9"
	return []string{
		"PATH=" + filepath.Join(root, "bin") + string(os.PathListSeparator) + "/usr/bin:/bin",
		"HOME=" + filepath.Join(dir, "home"),
		"TMPDIR=" + filepath.Join(dir, "tmp"),
		"KREW_ROOT=" + root,
		"HTTP_PROXY=" + closed, "HTTPS_PROXY=" + closed, "http_proxy=" + closed, "https_proxy=" + closed,
		"NO_COLOR=1",
	}
}

package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

const testTag = "v0.1.0"

func readTemplate(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, ".krew.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mustPlatforms(t *testing.T, s string) []platform {
	t.Helper()
	ps, err := parsePlatforms(s)
	if err != nil {
		t.Fatal(err)
	}
	return ps
}

// fakeSums gives each platform's archive a distinct sha256.
func fakeSums(ps []platform) map[string]string {
	out := map[string]string{}
	for _, p := range ps {
		sum := sha256.Sum256([]byte(p.String()))
		out[archiveName(testTag, p)] = hex.EncodeToString(sum[:])
	}
	return out
}

func decode(t *testing.T, b []byte) manifest {
	t.Helper()
	var m manifest
	if err := yaml.UnmarshalStrict(b, &m); err != nil {
		t.Fatalf("%v in:\n%s", err, b)
	}
	return m
}

// TestRenderReleaseManifest renders .krew.yaml for every platform of a
// release: the manifest has each of them once, with its archive's URL and
// sha256 and its binary, and it is the template's own text with only the
// addURIAndSha calls replaced, as krew-release-bot renders it.
func TestRenderReleaseManifest(t *testing.T) {
	tmpl := readTemplate(t)
	ps := mustPlatforms(t, defaultPlatforms)
	sums := fakeSums(ps)
	out, err := renderManifest(tmpl, testTag, sums)
	if err != nil {
		t.Fatal(err)
	}
	m := decode(t, out)
	if m.Metadata.Name != pluginName || m.Spec.Version != testTag || m.Spec.ShortDescription == "" || m.Spec.Description == "" {
		t.Errorf("metadata or spec: %+v", m)
	}
	byPlatform := map[string]manifestPlatform{}
	for _, p := range m.Spec.Platforms {
		byPlatform[p.Selector.String()] = p
	}
	if len(byPlatform) != len(ps) || len(m.Spec.Platforms) != len(ps) {
		t.Errorf("%d platforms (%d distinct), want %d: %v", len(m.Spec.Platforms), len(byPlatform), len(ps), byPlatform)
	}
	for _, p := range ps {
		got, ok := byPlatform[p.String()]
		name := archiveName(testTag, p)
		want := manifestPlatform{
			Selector: manifestSelector{MatchLabels: map[string]string{"os": p.OS, "arch": p.Arch}},
			URI:      "https://github.com/responsibility-operator/responsibility-operator/releases/download/v0.1.0/" + name,
			Sha256:   sums[name],
			Bin:      p.binaryName(),
		}
		if !ok || !sha256Pattern.MatchString(got.Sha256) || !equalPlatform(got, want) {
			t.Errorf("%s: %+v, want %+v", p, got, want)
		}
	}
	// Verbatim: the comments stay, and the template's lines outside the
	// calls are unchanged.
	var kept int
	for line := range strings.SplitSeq(string(tmpl), "\n") {
		if !strings.Contains(line, "{{") {
			if !bytes.Contains(out, []byte(line+"\n")) && line != "" {
				t.Errorf("line %q of the template is not in the manifest", line)
			}
			kept++
		}
	}
	if !strings.HasPrefix(string(out), "# The krew plugin manifest") || kept < 40 {
		t.Errorf("not the template's text (%d lines kept):\n%s", kept, out)
	}
}

func equalPlatform(a, b manifestPlatform) bool {
	return a.URI == b.URI && a.Sha256 == b.Sha256 && a.Bin == b.Bin && len(a.Files) == 0 &&
		len(a.Selector.MatchLabels) == 2 && a.Selector.String() == b.Selector.String()
}

// TestRenderSubsetManifest: a run that built some platforms writes the
// manifest of those only, marked as such.
func TestRenderSubsetManifest(t *testing.T) {
	ps := mustPlatforms(t, "darwin/arm64,windows/amd64")
	sums := fakeSums(ps)
	out, err := renderManifest(readTemplate(t), testTag, sums)
	if err != nil {
		t.Fatal(err)
	}
	m := decode(t, out)
	if len(m.Spec.Platforms) != 2 || m.Spec.Platforms[0].Selector.String() != "darwin/arm64" || m.Spec.Platforms[1].Sha256 != sums[archiveName(testTag, ps[1])] {
		t.Errorf("platforms %+v", m.Spec.Platforms)
	}
	if !strings.Contains(string(out), "for darwin/arm64, windows/amd64 only") {
		t.Errorf("no subset header:\n%s", out)
	}
}

// TestRenderManifestErrors: a template that would install the wrong thing,
// or that krew would reject, fails the render with the reason.
func TestRenderManifestErrors(t *testing.T) {
	tmpl := string(readTemplate(t))
	all := fakeSums(mustPlatforms(t, defaultPlatforms))
	tests := []struct {
		name     string
		old, new string
		archives map[string]string
		want     string
	}{
		{name: "selector and archive disagree", old: "os: darwin\n        arch: amd64", new: "os: darwin\n        arch: arm64",
			want: "darwin/arm64 is listed twice"},
		{name: "wrong binary", old: "bin: kubectl-responsibility.exe", new: "bin: kubectl-responsibility", want: `bin "kubectl-responsibility", want kubectl-responsibility.exe`},
		{name: "field krew does not know", old: "homepage:", new: "homepages:", want: "unknown field"},
		{name: "version is not the tag", old: "version: {{ .TagName }}", new: "version: v9.9.9", want: `spec.version "v9.9.9"`},
		{name: "value the bot does not give", old: "version: {{ .TagName }}", new: "version: {{ .PluginVersion }}", want: "PluginVersion"},
		{name: "short description on two lines", old: "shortDescription: Show", new: "shortDescription: |\n    Show\n    two", want: "want one line"},
		{name: "archive built without a platform", archives: map[string]string{archiveName(testTag, platform{"linux", "riscv64"}): all[archiveName(testTag, platform{"linux", "amd64"})]},
			want: "no platform of the template downloads kubectl-responsibility_v0.1.0_linux_riscv64.tar.gz"},
		{name: "not a template", old: "{{ .TagName }}", new: "{{ .TagName ", want: "parse"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			text := tmpl
			if tt.old != "" {
				if !strings.Contains(text, tt.old) {
					t.Fatalf("%q is not in .krew.yaml", tt.old)
				}
				text = strings.Replace(text, tt.old, tt.new, 1)
			}
			archives := all
			if tt.archives != nil {
				archives = tt.archives
			}
			_, err := renderManifest([]byte(text), testTag, archives)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want one containing %q", err, tt.want)
			}
		})
	}
}

// TestKrewInstallsEveryPlatform installs the release manifest with the real
// krew on each of its platforms, from archives packed as release packs them
// but around a stand-in binary (cross-compiling five plugins is the job of
// make plugin-archives, not of a test): krew accepts the manifest, finds
// each platform, checks each sha256, unpacks tar.gz and zip, and links the
// binary under the name kubectl runs.
func TestKrewInstallsEveryPlatform(t *testing.T) {
	krewBin := krew(t)
	dir := t.TempDir()
	bin := filepath.Join(dir, "stand-in")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\necho stand-in\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	ps := mustPlatforms(t, defaultPlatforms)
	sums := map[string]string{}
	paths := map[platform]string{}
	for _, p := range ps {
		a, err := pack(dir, testTag, p, bin, []byte("Apache License\n"))
		if err != nil {
			t.Fatal(err)
		}
		sums[a.Name] = a.Sha256
		paths[p] = a.Path
	}
	out, err := renderManifest(readTemplate(t), testTag, sums)
	if err != nil {
		t.Fatal(err)
	}
	manifestPath := filepath.Join(dir, pluginName+".yaml")
	if err := os.WriteFile(manifestPath, out, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, p := range ps {
		t.Run(p.OS+"_"+p.Arch, func(t *testing.T) {
			krewInstall(t, krewBin, manifestPath, paths[p], testTag, p)
		})
	}
}

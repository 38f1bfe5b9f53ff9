package main

import (
	"bytes"
	"errors"
	"fmt"
	"path"
	"regexp"
	"sort"
	"strings"
	"text/template"

	"sigs.k8s.io/yaml"
)

// The krew plugin manifest, as krew v0.4.3 reads it (sigs.k8s.io/krew
// pkg/index/types.go, Plugin and its fields; documented at
// krew.sigs.k8s.io/docs/developer-guide/plugin-manifest). The rendered
// template is decoded strictly into these types: a field krew does not know
// is a typo, and fails here rather than being ignored by krew.
type manifest struct {
	APIVersion string           `json:"apiVersion"`
	Kind       string           `json:"kind"`
	Metadata   manifestMetadata `json:"metadata"`
	Spec       manifestSpec     `json:"spec"`
}

// manifestMetadata names the plugin: `kubectl <name>`.
type manifestMetadata struct {
	Name string `json:"name"`
}

// manifestSpec is the release: its version, what krew search and krew info
// show, and an archive per platform.
type manifestSpec struct {
	Version          string             `json:"version"`
	Homepage         string             `json:"homepage,omitempty"`
	ShortDescription string             `json:"shortDescription"`
	Description      string             `json:"description,omitempty"`
	Caveats          string             `json:"caveats,omitempty"`
	Platforms        []manifestPlatform `json:"platforms"`
}

// manifestPlatform is one archive, the platform it is for, and the binary in
// it that krew links.
type manifestPlatform struct {
	Selector manifestSelector `json:"selector"`
	URI      string           `json:"uri"`
	Sha256   string           `json:"sha256"`
	Bin      string           `json:"bin"`
	Files    []fileOperation  `json:"files,omitempty"`
}

// manifestSelector is the label selector of a platform. This project's
// platforms are one os and one arch each, so only matchLabels.
type manifestSelector struct {
	MatchLabels map[string]string `json:"matchLabels"`
}

// fileOperation copies files of the archive into the plugin's directory;
// without any, krew copies them all.
type fileOperation struct {
	From string `json:"from"`
	To   string `json:"to"`
}

const (
	krewAPIVersion = "krew.googlecontainertools.github.com/v1alpha2"
	krewKind       = "Plugin"
)

// sha256Pattern is what krew accepts as a sha256 (sigs.k8s.io/krew
// internal/index/validation).
var sha256Pattern = regexp.MustCompile(`^[a-f0-9]{64}$`)

// templateValues are the values krew-release-bot executes .krew.yaml with
// (its source.ReleaseRequest); the template may use only the tag.
type templateValues struct {
	TagName string
}

// renderManifest renders the krew-release-bot template text for the release
// tag, the way the bot does (pkg/source/template.go of
// github.com/rajatjindal/krew-release-bot): the template is a Go
// text/template whose addURIAndSha "URL" .TagName renders URL itself as a
// template with .TagName and .Version (the tag's digits) and writes
//
//	uri: URL
//	    sha256: SHA
//
// The bot downloads URL to hash it; here SHA is the sha256 of the archive of
// that name in archives (file name to sha256), the ones this run built.
//
// The result is checked against what krew requires and what this project
// releases: every platform's URL is the release asset of its os and arch,
// its bin the binary of its os, and every archive built has a platform.
// When every platform of the template was built, the rendered text is the
// manifest as it is, comments and all, byte for byte what the bot would
// submit for the same archives. When only some were (a -platforms subset,
// the tests), the manifest of the built platforms is written instead.
func renderManifest(text []byte, tag string, archives map[string]string) ([]byte, error) {
	t, err := parseManifestTemplate(text)
	if err != nil {
		return nil, err
	}
	named := map[string]bool{}
	t.Funcs(template.FuncMap{"addURIAndSha": func(url, tagName string) (string, error) {
		uri, err := expandURL(url, tagName)
		if err != nil {
			return "", err
		}
		name := path.Base(uri)
		named[name] = true
		// An archive not built gets no sha256; its platform is dropped
		// below.
		return fmt.Sprintf("uri: %s\n    sha256: %s", uri, archives[name]), nil
	}})
	var buf bytes.Buffer
	if err := t.Execute(&buf, templateValues{TagName: tag}); err != nil {
		return nil, fmt.Errorf("render: %w", err)
	}
	var m manifest
	if err := yaml.UnmarshalStrict(buf.Bytes(), &m); err != nil {
		return nil, fmt.Errorf("rendered manifest: %w", err)
	}
	if err := checkManifest(&m, tag); err != nil {
		return nil, err
	}
	var missing []string
	for name := range archives {
		if !named[name] {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		return nil, fmt.Errorf("no platform of the template downloads %s: add it, or leave its platform out of -platforms", strings.Join(missing, ", "))
	}
	kept := m.Spec.Platforms[:0]
	for _, p := range m.Spec.Platforms {
		if sha, ok := archives[path.Base(p.URI)]; ok {
			if p.Sha256 != sha {
				return nil, fmt.Errorf("platform %s: sha256 %q, want %s", p.Selector.String(), p.Sha256, sha)
			}
			kept = append(kept, p)
		}
	}
	if len(kept) == len(m.Spec.Platforms) {
		return buf.Bytes(), nil
	}
	m.Spec.Platforms = kept
	subset, err := yaml.Marshal(&m)
	if err != nil {
		return nil, fmt.Errorf("encode the manifest: %w", err)
	}
	var platforms []string
	for _, p := range kept {
		platforms = append(platforms, p.Selector.String())
	}
	header := fmt.Sprintf("# The krew manifest of %s %s for %s only, rendered from .krew.yaml\n# by hack/release -platforms: not a release manifest.\n", binary, tag, strings.Join(platforms, ", "))
	return append([]byte(header), subset...), nil
}

// parseManifestTemplate parses the template with the functions it may call;
// renderManifest binds addURIAndSha to the archives before it executes it.
func parseManifestTemplate(text []byte) (*template.Template, error) {
	t, err := template.New(".krew.yaml").Option("missingkey=error").Funcs(template.FuncMap{
		"addURIAndSha": func(string, string) (string, error) { return "", errors.New("addURIAndSha is not bound") },
	}).Parse(string(text))
	if err != nil {
		return nil, fmt.Errorf("parse: %w", err)
	}
	return t, nil
}

var tagDigits = regexp.MustCompile(`\d+(\.\d+)+`)

// expandURL renders addURIAndSha's URL template: krew-release-bot gives it
// .TagName and .Version, the tag's first run of dotted digits (1.2.3 of
// v1.2.3-rc.1).
func expandURL(url, tag string) (string, error) {
	t, err := template.New("url").Option("missingkey=error").Parse(url)
	if err != nil {
		return "", fmt.Errorf("addURIAndSha URL %q: %w", url, err)
	}
	version := tagDigits.FindString(tag)
	if version == "" {
		version = tag
	}
	var b strings.Builder
	if err := t.Execute(&b, struct{ TagName, Version string }{TagName: tag, Version: version}); err != nil {
		return "", fmt.Errorf("addURIAndSha URL %q: %w", url, err)
	}
	return b.String(), nil
}

func (s manifestSelector) String() string {
	return s.MatchLabels["os"] + "/" + s.MatchLabels["arch"]
}

// checkManifest checks what krew validates when it reads a manifest
// (sigs.k8s.io/krew internal/index/validation, ValidatePlugin), and that
// each platform downloads this release's archive of its os and arch and
// runs the binary of its os. A platform without a sha256 is one whose
// archive was not built.
func checkManifest(m *manifest, tag string) error {
	var errs []error
	if m.APIVersion != krewAPIVersion || m.Kind != krewKind {
		errs = append(errs, fmt.Errorf("apiVersion %q, kind %q: want %s, %s", m.APIVersion, m.Kind, krewAPIVersion, krewKind))
	}
	if m.Metadata.Name != pluginName {
		errs = append(errs, fmt.Errorf("metadata.name %q: want %s, the plugin of kubectl %s", m.Metadata.Name, pluginName, pluginName))
	}
	if m.Spec.Version != tag {
		errs = append(errs, fmt.Errorf("spec.version %q: want the release tag %s", m.Spec.Version, tag))
	}
	if m.Spec.ShortDescription == "" || strings.ContainsAny(m.Spec.ShortDescription, "\r\n") {
		errs = append(errs, fmt.Errorf("spec.shortDescription %q: want one line", m.Spec.ShortDescription))
	}
	if m.Spec.Description == "" || m.Spec.Homepage == "" {
		errs = append(errs, errors.New("spec.description and spec.homepage are required: krew search and krew info show them"))
	}
	if len(m.Spec.Platforms) == 0 {
		errs = append(errs, errors.New("spec.platforms is empty"))
	}
	seen := map[string]bool{}
	for i, p := range m.Spec.Platforms {
		if err := checkPlatform(p, tag); err != nil {
			errs = append(errs, fmt.Errorf("spec.platforms[%d]: %w", i, err))
		}
		if seen[p.Selector.String()] {
			errs = append(errs, fmt.Errorf("spec.platforms[%d]: %s is listed twice", i, p.Selector.String()))
		}
		seen[p.Selector.String()] = true
	}
	return errors.Join(errs...)
}

func checkPlatform(p manifestPlatform, tag string) error {
	labels := p.Selector.MatchLabels
	if len(labels) != 2 || labels["os"] == "" || labels["arch"] == "" {
		return fmt.Errorf("selector.matchLabels %v: want exactly os and arch", labels)
	}
	pl := platform{OS: labels["os"], Arch: labels["arch"]}
	if want := releaseURL(tag, archiveName(tag, pl)); p.URI != want {
		return fmt.Errorf("%s: uri %q, want %s", pl, p.URI, want)
	}
	if p.Sha256 != "" && !sha256Pattern.MatchString(p.Sha256) {
		return fmt.Errorf("%s: sha256 %q is not 64 lower-case hex digits", pl, p.Sha256)
	}
	if p.Bin != pl.binaryName() {
		return fmt.Errorf("%s: bin %q, want %s", pl, p.Bin, pl.binaryName())
	}
	for _, f := range p.Files {
		if f.From == "" || f.To == "" {
			return fmt.Errorf("%s: files entries need from and to", pl)
		}
	}
	return nil
}

// Command upstream vendors other projects' files — full CustomResourceDefinitions
// and the example manifests of the upstream corpus — into this repository, each
// with a header naming where it came from: repository, tag, commit, path and
// licence. What to vendor is declared in test/upstream/<project>/sources.yaml;
// the files are never edited by hand.
//
//	go run ./hack/upstream                      # every project, from GitHub
//	go run ./hack/upstream -mirror DIR kubevirt # one project, from local git mirrors
//	go run ./hack/upstream -check               # fail when a vendored file differs
//
// A file is read at the pinned commit, from a local git directory when -mirror
// names a directory holding one for the repository (DIR/<owner>+<name>/repo,
// DIR/<owner>/<name>.git or DIR/<owner>/<name>), else from
// raw.githubusercontent.com. With a mirror, the tag must still point at the
// pinned commit.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	jsonpatch "github.com/evanphx/json-patch/v5"
	"sigs.k8s.io/yaml"
)

// Sources is one project's sources.yaml.
type Sources struct {
	// Repository is the GitHub repository, owner/name.
	Repository string `json:"repository"`
	// Ref is the release tag (or branch) the files were read at.
	Ref string `json:"ref"`
	// Commit is the commit Ref named when the files were read.
	Commit string `json:"commit"`
	// License is the SPDX identifier of the repository's licence.
	License string `json:"license"`
	Files   []File `json:"files"`
}

// File is one vendored file.
type File struct {
	// Path is the file's path in the repository.
	Path string `json:"path"`
	// To is where it is written, relative to this repository's root.
	To string `json:"to"`
	// Documents keeps only these documents of a multi-document YAML file.
	Documents []DocumentRef `json:"documents,omitempty"`
	// Patch is a JSON merge patch applied to every kept document. Note must
	// say why: a vendored file is upstream's unless said otherwise.
	Patch map[string]any `json:"patch,omitempty"`
	Note  string         `json:"note,omitempty"`
	// KubeVirtSchema builds a CustomResourceDefinition from KubeVirt's
	// generated schemas (pkg/virt-operator/resource/generate/components/
	// validations_generated.go, the schemas virt-operator installs at run
	// time): the schema of this name goes into every version of CRD.
	KubeVirtSchema string         `json:"kubevirtSchema,omitempty"`
	CRD            map[string]any `json:"crd,omitempty"`
	// Lines keeps only the lines "FIRST-LAST" (1-based, inclusive) of the
	// file: a YAML example inside a documentation page (Markdown), taken
	// verbatim but for the indentation its lines share, which is removed.
	Lines string `json:"lines,omitempty"`
}

// DocumentRef names one document by kind and metadata.name.
type DocumentRef struct {
	Kind string `json:"kind"`
	Name string `json:"name"`
}

func main() {
	mirror := flag.String("mirror", "", "a directory of local git mirrors to read from instead of GitHub")
	check := flag.Bool("check", false, "write nothing; fail when a vendored file differs from its source")
	flag.Parse()
	if err := run(*mirror, *check, flag.Args()); err != nil {
		fmt.Fprintln(os.Stderr, "upstream:", err)
		os.Exit(1)
	}
}

func run(mirror string, check bool, projects []string) error {
	all, err := filepath.Glob(filepath.Join("test", "upstream", "*", "sources.yaml"))
	if err != nil {
		return err
	}
	if len(all) == 0 {
		return errors.New("no test/upstream/*/sources.yaml: run from the repository root")
	}
	stale := 0
	for _, path := range all {
		project := filepath.Base(filepath.Dir(path))
		if len(projects) > 0 && !slices.Contains(projects, project) {
			continue
		}
		n, err := vendorProject(path, mirror, check)
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		stale += n
	}
	if stale > 0 {
		return fmt.Errorf("%d vendored files differ from their sources: run go run ./hack/upstream", stale)
	}
	return nil
}

func vendorProject(path, mirror string, check bool) (int, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	var s Sources
	if err := yaml.UnmarshalStrict(raw, &s); err != nil {
		return 0, err
	}
	if s.Repository == "" || s.Ref == "" || !regexp.MustCompile(`^[0-9a-f]{40}$`).MatchString(s.Commit) || s.License == "" {
		return 0, errors.New("repository, ref, commit (40 hex digits) and license are required")
	}
	src, err := newSource(s, mirror)
	if err != nil {
		return 0, err
	}
	stale := 0
	for _, f := range s.Files {
		if f.Path == "" || f.To == "" {
			return stale, errors.New("every file needs path and to")
		}
		if f.Patch != nil && f.Note == "" {
			return stale, fmt.Errorf("%s: a patch needs a note saying why", f.Path)
		}
		content, err := src.read(f.Path)
		if err != nil {
			return stale, err
		}
		if f.Lines != "" {
			if content, err = lineRange(content, f.Lines); err != nil {
				return stale, fmt.Errorf("%s: %w", f.Path, err)
			}
		}
		body, err := render(f, content)
		if err != nil {
			return stale, fmt.Errorf("%s: %w", f.Path, err)
		}
		out := append(header(s, f, filepath.ToSlash(path)), body...)
		if check {
			have, err := os.ReadFile(f.To)
			if err != nil || !bytes.Equal(have, out) {
				fmt.Fprintf(os.Stderr, "stale: %s (from %s %s)\n", f.To, s.Repository, f.Path)
				stale++
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(f.To), 0o755); err != nil {
			return stale, err
		}
		if err := os.WriteFile(f.To, out, 0o644); err != nil {
			return stale, err
		}
		fmt.Printf("%s <- %s@%s:%s\n", f.To, s.Repository, s.Ref, f.Path)
	}
	return stale, nil
}

func header(s Sources, f File, sourcesPath string) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "# Vendored from https://github.com/%s at %s (commit %s),\n", s.Repository, s.Ref, s.Commit)
	fmt.Fprintf(&b, "# path %s. License: %s.\n", f.Path, s.License)
	if f.Lines != "" {
		fmt.Fprintf(&b, "# Lines %s of that file (a YAML example of the page), without their common indentation.\n", f.Lines)
	}
	if len(f.Documents) > 0 {
		names := make([]string, 0, len(f.Documents))
		for _, d := range f.Documents {
			names = append(names, d.Kind+" "+d.Name)
		}
		fmt.Fprintf(&b, "# Documents kept: %s.\n", strings.Join(names, ", "))
	}
	if f.KubeVirtSchema != "" {
		fmt.Fprintf(&b, "# The schema %q of that file; names and versions from pkg/virt-operator/resource/generate/components/crds.go.\n", f.KubeVirtSchema)
	}
	if f.Note != "" {
		fmt.Fprintf(&b, "# Changed from upstream: %s\n", oneLine(f.Note))
	}
	fmt.Fprintf(&b, "# Generated by hack/upstream from %s: do not edit.\n", sourcesPath)
	return []byte(b.String())
}

// lineRange returns the lines "FIRST-LAST" (1-based, inclusive) of content,
// less the leading spaces all of its non-blank lines share.
func lineRange(content []byte, spec string) ([]byte, error) {
	var first, last int
	if _, err := fmt.Sscanf(spec, "%d-%d", &first, &last); err != nil || first < 1 || last < first {
		return nil, fmt.Errorf("lines %q: want FIRST-LAST, 1 <= FIRST <= LAST", spec)
	}
	lines := strings.Split(string(content), "\n")
	if last > len(lines) {
		return nil, fmt.Errorf("lines %q: the file has %d lines", spec, len(lines))
	}
	kept := lines[first-1 : last]
	indent := -1
	for _, l := range kept {
		if strings.TrimSpace(l) == "" {
			continue
		}
		if n := len(l) - len(strings.TrimLeft(l, " ")); indent < 0 || n < indent {
			indent = n
		}
	}
	var b strings.Builder
	for _, l := range kept {
		switch {
		case indent <= 0:
		case len(l) >= indent:
			l = l[indent:]
		default: // a blank line shorter than the indentation
			l = strings.TrimLeft(l, " ")
		}
		b.WriteString(l + "\n")
	}
	return []byte(b.String()), nil
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// render turns the upstream file into what is vendored: verbatim, the
// selected documents verbatim, or re-serialised when patched or built.
func render(f File, content []byte) ([]byte, error) {
	if f.KubeVirtSchema != "" {
		return kubevirtCRD(f, content)
	}
	docs := splitDocuments(content)
	if len(f.Documents) > 0 {
		var kept [][]byte
		for _, want := range f.Documents {
			found := false
			for _, d := range docs {
				var meta struct {
					Kind     string `json:"kind"`
					Metadata struct {
						Name string `json:"name"`
					} `json:"metadata"`
				}
				if err := yaml.Unmarshal(d, &meta); err != nil {
					continue
				}
				if meta.Kind == want.Kind && meta.Metadata.Name == want.Name {
					kept = append(kept, d)
					found = true
				}
			}
			if !found {
				return nil, fmt.Errorf("no document %s %s", want.Kind, want.Name)
			}
		}
		docs = kept
	}
	if f.Patch == nil {
		if len(f.Documents) == 0 {
			return content, nil
		}
		return joinDocuments(docs), nil
	}
	patch, err := yaml.Marshal(f.Patch)
	if err != nil {
		return nil, err
	}
	patchJSON, err := yaml.YAMLToJSON(patch)
	if err != nil {
		return nil, err
	}
	var out [][]byte
	for _, d := range docs {
		js, err := yaml.YAMLToJSON(d)
		if err != nil {
			return nil, err
		}
		if t := bytes.TrimSpace(js); len(t) == 0 || string(t) == "null" {
			continue
		}
		merged, err := jsonpatch.MergePatch(js, patchJSON)
		if err != nil {
			return nil, err
		}
		y, err := yaml.JSONToYAML(merged)
		if err != nil {
			return nil, err
		}
		out = append(out, y)
	}
	return joinDocuments(out), nil
}

var separator = regexp.MustCompile(`(?m)^---[ \t]*(#.*)?$`)

// splitDocuments splits a YAML stream on its "---" lines, keeping each
// document's text (and comments) as it is.
func splitDocuments(content []byte) [][]byte {
	var out [][]byte
	for _, d := range separator.Split(string(content), -1) {
		if strings.TrimSpace(stripComments(d)) == "" {
			continue
		}
		out = append(out, []byte(strings.TrimLeft(d, "\n")))
	}
	return out
}

func stripComments(s string) string {
	var b strings.Builder
	for _, line := range strings.Split(s, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(line), "#") {
			b.WriteString(line + "\n")
		}
	}
	return b.String()
}

func joinDocuments(docs [][]byte) []byte {
	var b bytes.Buffer
	for i, d := range docs {
		if i > 0 {
			b.WriteString("---\n")
		}
		b.Write(d)
		if !bytes.HasSuffix(d, []byte("\n")) {
			b.WriteString("\n")
		}
	}
	return b.Bytes()
}

// kubevirtCRD builds a CRD from the skeleton in f.CRD and the schema named
// f.KubeVirtSchema of validations_generated.go, whose map holds one
// back-quoted YAML string (openAPIV3Schema: ...) per CRD.
func kubevirtCRD(f File, content []byte) ([]byte, error) {
	if f.CRD == nil {
		return nil, errors.New("kubevirtSchema needs crd: the CRD without its schemas")
	}
	re := regexp.MustCompile("(?s)\n\t\"" + regexp.QuoteMeta(f.KubeVirtSchema) + "\": `(.*?)`,\n")
	m := re.FindSubmatch(content)
	if m == nil {
		return nil, fmt.Errorf("no schema %q", f.KubeVirtSchema)
	}
	var validation map[string]any
	if err := yaml.Unmarshal(m[1], &validation); err != nil {
		return nil, fmt.Errorf("schema %q: %w", f.KubeVirtSchema, err)
	}
	crd, err := deepCopy(f.CRD)
	if err != nil {
		return nil, err
	}
	spec, _ := crd["spec"].(map[string]any)
	versions, _ := spec["versions"].([]any)
	if len(versions) == 0 {
		return nil, errors.New("crd.spec.versions is empty")
	}
	for _, v := range versions {
		version, ok := v.(map[string]any)
		if !ok {
			return nil, errors.New("crd.spec.versions holds a non-object")
		}
		version["schema"] = validation
	}
	return yaml.Marshal(crd)
}

func deepCopy(m map[string]any) (map[string]any, error) {
	raw, err := yaml.Marshal(m)
	if err != nil {
		return nil, err
	}
	var out map[string]any
	return out, yaml.Unmarshal(raw, &out)
}

// source reads files of one repository at one commit.
type source struct {
	repo, commit string
	gitDir       string
	client       *http.Client
}

func newSource(s Sources, mirror string) (*source, error) {
	src := &source{repo: s.Repository, commit: s.Commit, client: &http.Client{Timeout: time.Minute}}
	if mirror == "" {
		return src, nil
	}
	owner, name, _ := strings.Cut(s.Repository, "/")
	for _, dir := range []string{
		filepath.Join(mirror, owner+"+"+name, "repo"),
		filepath.Join(mirror, owner, name+".git"),
		filepath.Join(mirror, owner, name),
	} {
		if _, err := os.Stat(dir); err == nil {
			src.gitDir = dir
			break
		}
	}
	if src.gitDir == "" {
		return src, nil
	}
	got, err := src.git("rev-parse", s.Ref+"^{commit}")
	if err != nil {
		return nil, fmt.Errorf("resolve %s in %s: %w", s.Ref, src.gitDir, err)
	}
	if c := strings.TrimSpace(string(got)); c != s.Commit {
		return nil, fmt.Errorf("%s is commit %s in %s, not the pinned %s: update commit (and read the changes)", s.Ref, c, src.gitDir, s.Commit)
	}
	return src, nil
}

func (s *source) git(args ...string) ([]byte, error) {
	cmd := exec.Command("git", append([]string{"--git-dir", s.gitDir}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("git %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

func (s *source) read(path string) ([]byte, error) {
	if s.gitDir != "" {
		return s.git("show", s.commit+":"+path)
	}
	url := fmt.Sprintf("https://raw.githubusercontent.com/%s/%s/%s", s.repo, s.commit, path)
	req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("download %s: %w", url, err)
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("download %s: %s", url, resp.Status)
	}
	return io.ReadAll(resp.Body)
}

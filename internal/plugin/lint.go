package plugin

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"

	"github.com/responsibility-operator/responsibility-operator/api/v1alpha1"
	"github.com/responsibility-operator/responsibility-operator/internal/evaluate"
	"github.com/responsibility-operator/responsibility-operator/internal/samples"
)

// Problem is one problem lint found in a model file.
type Problem struct {
	File string `json:"file"`
	// Model names the model when the file holds several documents.
	Model   string `json:"model,omitempty"`
	Path    string `json:"path,omitempty"`
	Message string `json:"message"`
}

func (p Problem) String() string {
	var b strings.Builder
	b.WriteString(p.File + ": ")
	if p.Model != "" {
		b.WriteString(p.Model + ": ")
	}
	if p.Path != "" {
		b.WriteString(p.Path + ": ")
	}
	b.WriteString(p.Message)
	return b.String()
}

// LintReport is what lint prints: the problems of the model files and the
// duty states of every sample object the models target.
type LintReport struct {
	Models   []string     `json:"models"`
	Problems []Problem    `json:"problems"`
	Objects  []Evaluation `json:"objects,omitempty"`
}

func newLintCommand(o *Options) *cobra.Command {
	var against []string
	cmd := &cobra.Command{
		Use:   "lint FILE... [--against OBJECTS.yaml]...",
		Short: "Validate ResponsibilityModel files offline and evaluate their rules on sample objects",
		Long: `Validate ResponsibilityModel files without a cluster: the schema (unknown fields,
required fields, lengths, names, enums), and every rule and message expression
compiled in the operator's CEL environment, within the cost limit. Each problem is
printed as FILE: FIELD PATH: MESSAGE, with the CEL position of a rule error.

With --against, the rules are evaluated on the objects of the sample files (which may
hold several documents, including Namespaces and the related objects rules read),
and the duty table of every object a model targets is printed. lint never contacts
a cluster. It exits non-zero when a model has a problem.`,
		Example: `  kubectl responsibility lint acme-postgres.yaml
  kubectl responsibility lint acme-postgres.yaml --against samples/good.yaml --against samples/bad.yaml`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(_ *cobra.Command, args []string) error { return o.lint(args, against) },
	}
	cmd.Flags().StringArrayVar(&against, "against", nil, "A YAML file of sample objects to evaluate the rules on (repeatable).")
	return cmd
}

func (o *Options) lint(files, against []string) error {
	report := LintReport{Models: []string{}, Problems: []Problem{}}
	var models []*evaluate.Model
	filesWithProblems := 0
	for _, f := range files {
		compiled, names, problems := lintFile(f)
		models = append(models, compiled...)
		report.Models = append(report.Models, names...)
		report.Problems = append(report.Problems, problems...)
		if len(problems) > 0 {
			filesWithProblems++
		}
	}
	if len(against) > 0 {
		objects, matchedNone, err := evaluateSamples(models, against, o.Now())
		if err != nil {
			return err
		}
		report.Objects = objects
		if matchedNone && len(models) > 0 {
			o.errorln("Warning: no object in the --against files is targeted by these models: check apiVersion, kind, labels and the labels of their Namespaces.")
		}
	}
	if err := o.printLint(report); err != nil {
		return err
	}
	if n := len(report.Problems); n > 0 {
		return fmt.Errorf("%w: %s in %d of %s", ErrProblems, plural(n, "problem"), filesWithProblems, plural(len(files), "file"))
	}
	if o.Output == outputTable {
		o.errorf("%s in %s: no problems.\n", plural(len(report.Models), "model"), plural(len(files), "file"))
	}
	return nil
}

func (o *Options) printLint(r LintReport) error {
	if o.Output != outputTable {
		return printData(o.Streams.Out, o.Output, r)
	}
	w := &printer{w: o.Streams.Out}
	for _, p := range r.Problems {
		w.println(p.String())
	}
	for i, e := range r.Objects {
		if i > 0 || len(r.Problems) > 0 {
			w.println()
		}
		if err := o.printEvaluation(w, e); err != nil {
			return err
		}
	}
	return w.done(nil)
}

// lintFile checks every document of a model file. It returns the models
// that compiled, the names of every model, and the problems.
func lintFile(path string) ([]*evaluate.Model, []string, []Problem) {
	docs, err := readDocuments(path)
	if err != nil {
		return nil, nil, []Problem{{File: path, Message: err.Error()}}
	}
	var (
		models   []*evaluate.Model
		names    []string
		problems []Problem
	)
	for i, doc := range docs {
		m, name, errs := lintDocument(doc)
		if name != "" {
			names = append(names, name)
		}
		if m != nil {
			models = append(models, m)
		}
		label := ""
		if len(docs) > 1 {
			label = name
			if label == "" {
				label = fmt.Sprintf("document %d", i+1)
			}
		}
		for _, fe := range errs {
			problems = append(problems, Problem{File: path, Model: label, Path: fe.Path, Message: fe.Message})
		}
	}
	if len(docs) == 0 {
		problems = append(problems, Problem{File: path, Message: "no YAML document"})
	}
	return models, names, problems
}

// readDocuments splits a YAML file into its non-empty documents, as JSON.
func readDocuments(path string) ([][]byte, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read: %w", err)
	}
	docs, err := samples.Documents(raw)
	if err != nil {
		return nil, err
	}
	var out [][]byte
	for i, doc := range docs {
		js, err := yaml.YAMLToJSONStrict(doc)
		if err != nil {
			return nil, fmt.Errorf("document %d is not valid YAML: %w", i+1, err)
		}
		if t := bytes.TrimSpace(js); len(t) == 0 || string(t) == "null" {
			continue
		}
		out = append(out, js)
	}
	return out, nil
}

// lintDocument decodes one document strictly into a ResponsibilityModel,
// checks its shape and compiles it. The model is nil when it does not compile.
func lintDocument(js []byte) (*evaluate.Model, string, []evaluate.FieldError) {
	var tm metav1.TypeMeta
	if err := json.Unmarshal(js, &tm); err != nil {
		return nil, "", []evaluate.FieldError{{Message: fmt.Sprintf("not an object: %v", err)}}
	}
	if tm.APIVersion != v1alpha1.GroupVersion.String() || tm.Kind != "ResponsibilityModel" {
		return nil, "", []evaluate.FieldError{{Message: fmt.Sprintf(
			"apiVersion %q, kind %q: not a %s ResponsibilityModel (pass sample objects with --against)", tm.APIVersion, tm.Kind, v1alpha1.GroupVersion)}}
	}
	rm := &v1alpha1.ResponsibilityModel{}
	strict, err := kjson.UnmarshalStrict(js, rm)
	if err != nil {
		return nil, "", []evaluate.FieldError{{Message: fmt.Sprintf("does not decode as a ResponsibilityModel: %v", err)}}
	}
	var problems []evaluate.FieldError
	for _, e := range strict {
		var fe kjson.FieldError
		if errors.As(e, &fe) {
			problems = append(problems, evaluate.FieldError{Path: fe.FieldPath(), Message: strings.TrimSuffix(e.Error(), " "+strconv.Quote(fe.FieldPath()))})
		} else {
			problems = append(problems, evaluate.FieldError{Message: e.Error()})
		}
	}
	problems = append(problems, checkShape(rm)...)
	reported := map[string]bool{}
	for _, p := range problems {
		reported[p.Path] = true
	}
	m, err := evaluate.Compile(rm)
	if err != nil {
		fes := evaluate.FieldErrors(err)
		if len(fes) == 0 {
			fes = []evaluate.FieldError{{Message: err.Error()}}
		}
		for _, fe := range fes {
			if !reported[fe.Path] {
				problems = append(problems, fe)
			}
		}
	}
	return m, rm.Name, problems
}

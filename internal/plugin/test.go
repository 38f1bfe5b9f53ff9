package plugin

import (
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/responsibility-operator/responsibility-operator/internal/modeltest"
)

// outputJUnit is -o junit, for the test command only.
const outputJUnit = "junit"

// ErrTestsFailed is returned (wrapped) when a result of a test did not
// pass or a test could not run.
var ErrTestsFailed = errors.New("tests failed")

func newTestCommand(o *Options) *cobra.Command {
	var requireAll bool
	cmd := &cobra.Command{
		Use:   "test PATH...",
		Short: "Run model tests offline: expected duty states of objects, like kyverno test",
		Long: `Run the tests of the given files and directories (searched recursively for YAML files
of apiVersion ` + modeltest.APIVersion + `, kind ` + modeltest.Kind + `). A test names
ResponsibilityModel files, the objects to evaluate them on (workloads, the related objects
beside them, Namespaces) and the state every duty must reach on every object, with an
optional message substring and the citation that decides it. The models are evaluated
as the operator would evaluate them, without a cluster.

Prints every failed result and a summary, and exits non-zero when a result fails or a test
cannot run. With --require-all, a duty evaluated on an object that no result names fails
too. -o junit writes JUnit XML for CI; -o json and -o yaml every verdict.`,
		Example: `  kubectl responsibility test config/catalog/tests
  kubectl responsibility test test/upstream --require-all -o junit > corpus.xml`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(_ *cobra.Command, args []string) error { return o.test(args, requireAll) },
	}
	cmd.Flags().BoolVar(&requireAll, "require-all", false, "Fail on a duty evaluated on an object that no result of its test names.")
	return cmd
}

// TestReport is what -o json and -o yaml print.
type TestReport struct {
	*modeltest.Report `json:",inline"`
	Passed            int  `json:"passed"`
	Failed            int  `json:"failed"`
	RequireAll        bool `json:"requireAll,omitempty"`
}

func (o *Options) test(paths []string, requireAll bool) error {
	tests, err := modeltest.Load(paths)
	if err != nil {
		return err //nolint:wrapcheck // modeltest's errors name the file
	}
	report := modeltest.Run(tests, modeltest.Options{})
	failed := report.Failed()
	if requireAll {
		for _, v := range report.Unchecked {
			v.Problem = "no result names this verdict"
			failed = append(failed, v)
		}
	}
	switch o.Output {
	case outputJUnit:
		err = writeJUnit(o.Streams.Out, report, requireAll)
	case outputJSON, outputYAML:
		err = printData(o.Streams.Out, o.Output, TestReport{Report: report, Passed: len(report.Verdicts) - len(report.Failed()), Failed: len(failed), RequireAll: requireAll})
	default:
		err = o.printTestTable(report, failed)
	}
	if err != nil {
		return err
	}
	if len(failed) > 0 || len(report.Errors) > 0 {
		return fmt.Errorf("%w: %s failed, %s could not run", ErrTestsFailed, plural(len(failed), "result"), plural(len(report.Errors), "test"))
	}
	return nil
}

func (o *Options) printTestTable(r *modeltest.Report, failed []modeltest.Verdict) error {
	w := &printer{w: o.Streams.Out}
	for _, e := range r.Errors {
		w.printf("%s: cannot run: %s\n", sanitize(e.Test), sanitize(e.Error))
	}
	if len(failed) > 0 {
		if len(r.Errors) > 0 {
			w.println()
		}
		t := newTable("TEST", "OBJECT", "MODEL/DUTY", "WANT", "GOT", "PROBLEM")
		t.stateColumn = 4
		for _, v := range failed {
			problem := v.Problem
			if v.Message != "" {
				problem += ": " + v.Message
			}
			t.add(v.Test, v.Object.String(), v.Model+"/"+v.Duty, string(v.Want), string(v.Got), problem)
		}
		if err := t.print(w, o.Color); err != nil {
			return err
		}
		w.println()
	}
	passed := len(r.Verdicts) - len(r.Failed())
	w.printf("%s: %d of %s passed", plural(r.Tests, "test"), passed, plural(len(r.Verdicts), "result"))
	if len(r.Unchecked) > 0 {
		w.printf("; %s evaluated that no result names", plural(len(r.Unchecked), "duty state"))
	}
	w.println(".")
	return w.done(nil)
}

// JUnit XML, as CI systems read it: a suite per test, a case per result.
type junitSuites struct {
	XMLName  xml.Name     `xml:"testsuites"`
	Tests    int          `xml:"tests,attr"`
	Failures int          `xml:"failures,attr"`
	Errors   int          `xml:"errors,attr"`
	Suites   []junitSuite `xml:"testsuite"`
}

type junitSuite struct {
	Name     string      `xml:"name,attr"`
	Tests    int         `xml:"tests,attr"`
	Failures int         `xml:"failures,attr"`
	Errors   int         `xml:"errors,attr"`
	Cases    []junitCase `xml:"testcase"`
}

type junitCase struct {
	Name      string        `xml:"name,attr"`
	ClassName string        `xml:"classname,attr"`
	Failure   *junitMessage `xml:"failure,omitempty"`
	Error     *junitMessage `xml:"error,omitempty"`
	SystemOut string        `xml:"system-out,omitempty"`
}

type junitMessage struct {
	Message string `xml:"message,attr"`
	Text    string `xml:",chardata"`
}

func writeJUnit(w io.Writer, r *modeltest.Report, requireAll bool) error {
	suites := junitSuites{}
	index := map[string]int{}
	suite := func(name string) *junitSuite {
		i, ok := index[name]
		if !ok {
			i = len(suites.Suites)
			index[name] = i
			suites.Suites = append(suites.Suites, junitSuite{Name: name})
		}
		return &suites.Suites[i]
	}
	add := func(v modeltest.Verdict) {
		s := suite(v.Test)
		c := junitCase{Name: v.Object.String() + " " + v.Model + "/" + v.Duty, ClassName: v.Test, SystemOut: v.Citation}
		got := "got " + string(v.Got)
		if v.Message != "" {
			got += ": " + v.Message
		}
		switch {
		case v.Want == "":
			c.Failure = &junitMessage{Message: "no result names this verdict", Text: got}
		case v.Problem != "":
			c.Failure = &junitMessage{Message: v.Problem, Text: "want " + string(v.Want) + ", " + got}
		}
		if c.Failure != nil {
			s.Failures++
			suites.Failures++
		}
		s.Tests++
		suites.Tests++
		s.Cases = append(s.Cases, c)
	}
	for _, v := range r.Verdicts {
		add(v)
	}
	if requireAll {
		for _, v := range r.Unchecked {
			add(v)
		}
	}
	for _, e := range r.Errors {
		s := suite(e.Test)
		s.Errors++
		s.Tests++
		suites.Errors++
		suites.Tests++
		s.Cases = append(s.Cases, junitCase{Name: "run", ClassName: e.Test, Error: &junitMessage{Message: "the test could not run", Text: e.Error}})
	}
	out, err := xml.MarshalIndent(suites, "", "  ")
	if err != nil {
		return fmt.Errorf("encode junit: %w", err)
	}
	if _, err := io.WriteString(w, xml.Header+string(out)+"\n"); err != nil {
		return fmt.Errorf("write junit: %w", err)
	}
	return nil
}

// isTestCommand is true for the test command, the one that takes -o junit.
func isTestCommand(cmd *cobra.Command) bool {
	return cmd != nil && strings.HasPrefix(cmd.Use, "test ")
}

package plugin

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"unicode"

	"k8s.io/cli-runtime/pkg/printers"
	"sigs.k8s.io/yaml"

	"github.com/responsibility-operator/responsibility-operator/api/v1alpha1"
)

// none is what a table prints for an empty cell, as kubectl does.
const none = "<none>"

// table is one block of columns, printed like kubectl's tables.
type table struct {
	headers []string
	rows    [][]string
	// stateColumn is the index of the column of duty states, coloured on a
	// terminal; -1 for none.
	stateColumn int
	// indent prefixes every line.
	indent string
}

func newTable(headers ...string) *table { return &table{headers: headers, stateColumn: -1} }

func (t *table) add(cells ...string) { t.rows = append(t.rows, cells) }

// ANSI colours of duty states. Every code has the same length, and the
// header of the column gets a no-op code of that length too, so that the
// invisible bytes do not move the columns.
const (
	colorReset   = "\x1b[0m"
	colorDefault = "\x1b[39m"
	colorRed     = "\x1b[31m"
	colorGreen   = "\x1b[32m"
	colorYellow  = "\x1b[33m"
	colorCyan    = "\x1b[36m"
)

func stateColor(state string) string {
	switch v1alpha1.DutyState(state) {
	case v1alpha1.DutyMet:
		return colorGreen
	case v1alpha1.DutyUnmet:
		return colorRed
	case v1alpha1.DutyUnknown:
		return colorYellow
	case v1alpha1.DutyWaived:
		return colorCyan
	}
	return colorDefault
}

// print writes the table. Cells are sanitised: an annotation is written by
// whoever may edit the object, so control characters (newlines, terminal
// escapes) are replaced by spaces.
func (t *table) print(w io.Writer, color bool) error {
	tw := printers.GetNewTabWriter(w)
	p := &printer{w: tw}
	line := func(cells []string, header bool) {
		out := make([]string, len(cells))
		for i, c := range cells {
			c = sanitize(c)
			if c == "" && !header {
				c = none
			}
			if color && i == t.stateColumn {
				code := colorDefault
				if !header {
					code = stateColor(c)
				}
				c = code + c + colorReset
			}
			out[i] = c
		}
		p.println(t.indent + strings.Join(out, "\t"))
	}
	line(t.headers, true)
	for _, r := range t.rows {
		line(r, false)
	}
	if p.err != nil {
		return fmt.Errorf("write table: %w", p.err)
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write table: %w", err)
	}
	return nil
}

// sanitize makes one table cell of a value: control characters become
// spaces, runs of spaces one space.
func sanitize(s string) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || r == '\u2028' || r == '\u2029' {
			return ' '
		}
		return r
	}, s)
	return strings.Join(strings.Fields(s), " ")
}

// printData writes v as JSON or YAML (-o json, -o yaml).
func printData(w io.Writer, format string, v any) error {
	if format == outputYAML {
		out, err := yaml.Marshal(v)
		if err != nil {
			return fmt.Errorf("encode yaml: %w", err)
		}
		if _, err := w.Write(out); err != nil {
			return fmt.Errorf("write yaml: %w", err)
		}
		return nil
	}
	// Without HTML escaping, like the operator's annotations: "<reason>"
	// reads as "<reason>".
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return fmt.Errorf("write json: %w", err)
	}
	return nil
}

// plural is "1 file", "2 files".
func plural(n int, noun string) string {
	if n == 1 {
		return fmt.Sprintf("%d %s", n, noun)
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// printFields prints "Label:  value" lines aligned like kubectl describe.
// A label ending in "?" is optional: its line is left out when the value is
// empty.
func printFields(w io.Writer, pairs ...string) error {
	tw := printers.GetNewTabWriter(w)
	p := &printer{w: tw}
	for i := 0; i+1 < len(pairs); i += 2 {
		label, optional := strings.CutSuffix(pairs[i], "?")
		v := sanitize(pairs[i+1])
		if v == "" && optional {
			continue
		}
		if v == "" {
			v = none
		}
		p.printf("%s:\t%s\n", label, v)
	}
	if p.err != nil {
		return fmt.Errorf("write fields: %w", p.err)
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write fields: %w", err)
	}
	return nil
}

// printer writes to a stream and keeps the first error, so that a command
// prints its sections and checks once.
type printer struct {
	w   io.Writer
	err error
}

func (p *printer) Write(b []byte) (int, error) {
	if p.err != nil {
		return 0, p.err
	}
	n, err := p.w.Write(b)
	p.err = err
	return n, err //nolint:wrapcheck // an io.Writer passes its writer's error through
}

// done returns err, else the first write error.
func (p *printer) done(err error) error {
	if err != nil {
		return err
	}
	if p.err != nil {
		return fmt.Errorf("write output: %w", p.err)
	}
	return nil
}

func (p *printer) printf(format string, args ...any) { _, _ = fmt.Fprintf(p, format, args...) }

func (p *printer) println(args ...any) { _, _ = fmt.Fprintln(p, args...) }

// errorf writes a diagnostic to standard error; like kubectl's warnings, a
// failed write there is not an error of the command.
func (o *Options) errorf(format string, args ...any) {
	_, _ = fmt.Fprintf(o.Streams.ErrOut, format, args...)
}

func (o *Options) errorln(args ...any) { _, _ = fmt.Fprintln(o.Streams.ErrOut, args...) }

package plugin

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
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
	// width, when above 0, is the width of the terminal: the wrap columns
	// are wrapped at word boundaries so that a row fits it, as far as the
	// other columns leave room (at least minWrapWidth per wrap column).
	width int
	wrap  []int
	// optional are the headers of the columns fit may leave out, the first
	// first, when the table does not fit width even with its wrap columns
	// at their narrowest.
	optional []string
}

// Table layout of printers.GetNewTabWriter: the minimum width of a column
// and the padding after it.
const (
	tabMinWidth  = 6
	tabPadding   = 3
	minWrapWidth = 20
)

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
	// line prints one line; on a continuation line of a wrapped row (cont)
	// an empty cell stays empty.
	line := func(cells []string, header, cont bool) {
		out := make([]string, len(cells))
		for i, c := range cells {
			c = sanitize(c)
			if c == "" && !header && !cont {
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
	line(t.headers, true, false)
	limits := t.wrapWidths()
	for _, r := range t.rows {
		if limits == nil {
			line(r, false, false)
			continue
		}
		// A wrapped row is printed as several lines; the continuation
		// lines leave the other columns empty.
		cells := make([][]string, len(r))
		height := 1
		for i, c := range r {
			cells[i] = []string{c}
			if limit, ok := limits[i]; ok {
				cells[i] = wrapText(sanitize(c), limit)
			}
			height = max(height, len(cells[i]))
		}
		for l := range height {
			out := make([]string, len(r))
			for i := range r {
				if l < len(cells[i]) {
					out[i] = cells[i][l]
				}
			}
			line(out, false, l > 0)
		}
	}
	if p.err != nil {
		return fmt.Errorf("write table: %w", p.err)
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write table: %w", err)
	}
	return nil
}

// naturalWidths are the widths of the columns unwrapped.
func (t *table) naturalWidths() []int {
	natural := make([]int, len(t.headers))
	for i, h := range t.headers {
		natural[i] = max(tabMinWidth, len([]rune(h)))
	}
	for _, r := range t.rows {
		for i, c := range r {
			if i < len(natural) {
				natural[i] = max(natural[i], len([]rune(sanitize(c))))
			}
		}
	}
	return natural
}

// fit leaves out optional columns, in their order, until the table fits
// t.width with its wrap columns at their narrowest, and returns the headers
// of the columns it left out. On no terminal (width 0) it leaves out none.
func (t *table) fit() []string {
	if t.width <= 0 {
		return nil
	}
	var dropped []string
	for _, header := range t.optional {
		if t.narrowest() <= t.width {
			break
		}
		if i := slices.Index(t.headers, header); i >= 0 {
			t.remove(i)
			dropped = append(dropped, header)
		}
	}
	return dropped
}

// narrowest is the width of the table with its wrap columns wrapped as
// narrow as print wraps them (minWrapWidth, or less if the column is).
func (t *table) narrowest() int {
	total := len(t.indent)
	for i, n := range t.naturalWidths() {
		if slices.Contains(t.wrap, i) {
			n = min(n, minWrapWidth)
		}
		total += n + tabPadding
	}
	return total
}

// remove takes column i out of the table.
func (t *table) remove(i int) {
	t.headers = slices.Delete(slices.Clone(t.headers), i, i+1)
	for j, r := range t.rows {
		if i < len(r) {
			t.rows[j] = slices.Delete(slices.Clone(r), i, i+1)
		}
	}
	var wrap []int
	for _, w := range t.wrap {
		switch {
		case w < i:
			wrap = append(wrap, w)
		case w > i:
			wrap = append(wrap, w-1)
		}
	}
	t.wrap = wrap
	switch {
	case t.stateColumn == i:
		t.stateColumn = -1
	case t.stateColumn > i:
		t.stateColumn--
	}
}

// wrapWidths are the widths of the wrap columns that make the table fit
// t.width, or nil when the table fits as it is or wrapping is off.
func (t *table) wrapWidths() map[int]int {
	if t.width <= 0 || len(t.wrap) == 0 {
		return nil
	}
	natural := t.naturalWidths()
	total, fixed := len(t.indent), len(t.indent)
	isWrap := map[int]bool{}
	for _, i := range t.wrap {
		isWrap[i] = true
	}
	for i, n := range natural {
		total += n + tabPadding
		if !isWrap[i] {
			fixed += n + tabPadding
		}
	}
	if total <= t.width {
		return nil
	}
	// Share what the fixed columns leave: a column that needs less than its
	// share gives the rest to the others.
	room := t.width - fixed - tabPadding*len(t.wrap)
	out := map[int]int{}
	pending := append([]int(nil), t.wrap...)
	for len(pending) > 0 {
		share := max(minWrapWidth, room/len(pending))
		var next []int
		for _, i := range pending {
			if natural[i] <= share {
				out[i] = natural[i]
				room -= natural[i]
			} else {
				next = append(next, i)
			}
		}
		if len(next) == len(pending) {
			for _, i := range next {
				out[i] = share
			}
			break
		}
		pending = next
	}
	return out
}

// wrapText breaks s into lines of at most limit runes at spaces; a word
// longer than limit is cut.
func wrapText(s string, limit int) []string {
	if limit <= 0 || len([]rune(s)) <= limit {
		return []string{s}
	}
	var lines []string
	line := ""
	for _, word := range strings.Fields(s) {
		for len([]rune(word)) > limit {
			if line != "" {
				lines = append(lines, line)
				line = ""
			}
			r := []rune(word)
			lines = append(lines, string(r[:limit]))
			word = string(r[limit:])
		}
		switch {
		case line == "":
			line = word
		case len([]rune(line))+1+len([]rune(word)) <= limit:
			line += " " + word
		default:
			lines = append(lines, line)
			line = word
		}
	}
	if line != "" {
		lines = append(lines, line)
	}
	return lines
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

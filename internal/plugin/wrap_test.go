package plugin

import (
	"bytes"
	"strings"
	"testing"
)

func TestWrapText(t *testing.T) {
	for _, tc := range []struct {
		in    string
		limit int
		want  []string
	}{
		{"short", 20, []string{"short"}},
		{"Run at least two instances", 10, []string{"Run at", "least two", "instances"}},
		{"a responsibility.io/waive.backup key", 12, []string{"a", "responsibili", "ty.io/waive.", "backup key"}},
		{"exactly ten", 11, []string{"exactly ten"}},
		{"", 5, []string{""}},
	} {
		if got := wrapText(tc.in, tc.limit); strings.Join(got, "|") != strings.Join(tc.want, "|") {
			t.Errorf("wrapText(%q, %d) = %q, want %q", tc.in, tc.limit, got, tc.want)
		}
	}
}

// TestTableWraps: a table wider than the terminal wraps its wrap columns
// so that every line fits, keeps every word, and leaves the other columns
// of a continuation line empty; one that fits, or on no terminal, is
// printed as it is.
func TestTableWraps(t *testing.T) {
	long := strings.Repeat("word ", 30)
	build := func(width int) string {
		tb := newTable("NAME", "MESSAGE", "NOTE")
		tb.wrap, tb.width = []int{1, 2}, width
		tb.add("first", long, "short note")
		tb.add("second", "fits", long)
		var b bytes.Buffer
		if err := tb.print(&b, false); err != nil {
			t.Fatal(err)
		}
		return b.String()
	}
	for _, width := range []int{60, 80, 100} {
		out := build(width)
		words := 0
		for line := range strings.SplitSeq(strings.TrimRight(out, "\n"), "\n") {
			if n := len(strings.TrimRight(line, " ")); n > width {
				t.Errorf("width %d: a line of %d: %q", width, n, line)
			}
			words += strings.Count(line, "word")
		}
		if words != 60 {
			t.Errorf("width %d: %d words printed, want 60:\n%s", width, words, out)
		}
		if strings.Contains(out, none) {
			t.Errorf("width %d: a continuation line says %s:\n%s", width, none, out)
		}
	}
	if out := build(0); strings.Count(out, "\n") != 3 {
		t.Errorf("no terminal: want 3 lines, got\n%s", out)
	}
	if out := build(1000); strings.Count(out, "\n") != 3 {
		t.Errorf("a wide terminal: want 3 lines, got\n%s", out)
	}
}

// Package report checks the HTML report of internal/evidence in a real
// headless Chromium (Debian's chromium package, driven over the DevTools
// protocol by chromedp): it loads without a script error or a console
// error, fetches nothing but itself, shows the evidence, fits an A4 page
// and prints to an A4 PDF. Install the browser with `make chromium`.
//
// go test ./test/report -args -artifacts DIR writes the report, its PDF and
// a screenshot of its print layout into DIR for a person to look at.
package report

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/responsibility-operator/responsibility-operator/internal/evidence"
)

var artifacts = flag.String("artifacts", "", "write the report, its PDF and a screenshot of its print layout into this directory")

// The A4 page at CSS's 96 pixels to the inch: 210 mm is 793.7 px, 297 mm
// 1122.5 px; the report's @page margins (12 mm left and right, in
// internal/evidence/html.tmpl) leave 186 mm, 703 px, for the content.
const (
	a4Width        = 794
	a4Height       = 1123
	a4ContentWidth = 703
	// A4 in PDF points (1/72 inch), as a MediaBox says it.
	a4WidthPt  = 595.28
	a4HeightPt = 841.89
)

// chromium finds the browser: $CHROMIUM, else chromium on PATH (Debian's
// package installs /usr/bin/chromium). There is no skip: a machine without
// the browser fails the test, and `make chromium` installs it.
func chromium(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("CHROMIUM"); p != "" {
		path, err := exec.LookPath(p)
		if err != nil {
			t.Fatalf("install Chromium: make chromium (CHROMIUM=%s: %v)", p, err)
		}
		return path
	}
	path, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatalf("install Chromium: make chromium (or set CHROMIUM to a Chromium or Chrome binary): %v", err)
	}
	return path
}

// recorder keeps what the page did that the report must never do: the
// requests it made, its uncaught exceptions and its console and log
// messages. Its listen runs in chromedp's loop of the tab, so it only
// appends under the lock (chromedp.Listen's rules).
type recorder struct {
	mu       sync.Mutex
	requests []string
	problems []string
}

func (r *recorder) listen(ev any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch ev := ev.(type) {
	case *network.EventRequestWillBeSent:
		r.requests = append(r.requests, ev.Request.URL)
	case *runtime.EventExceptionThrown:
		d := ev.ExceptionDetails
		text := d.Text
		if d.Exception != nil {
			text += " " + d.Exception.Description
		}
		r.problems = append(r.problems, fmt.Sprintf("exception at %s:%d: %s", d.URL, d.LineNumber, text))
	case *runtime.EventConsoleAPICalled:
		var args []string
		for _, a := range ev.Args {
			if a.Value != nil {
				args = append(args, string(a.Value))
			} else {
				args = append(args, a.Description)
			}
		}
		r.problems = append(r.problems, fmt.Sprintf("console.%s: %s", ev.Type, strings.Join(args, " ")))
	case *cdplog.EventEntryAdded:
		r.problems = append(r.problems, fmt.Sprintf("log %s (%s): %s %s", ev.Entry.Level, ev.Entry.Source, ev.Entry.Text, ev.Entry.URL))
	}
}

// take returns what was recorded and starts afresh.
func (r *recorder) take() (requests, problems []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	requests, problems = r.requests, r.problems
	r.requests, r.problems = nil, nil
	return requests, problems
}

func (r *recorder) seen() (requests, problems int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.requests), len(r.problems)
}

// session is the one browser of the test, with the report loaded.
type session struct {
	ctx       context.Context
	rec       *recorder
	dir       string
	reportURL string
	page      []byte
	snapshot  evidence.Snapshot
}

func TestHTMLReportInChromium(t *testing.T) {
	start := time.Now()
	exe := chromium(t)
	s := &session{rec: &recorder{}, dir: t.TempDir(), snapshot: loadSnapshot(t)}
	var page bytes.Buffer
	if err := evidence.RenderHTML(&page, s.snapshot); err != nil {
		t.Fatal(err)
	}
	s.page = page.Bytes()
	reportPath := filepath.Join(s.dir, "report.html")
	if err := os.WriteFile(reportPath, s.page, 0o600); err != nil {
		t.Fatal(err)
	}
	s.reportURL = (&url.URL{Scheme: "file", Path: reportPath}).String()

	// One browser for every subtest.
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(exe))...)
	defer cancelAlloc()
	ctx, cancel := chromedp.NewContext(allocCtx, chromedp.WithListener(s.rec.listen))
	defer cancel()
	s.ctx = ctx
	if err := chromedp.Do(ctx); err != nil { // starts the browser, with no timeout
		t.Fatalf("start %s: %v", exe, err)
	}
	version, err := chromedp.CallBrowser(ctx, browser.GetVersion, cdp.Empty{})
	if err != nil {
		t.Fatalf("browser version: %v", err)
	}
	t.Logf("%s (%s) started in %s", version.Product, exe, time.Since(start).Round(time.Millisecond))

	for _, sub := range []struct {
		name string
		test func(t *testing.T)
	}{
		{"loads", s.loads},
		{"shows the evidence", s.showsTheEvidence},
		{"fits A4", s.fitsA4},
		{"prints to A4", s.printsToA4},
		// Over everything above: the load, the queries, the print.
		{"fetched nothing and logged nothing", s.fetchedNothing},
		{"the listener hears a fetch and a script error", s.listenerHears},
	} {
		began := time.Now()
		ok := t.Run(sub.name, sub.test)
		t.Logf("%s: %s", sub.name, time.Since(began).Round(time.Millisecond))
		if !ok && sub.name == "loads" {
			t.FailNow()
		}
	}
	t.Logf("the browser test took %s", time.Since(start).Round(time.Millisecond))
}

// step is the context of one subtest's commands: the browser's, with a
// timeout.
func (s *session) step(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(s.ctx, 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func (s *session) loads(t *testing.T) {
	if err := chromedp.Do(s.step(t), chromedp.Navigate(s.reportURL)); err != nil {
		t.Fatalf("navigate to %s: %v", s.reportURL, err)
	}
}

func (s *session) showsTheEvidence(t *testing.T) {
	ctx := s.step(t)
	for _, tc := range []struct {
		name, selector, want string
	}{
		{"the time of collection", "#collected-at time", "2026-08-01T12:00:00Z"},
		{"the cluster", "#cluster", "prod-eu-west-1"},
		{"a duty's state", "#ns-1-model-2 table.duties tbody tr:nth-child(1) td.state-unmet", "Unmet"},
		{"a waived duty", "#ns-2 td.state-waived", "Waived"},
		{"an unknown duty", "#ns-1 td.state-unknown", "Unknown"},
		{"a waiver's reason", "#ns-2 table.waivers tbody tr:nth-child(2) td.reason", "Archived objects are written once and never overwritten"},
		{"a control's URL", "#ns-2 table.matrix a[href^='https://csrc.nist.gov/']", "element=AC-3"},
		{"the forged message, as text", "#ns-1-model-2 table.duties tbody tr:nth-child(1) td:last-child", `<script>console.error("not escaped")</script>`},
	} {
		got, err := chromedp.Run(ctx, chromedp.TextContent(chromedp.CSS(tc.selector)))
		if err != nil {
			t.Errorf("%s (%s): %v", tc.name, tc.selector, err)
			continue
		}
		if !strings.Contains(got, tc.want) {
			t.Errorf("%s (%s): got %q, want it to contain %q", tc.name, tc.selector, got, tc.want)
		}
	}
	// Every printed page's foot: the @page rule's margin box.
	pageRule, err := chromedp.Run(ctx, chromedp.Evaluate[string](
		`[...document.styleSheets].filter(s => s.ownerNode.localName === "style").flatMap(s => [...s.cssRules]).filter(r => r instanceof CSSPageRule).map(r => r.cssText).join("\n")`))
	if err != nil {
		t.Fatal(err)
	}
	if want := "Collected 2026-08-01T12:00:00Z · cluster prod-eu-west-1 · all namespaces"; !strings.Contains(pageRule, want) {
		t.Errorf("the @page rule %q lacks the footer %q", pageRule, want)
	}
	counts, err := chromedp.Run(ctx, chromedp.Evaluate[map[string]int](`({
		namespaces: document.querySelectorAll("section.namespace").length,
		scripts: document.scripts.length,
		met: document.querySelectorAll("td.state-met").length,
		unmet: document.querySelectorAll("td.state-unmet").length,
		unknown: document.querySelectorAll("td.state-unknown").length,
		waived: document.querySelectorAll("td.state-waived").length,
	})`))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int{"namespaces": len(s.snapshot.Namespaces), "scripts": 0, "met": 15, "unmet": 7, "unknown": 1, "waived": 3}
	for k, v := range want {
		if counts[k] != v {
			t.Errorf("%s: got %d, want %d", k, counts[k], v)
		}
	}
}

func (s *session) fitsA4(t *testing.T) {
	ctx := s.step(t)
	if _, err := chromedp.Call(ctx, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{Media: "print"}); err != nil {
		t.Fatal(err)
	}
	// The paper's width, and the width between the @page margins that
	// Chromium lays the page out in when it prints.
	for _, width := range []int64{a4Width, a4ContentWidth} {
		t.Run(strconv.FormatInt(width, 10)+"px", func(t *testing.T) {
			if err := chromedp.Do(ctx, chromedp.EmulateViewport(width, a4Height, chromedp.EmulatePortrait)); err != nil {
				t.Fatal(err)
			}
			m, err := chromedp.Run(ctx, chromedp.Evaluate[layout](layoutJS))
			if err != nil {
				t.Fatal(err)
			}
			m.check(t, width)
		})
	}
	if *artifacts != "" {
		shot, err := chromedp.Run(ctx, chromedp.FullScreenshot(90))
		if err != nil {
			t.Fatal(err)
		}
		writeArtifact(t, "report-print-a4.jpeg", shot)
	}
	if err := chromedp.Do(ctx, chromedp.EmulateReset()); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Call(ctx, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{}); err != nil {
		t.Fatal(err)
	}
}

func (s *session) printsToA4(t *testing.T) {
	pdf, err := chromedp.Run(s.step(t), chromedp.PrintToPDF(
		chromedp.PDFPaper(chromedp.PaperA4), chromedp.PDFPreferCSSPageSize(), chromedp.PDFPrintBackground()))
	if err != nil {
		t.Fatal(err)
	}
	writeArtifact(t, "report.pdf", pdf)
	writeArtifact(t, "report.html", s.page)
	if !bytes.HasPrefix(pdf, []byte("%PDF-")) {
		t.Fatalf("not a PDF: %q", pdf[:min(len(pdf), 16)])
	}
	boxes := mediaBox.FindAllSubmatch(pdf, -1)
	pages := len(pageObject.FindAll(pdf, -1))
	t.Logf("%d bytes, %d pages", len(pdf), pages)
	if len(boxes) == 0 {
		t.Fatal("the PDF has no MediaBox")
	}
	for _, b := range boxes {
		w, _ := strconv.ParseFloat(string(b[1]), 64)
		h, _ := strconv.ParseFloat(string(b[2]), 64)
		if math.Abs(w-a4WidthPt) > 1.5 || math.Abs(h-a4HeightPt) > 1.5 {
			t.Errorf("a page's MediaBox is %s, want A4 (0 0 %.2f %.2f)", b[0], a4WidthPt, a4HeightPt)
		}
	}
	// The summary, then each namespace from a new page.
	if want := 1 + len(s.snapshot.Namespaces); pages < want {
		t.Errorf("%d pages, want at least %d: one for the summary, and each namespace from a new page", pages, want)
	}
}

func (s *session) fetchedNothing(t *testing.T) {
	requests, problems := s.rec.take()
	t.Logf("requests: %q", requests)
	if len(requests) == 0 || requests[0] != s.reportURL {
		t.Errorf("requests %q: want the report %s first", requests, s.reportURL)
	}
	for _, r := range requests {
		if r != s.reportURL {
			t.Errorf("the report requested %s", r)
		}
	}
	for _, p := range problems {
		t.Errorf("the report made the browser say: %s", p)
	}
}

// listenerHears: the checks above pass as well when the listener hears
// nothing, so this page, with a stylesheet to fetch and a script that
// fails, must be heard.
func (s *session) listenerHears(t *testing.T) {
	bad := filepath.Join(s.dir, "bad.html")
	if err := os.WriteFile(bad, []byte(`<!DOCTYPE html><html><head><title>bad</title>`+
		`<link rel="stylesheet" href="http://127.0.0.1:9/unreachable.css"></head>`+
		`<body><script>console.error("from the page"); throw new Error("thrown by the page")</script></body></html>`), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx := s.step(t)
	if err := chromedp.Do(ctx, chromedp.Navigate((&url.URL{Scheme: "file", Path: bad}).String())); err != nil {
		t.Fatal(err)
	}
	// The browser log's entry on the failed request can come after the
	// load event: wait on the record for it, or for the step's timeout.
	for {
		requests, problems := s.rec.seen()
		if requests >= 2 && problems >= 3 {
			break
		}
		select {
		case <-ctx.Done():
			requests, problems := s.rec.take()
			t.Fatalf("heard requests %q and %q, want the page, the stylesheet, an exception, a console error and a log entry", requests, problems)
		case <-time.After(10 * time.Millisecond):
		}
	}
	requests, problems := s.rec.take()
	all := strings.Join(append(requests, problems...), "\n")
	for _, want := range []string{"http://127.0.0.1:9/unreachable.css", "thrown by the page", `console.error: "from the page"`} {
		if !strings.Contains(all, want) {
			t.Errorf("heard %s\nwant %q in it", all, want)
		}
	}
}

// layout is what layoutJS measures.
type layout struct {
	Print       bool     `json:"print"`
	ClientWidth int64    `json:"clientWidth"`
	ScrollWidth int64    `json:"scrollWidth"`
	Tables      int      `json:"tables"`
	BreakBefore string   `json:"breakBefore"`
	Overflows   []string `json:"overflows"`
}

func (m layout) check(t *testing.T, width int64) {
	t.Helper()
	if !m.Print {
		t.Error("the page does not see the print media")
	}
	if m.ClientWidth != width {
		t.Errorf("the page is %d px wide, want %d (a scroll bar?)", m.ClientWidth, width)
	}
	if m.ScrollWidth > m.ClientWidth {
		t.Errorf("the document is %d px wide, more than the page's %d", m.ScrollWidth, m.ClientWidth)
	}
	if m.Tables == 0 {
		t.Error("no table measured")
	}
	if m.BreakBefore != "page" {
		t.Errorf("a namespace's section breaks %q before it in print, want page", m.BreakBefore)
	}
	for i, o := range m.Overflows {
		if i == 10 {
			t.Errorf("and %d more", len(m.Overflows)-i)
			break
		}
		t.Errorf("wider than the page or its cell: %s", o)
	}
}

// layoutJS measures the page: its width and every element's box against
// the page's width, and every table cell's content against the cell.
const layoutJS = `(() => {
	const root = document.documentElement;
	const width = root.clientWidth;
	const name = el => el.tagName.toLowerCase() + (el.className ? "." + el.className.replace(/ /g, ".") : "") +
		' "' + el.textContent.trim().slice(0, 50) + '"';
	const overflows = [];
	for (const el of document.body.querySelectorAll("*")) {
		const r = el.getBoundingClientRect();
		if (r.width > 0 && (r.left < -0.5 || r.right > width + 0.5)) {
			overflows.push(name(el) + " spans " + r.left.toFixed(1) + ".." + r.right.toFixed(1) + " px");
		}
	}
	for (const el of document.querySelectorAll("th, td")) {
		if (el.scrollWidth > el.clientWidth + 1) {
			overflows.push(name(el) + " holds " + el.scrollWidth + " px in " + el.clientWidth);
		}
	}
	return {
		print: matchMedia("print").matches,
		clientWidth: width,
		scrollWidth: root.scrollWidth,
		tables: document.querySelectorAll("table").length,
		breakBefore: getComputedStyle(document.querySelector("section.namespace")).breakBefore,
		overflows,
	};
})()`

var (
	mediaBox   = regexp.MustCompile(`/MediaBox\s*\[\s*0\s+0\s+([0-9.]+)\s+([0-9.]+)\s*\]`)
	pageObject = regexp.MustCompile(`/Type\s*/Page\b`)
)

// loadSnapshot reads the Snapshot of the report's golden test.
func loadSnapshot(t *testing.T) evidence.Snapshot {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "..", "internal", "evidence", "testdata", "html-snapshot.json"))
	if err != nil {
		t.Fatal(err)
	}
	var s evidence.Snapshot
	if err := json.Unmarshal(data, &s); err != nil {
		t.Fatal(err)
	}
	return s
}

func writeArtifact(t *testing.T, name string, data []byte) {
	t.Helper()
	if *artifacts == "" {
		return
	}
	if err := os.MkdirAll(*artifacts, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(*artifacts, name), data, 0o644); err != nil {
		t.Fatal(err)
	}
}

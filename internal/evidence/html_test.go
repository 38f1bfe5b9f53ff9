package evidence

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The golden files are rewritten with `go test ./internal/evidence -update`.
// The flag is registered in init, and only when no other test file of the
// package registered it first as a package variable, so that every
// rendering's goldens share the one -update.
func init() {
	if flag.Lookup("update") == nil {
		flag.Bool("update", false, "rewrite the golden files in testdata/ with the current output")
	}
}

func updateGoldens() bool {
	f := flag.Lookup("update")
	return f != nil && f.Value.String() == "true"
}

// loadHTMLSnapshot reads the report's test Snapshot: four models (one with
// controls and a long URL, one no object matches), namespaces with every
// state, waivers of both sources, a model the Snapshot lacks, a duty the
// annotation does not report, long texts and a forged message.
func loadHTMLSnapshot(t *testing.T) Snapshot {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", "html-snapshot.json"))
	if err != nil {
		t.Fatal(err)
	}
	var s Snapshot
	if err := json.Unmarshal(data, &s); err != nil {
		t.Fatalf("testdata/html-snapshot.json: %v", err)
	}
	return s
}

func TestRenderHTMLGolden(t *testing.T) {
	full := loadHTMLSnapshot(t)
	oneNamespace := full
	oneNamespace.Namespace = "media"
	oneNamespace.Namespaces = full.Namespaces[1:2]
	for _, tc := range []struct {
		golden string
		s      Snapshot
	}{
		{"html-report.html", full},
		{"html-namespace.html", oneNamespace},
		{"html-empty.html", Snapshot{CollectedAt: time.Date(2026, 8, 1, 12, 0, 0, 0, time.UTC), Namespace: "quiet"}},
	} {
		t.Run(tc.golden, func(t *testing.T) {
			var buf bytes.Buffer
			if err := RenderHTML(&buf, tc.s); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join("testdata", tc.golden)
			if updateGoldens() {
				if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (go test ./internal/evidence -update writes it)", err)
			}
			if !bytes.Equal(buf.Bytes(), want) {
				t.Errorf("the report differs from %s; go test ./internal/evidence -update rewrites it after a deliberate change", path)
			}
			// The same Snapshot gives the same bytes.
			var again bytes.Buffer
			if err := RenderHTML(&again, tc.s); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(buf.Bytes(), again.Bytes()) {
				t.Error("two renderings of one Snapshot differ")
			}
		})
	}
}

// TestRenderHTMLSelfContained checks the page's text for anything that
// would fetch or run: the browser test (test/report) checks the same in
// Chromium.
func TestRenderHTMLSelfContained(t *testing.T) {
	var buf bytes.Buffer
	if err := RenderHTML(&buf, loadHTMLSnapshot(t)); err != nil {
		t.Fatal(err)
	}
	page := buf.String()
	for _, banned := range []string{"<script", "<img", "<iframe", "<object", "<embed", "<video", "<audio", "<source", "@import", "url(", ` src="`, ` srcset="`} {
		if strings.Contains(page, banned) {
			t.Errorf("the page contains %q", banned)
		}
	}
	if n, icons := strings.Count(page, "<link "), strings.Count(page, `<link rel="icon" href="data:,">`); n != icons {
		t.Errorf("the page has %d links, of which %d the empty icon (that keeps a browser from asking for /favicon.ico)", n, icons)
	}
	// html/template writes ZgotmplZ for a value it refuses in its context.
	if strings.Contains(page, "ZgotmplZ") {
		t.Error("the page contains ZgotmplZ: html/template refused a value")
	}
	for _, want := range []string{
		"default-src 'none'",
		`content: "Collected 2026-08-01T12\3a 00\3a 00Z · cluster prod-eu-west-1 · all namespaces"`,
		// The forged message is text.
		"&lt;script&gt;console.error(&#34;not escaped&#34;)&lt;/script&gt;&lt;img src=&#34;https://example.com/tracker.png&#34;",
	} {
		if !strings.Contains(page, want) {
			t.Errorf("the page lacks %q", want)
		}
	}
}

// TestRenderHTMLEscapes puts markup and CSS in every text a tenant or a
// model author controls.
func TestRenderHTMLEscapes(t *testing.T) {
	const evil = `</style><script>alert(1)</script>"};body{display:none}/*`
	exp := time.Date(2026, 9, 1, 0, 0, 0, 0, time.UTC)
	s := Snapshot{
		CollectedAt: time.Date(2026, 8, 1, 12, 0, 0, 0, time.UTC),
		Cluster:     evil,
		Models: []Model{{Name: "m", Service: evil, Provider: evil, Description: evil, Areas: []Area{{
			Name: evil, Provider: evil, Customer: evil,
			Controls: []Control{{Framework: evil, ID: evil, URL: "javascript:alert(1)"}},
			Duties:   []Duty{{Name: "d"}},
		}}}},
		Namespaces: []Namespace{{
			Name:    "ns",
			Objects: []Object{{Kind: evil, Name: evil, Models: []string{"m"}, Duties: []DutyState{{Model: "m", Duty: "d", State: evil, Message: evil, Waiver: evil}}}},
			Waivers: []Waiver{{Source: evil, Name: evil, Duties: []string{evil}, Reason: evil, Ticket: "javascript:alert(1)", GrantedBy: evil, Expires: &exp, Active: evil}},
		}},
	}
	var buf bytes.Buffer
	if err := RenderHTML(&buf, s); err != nil {
		t.Fatal(err)
	}
	page := buf.String()
	for _, banned := range []string{"<script", `href="javascript:`} {
		if strings.Contains(page, banned) {
			t.Errorf("the page contains %q", banned)
		}
	}
	if opened, closed := strings.Count(page, "<style"), strings.Count(page, "</style>"); opened != 1 || closed != 1 {
		t.Fatalf("the page opens %d style elements and closes %d, want one", opened, closed)
	}
	// The cluster's name is a CSS string in the page footer's rule.
	style := page[strings.Index(page, "<style"):strings.Index(page, "</style>")]
	if strings.Contains(style, "display:none") || !strings.Contains(style, `\22\7d\3b body\7b display\3anone`) {
		t.Errorf("the cluster's name is not escaped as a CSS string: %s", style[strings.Index(style, "@bottom-left"):])
	}
}

func TestHTMLCounts(t *testing.T) {
	s := loadHTMLSnapshot(t)
	r := newHTMLReport(s)
	type counts struct{ objects, met, unmet, unknown, waived, waivers int }
	got := map[string]counts{}
	for _, n := range r.Namespaces {
		c := n.Counts
		got[n.Name] = counts{c.Objects, c.Met, c.Unmet, c.Unknown, c.Waived, c.Waivers}
		for _, m := range n.Models {
			c := m.Counts
			got[n.Name+"/"+m.Name] = counts{c.Objects, c.Met, c.Unmet, c.Unknown, c.Waived, c.Waivers}
		}
	}
	c := r.Total
	got["total"] = counts{c.Objects, c.Met, c.Unmet, c.Unknown, c.Waived, c.Waivers}
	for key, want := range map[string]counts{
		"legacy":               {4, 4, 5, 1, 1, 3},
		"legacy/acme-baseline": {2, 1, 1, 0, 0, 0},
		"legacy/acme-postgres": {4, 3, 4, 1, 1, 0},
		"media":                {3, 5, 2, 0, 2, 2},
		"media/acme-baseline":  {1, 1, 0, 0, 0, 0},
		"media/acme-buckets":   {2, 1, 1, 0, 2, 0},
		"media/acme-postgres":  {1, 3, 1, 0, 0, 0},
		// Not reported is counted nowhere.
		"shop":               {1, 6, 0, 0, 0, 0},
		"shop/acme-baseline": {1, 1, 0, 0, 0, 0},
		"shop/acme-postgres": {1, 4, 0, 0, 0, 0},
		"shop/retired-model": {1, 1, 0, 0, 0, 0},
		"staging":            {0, 0, 0, 0, 0, 1},
		"total":              {8, 15, 7, 1, 3, 6},
	} {
		if got[key] != want {
			t.Errorf("%s: got %+v, want %+v", key, got[key], want)
		}
	}
	if len(r.Unapplied) != 1 || r.Unapplied[0].Name != "acme-queues" {
		t.Errorf("models no object matches: got %v, want acme-queues", r.Unapplied)
	}
}

// TestHTMLDutyOrder: an object's states follow the model's area order, a
// duty the model lacks comes after them, and a duty of the model the
// annotation does not report reads "Not reported".
func TestHTMLDutyOrder(t *testing.T) {
	r := newHTMLReport(loadHTMLSnapshot(t))
	for _, tc := range []struct {
		namespace, model, object string
		want                     []string
	}{
		{"legacy", "acme-postgres", "Cluster/scratch-db", []string{
			"backup-scheduled=Unmet", "tls-enforced=Waived", "replicas=Unmet", "monitoring-enabled=Unmet",
		}},
		{"shop", "acme-postgres", "Cluster/orders-db", []string{
			"backup-scheduled=Met", "replicas=Met", "monitoring-enabled=Met", "storage-encrypted=Met", "tls-enforced=Not reported",
		}},
		{"legacy", "acme-postgres", "Cluster/forged-db", []string{
			"backup-scheduled=Unmet", "tls-enforced=Not reported", "replicas=Not reported", "monitoring-enabled=Not reported",
		}},
		// An annotation that cannot be read reports nothing: the problem
		// says so once.
		{"legacy", "acme-postgres", "Cluster/hand-edited-db", nil},
	} {
		t.Run(tc.object, func(t *testing.T) {
			var got []string
			found := false
			for _, n := range r.Namespaces {
				for _, m := range n.Models {
					for _, o := range m.Objects {
						if n.Name == tc.namespace && m.Name == tc.model && o.Ref == tc.object {
							found = true
							for _, s := range o.States {
								got = append(got, s.Duty+"="+s.State)
							}
						}
					}
				}
			}
			if !found {
				t.Fatalf("no %s of model %s in namespace %s", tc.object, tc.model, tc.namespace)
			}
			if strings.Join(got, " ") != strings.Join(tc.want, " ") {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestHTMLTimeLeft(t *testing.T) {
	now := time.Date(2026, 8, 1, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		at   time.Time
		want string
	}{
		{now.Add(11*24*time.Hour + 12*time.Hour), "in 11d"},
		{now.Add(-3 * time.Hour), "expired 3h ago"},
		{now, "expired 0s ago"},
	} {
		if got := htmlTimeLeft(tc.at, now); got != tc.want {
			t.Errorf("htmlTimeLeft(%s): got %q, want %q", tc.at, got, tc.want)
		}
	}
}

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestRenderHTMLWriteError(t *testing.T) {
	err := RenderHTML(failingWriter{}, Snapshot{})
	if err == nil || !strings.Contains(err.Error(), "write the HTML report: disk full") {
		t.Errorf("got %v, want the write error wrapped", err)
	}
}

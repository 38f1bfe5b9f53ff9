package evidence

import (
	"bytes"
	_ "embed"
	"fmt"
	"html/template"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/duration"
)

// htmlOther is the CSS class of a state that is none of the four.
const htmlOther = "other"

// htmlStateClasses are the CSS classes of the duty states of the duties
// annotation; any other state reads htmlOther.
var htmlStateClasses = map[string]string{
	"Met":     "met",
	"Unmet":   "unmet",
	"Unknown": "unknown",
	"Waived":  "waived",
}

// htmlSource is the report's template: one page with its style sheet inline,
// no script and no reference to anything outside the file.
//
//go:embed html.tmpl
var htmlSource string

var htmlTemplate = template.Must(template.New("html.tmpl").Parse(htmlSource))

// RenderHTML writes the Snapshot as one self-contained HTML page for a
// person to read and print: per namespace, the matrix of each model that
// applies there, each duty's state on each object, the counts and the
// waivers, with the time of collection on every printed page. The page
// fetches nothing (its Content-Security-Policy forbids it), runs no script,
// and prints on A4 with a page per namespace. The same Snapshot gives the
// same bytes. w receives the whole page or, on an error, nothing.
func RenderHTML(w io.Writer, s Snapshot) error {
	var buf bytes.Buffer
	if err := htmlTemplate.Execute(&buf, newHTMLReport(s)); err != nil {
		return fmt.Errorf("render the HTML report: %w", err)
	}
	if _, err := w.Write(buf.Bytes()); err != nil {
		return fmt.Errorf("write the HTML report: %w", err)
	}
	return nil
}

// htmlReport is what the template reads: the Snapshot arranged per
// namespace and model, with every text already formatted.
type htmlReport struct {
	Title       string
	Heading     string
	Cluster     string
	Scope       string
	CollectedAt string
	// Footer is printed at the foot of every page, after "Collected ": in
	// a CSS string, html/template takes a value that starts the string for
	// a URL and writes #ZgotmplZ for one with a colon before any slash
	// (escapeAction in Go's src/html/template/escape.go: urlfilter at
	// urlPartNone), so the template starts the string with text.
	Footer     string
	Total      htmlCounts
	Namespaces []htmlNamespace
	// Unapplied are the models no object in scope matches.
	Unapplied []Model
}

// htmlCounts counts duty states: of every object of a namespace, or of
// every object a model matches there.
type htmlCounts struct {
	Label   string
	ID      string
	Objects int
	Waivers int
	Met     int
	Unmet   int
	Unknown int
	Waived  int
}

type htmlNamespace struct {
	ID      string
	Name    string
	Counts  htmlCounts
	Models  []htmlModel
	Waivers []htmlWaiver
}

type htmlModel struct {
	ID     string
	Name   string
	Counts htmlCounts
	// Known is false when the Snapshot lacks the model (its reader could not
	// list ResponsibilityModels): the matrix is then missing.
	Known       bool
	Model       Model
	HasControls bool
	Areas       []htmlArea
	Objects     []htmlObject
}

type htmlArea struct {
	Area
	DutyNames string
}

type htmlObject struct {
	Ref        string
	APIVersion string
	UID        string
	// Problem says why the object's duties annotation could not be read.
	Problem string
	States  []htmlState
}

type htmlState struct {
	Area     string
	Duty     string
	Severity string
	State    string
	// Class is the state's CSS class: met, unmet, unknown, waived or other.
	Class   string
	Message string
	Waiver  string
}

type htmlWaiver struct {
	Waiver
	DutyList string
	// ExpiresAt and ExpiresIn are the expiry and the time left at the
	// collection, when it has one.
	ExpiresAt string
	ExpiresIn string
	TicketURL string
}

func newHTMLReport(s Snapshot) htmlReport {
	at := s.CollectedAt.UTC().Format(time.RFC3339)
	cluster := s.Cluster
	if cluster == "" {
		cluster = "(not named)"
	}
	scope := "all namespaces"
	if s.Namespace != "" {
		scope = "namespace " + s.Namespace
	}
	heading := "Shared responsibilities: " + scope
	if s.Cluster != "" {
		heading = fmt.Sprintf("Shared responsibilities on cluster %s: %s", s.Cluster, scope)
	}
	r := htmlReport{
		Title:       fmt.Sprintf("Shared responsibilities: %s, cluster %s, %s", scope, cluster, at),
		Heading:     heading,
		Cluster:     cluster,
		Scope:       scope,
		CollectedAt: at,
		Footer:      fmt.Sprintf("%s · cluster %s · %s", at, cluster, scope),
		Total:       htmlCounts{Label: "Total"},
	}
	models := make(map[string]Model, len(s.Models))
	for _, m := range s.Models {
		models[m.Name] = m
	}
	applied := map[string]bool{}
	for i, ns := range s.Namespaces {
		n := newHTMLNamespace("ns-"+strconv.Itoa(i+1), ns, models, s.CollectedAt)
		for _, m := range n.Models {
			applied[m.Name] = true
		}
		r.Total.add(n.Counts)
		r.Namespaces = append(r.Namespaces, n)
	}
	for _, m := range s.Models {
		if !applied[m.Name] {
			r.Unapplied = append(r.Unapplied, m)
		}
	}
	return r
}

func newHTMLNamespace(id string, ns Namespace, models map[string]Model, now time.Time) htmlNamespace {
	n := htmlNamespace{
		ID:     id,
		Name:   ns.Name,
		Counts: htmlCounts{Label: ns.Name, ID: id, Objects: len(ns.Objects), Waivers: len(ns.Waivers)},
	}
	var names []string
	for _, o := range ns.Objects {
		names = append(names, o.Models...)
		for _, d := range o.Duties {
			names = append(names, d.Model)
			n.Counts.count(d.State)
		}
	}
	slices.Sort(names)
	for i, name := range slices.Compact(names) {
		n.Models = append(n.Models, newHTMLModel(id+"-model-"+strconv.Itoa(i+1), name, models, ns.Objects))
	}
	for _, w := range ns.Waivers {
		n.Waivers = append(n.Waivers, newHTMLWaiver(w, now))
	}
	return n
}

func newHTMLModel(id, name string, models map[string]Model, objects []Object) htmlModel {
	m, known := models[name]
	hm := htmlModel{ID: id, Name: name, Known: known, Model: m, Counts: htmlCounts{Label: name}}
	// The model's duties in its order, with their areas.
	type dutyInfo struct {
		area     string
		severity string
	}
	duties := map[string]dutyInfo{}
	var order []string
	for _, a := range m.Areas {
		var dutyNames []string
		for _, d := range a.Duties {
			duties[d.Name] = dutyInfo{area: a.Name, severity: d.Severity}
			order = append(order, d.Name)
			dutyNames = append(dutyNames, d.Name)
		}
		hm.HasControls = hm.HasControls || len(a.Controls) > 0
		hm.Areas = append(hm.Areas, htmlArea{Area: a, DutyNames: strings.Join(dutyNames, ", ")})
	}
	for _, o := range objects {
		var states []DutyState
		for _, d := range o.Duties {
			if d.Model == name {
				states = append(states, d)
			}
		}
		if len(states) == 0 && !slices.Contains(o.Models, name) {
			continue
		}
		hm.Counts.Objects++
		ho := htmlObject{Ref: o.Kind + "/" + o.Name, APIVersion: o.APIVersion, UID: o.UID, Problem: o.Problem}
		// The object's states in the model's duty order; a duty the model
		// lacks (the model changed since) after them, as the annotation
		// sorts it.
		slices.SortStableFunc(states, func(a, b DutyState) int {
			return htmlDutyRank(order, a.Duty) - htmlDutyRank(order, b.Duty)
		})
		reported := map[string]bool{}
		for _, d := range states {
			reported[d.Duty] = true
			hm.Counts.count(d.State)
			ho.States = append(ho.States, htmlState{
				Area:     duties[d.Duty].area,
				Duty:     d.Duty,
				Severity: duties[d.Duty].severity,
				State:    d.State,
				Class:    htmlStateClass(d.State),
				Message:  d.Message,
				Waiver:   d.Waiver,
			})
		}
		// A duty of the model the object's annotation does not report,
		// unless the annotation could not be read at all.
		for _, d := range order {
			if !reported[d] && o.Problem == "" {
				ho.States = append(ho.States, htmlState{
					Area: duties[d].area, Duty: d, Severity: duties[d].severity,
					State: "Not reported", Class: htmlOther,
					Message: "The object's duties annotation has no state for this duty.",
				})
			}
		}
		hm.Objects = append(hm.Objects, ho)
	}
	return hm
}

// htmlDutyRank is the place of duty in the model's order; a duty the model
// lacks comes after every one it has.
func htmlDutyRank(order []string, duty string) int {
	if i := slices.Index(order, duty); i >= 0 {
		return i
	}
	return len(order)
}

func newHTMLWaiver(w Waiver, now time.Time) htmlWaiver {
	hw := htmlWaiver{
		Waiver:   w,
		DutyList: strings.Join(w.Duties, ", "),
	}
	if w.Expires != nil {
		hw.ExpiresAt = w.Expires.UTC().Format(time.RFC3339)
		hw.ExpiresIn = htmlTimeLeft(*w.Expires, now)
	}
	if strings.HasPrefix(w.Ticket, "https://") || strings.HasPrefix(w.Ticket, "http://") {
		hw.TicketURL = w.Ticket
	}
	return hw
}

// htmlTimeLeft is "in 12d" before at, "expired 3h ago" from at on, relative to
// the collection and in the units of kubectl's ages, as `kubectl
// responsibility waivers` writes it.
func htmlTimeLeft(at, now time.Time) string {
	if now.Before(at) {
		return "in " + duration.HumanDuration(at.Sub(now))
	}
	return "expired " + duration.HumanDuration(now.Sub(at)) + " ago"
}

func (c *htmlCounts) count(state string) {
	switch htmlStateClass(state) {
	case "met":
		c.Met++
	case "unmet":
		c.Unmet++
	case "unknown":
		c.Unknown++
	case "waived":
		c.Waived++
	}
}

func (c *htmlCounts) add(o htmlCounts) {
	c.Objects += o.Objects
	c.Waivers += o.Waivers
	c.Met += o.Met
	c.Unmet += o.Unmet
	c.Unknown += o.Unknown
	c.Waived += o.Waived
}

// htmlStateClass is the CSS class of a state. The state is always written out
// as text too, so that the report reads the same in black and white.
func htmlStateClass(state string) string {
	if c, ok := htmlStateClasses[state]; ok {
		return c
	}
	return htmlOther
}

// Package monitoring checks the Prometheus and Grafana objects under
// config/ against the metrics the operator really exports, so that a
// renamed metric cannot silently empty a dashboard or mute an alert.
package monitoring

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/yaml"

	"github.com/responsibility-operator/responsibility-operator/internal/metrics"
)

// The dashboard model: the fields of Grafana's dashboard JSON (schemaVersion
// 39) this dashboard may use. Decoding with DisallowUnknownFields refuses a
// misspelt or misplaced field, which Grafana would silently ignore.
type dashboard struct {
	Title         string     `json:"title"`
	UID           string     `json:"uid"`
	Description   string     `json:"description"`
	Tags          []string   `json:"tags"`
	Editable      bool       `json:"editable"`
	SchemaVersion int        `json:"schemaVersion"`
	Version       int        `json:"version"`
	GraphTooltip  int        `json:"graphTooltip"`
	Time          timeRange  `json:"time"`
	Refresh       string     `json:"refresh"`
	Timezone      string     `json:"timezone"`
	Templating    templating `json:"templating"`
	Annotations   struct {
		List []json.RawMessage `json:"list"`
	} `json:"annotations"`
	Links  []json.RawMessage `json:"links"`
	Panels []panel           `json:"panels"`
}

type timeRange struct {
	From string `json:"from"`
	To   string `json:"to"`
}

type templating struct {
	List []variable `json:"list"`
}

type variable struct {
	Name        string          `json:"name"`
	Label       string          `json:"label"`
	Description string          `json:"description"`
	Type        string          `json:"type"`
	Query       json.RawMessage `json:"query"`
	Definition  string          `json:"definition"`
	Datasource  *datasource     `json:"datasource"`
	Current     json.RawMessage `json:"current"`
	IncludeAll  bool            `json:"includeAll"`
	Multi       bool            `json:"multi"`
	AllValue    string          `json:"allValue"`
	Refresh     int             `json:"refresh"`
	Sort        int             `json:"sort"`
	Hide        int             `json:"hide"`
}

type datasource struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

type panel struct {
	ID              int               `json:"id"`
	Type            string            `json:"type"`
	Title           string            `json:"title"`
	Description     string            `json:"description"`
	Datasource      datasource        `json:"datasource"`
	GridPos         gridPos           `json:"gridPos"`
	Targets         []target          `json:"targets"`
	FieldConfig     json.RawMessage   `json:"fieldConfig"`
	Options         json.RawMessage   `json:"options"`
	Transformations []json.RawMessage `json:"transformations"`
}

type gridPos struct {
	H int `json:"h"`
	W int `json:"w"`
	X int `json:"x"`
	Y int `json:"y"`
}

type target struct {
	Datasource   datasource `json:"datasource"`
	Expr         string     `json:"expr"`
	LegendFormat string     `json:"legendFormat"`
	RefID        string     `json:"refId"`
	Instant      bool       `json:"instant"`
	Format       string     `json:"format"`
}

// Built-in Grafana panel types the dashboard may use.
var panelTypes = map[string]bool{"timeseries": true, "stat": true, "table": true, "bargauge": true, "gauge": true, "text": true}

func root(t *testing.T) string {
	t.Helper()
	r, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestDashboardLoads(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(root(t), "config", "grafana", "responsibility-dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	var d dashboard
	if err := dec.Decode(&d); err != nil {
		t.Fatalf("dashboard does not decode into Grafana's dashboard model: %v", err)
	}
	if d.Title == "" || d.UID == "" || len(d.UID) > 40 {
		t.Errorf("title %q / uid %q: both required, uid at most 40 characters", d.Title, d.UID)
	}
	if d.SchemaVersion < 36 {
		t.Errorf("schemaVersion %d predates datasource references by uid (36)", d.SchemaVersion)
	}

	vars := map[string]variable{}
	for _, v := range d.Templating.List {
		vars[v.Name] = v
	}
	if v, ok := vars["datasource"]; !ok || v.Type != "datasource" || string(v.Query) != `"prometheus"` {
		t.Errorf("templating needs a datasource variable of type prometheus, got %+v", v)
	}
	varRef := regexp.MustCompile(`\$\{?(\w+)\}?`)
	checkVars := func(where, s string) {
		for _, m := range varRef.FindAllStringSubmatch(s, -1) {
			if _, ok := vars[m[1]]; !ok && !strings.HasPrefix(m[1], "__") {
				t.Errorf("%s uses $%s, which is not a template variable", where, m[1])
			}
		}
	}

	checkPanels(t, d.Panels, checkVars)
	for _, v := range d.Templating.List {
		checkMetrics(t, "variable "+v.Name, string(v.Query))
	}
	checkClusterVariable(t, d.Templating.List)
	checkClusterMatchers(t, d)
}

// checkPanels checks ids, types, grid positions, queries, variables and
// metric names of the panels.
func checkPanels(t *testing.T, panels []panel, checkVars func(where, s string)) {
	t.Helper()
	ids := map[int]bool{}
	occupied := map[[2]int]int{}
	for _, p := range panels {
		where := "panel " + p.Title
		if ids[p.ID] {
			t.Errorf("%s: duplicate id %d", where, p.ID)
		}
		ids[p.ID] = true
		if !panelTypes[p.Type] {
			t.Errorf("%s: unknown panel type %q", where, p.Type)
		}
		if p.Title == "" || len(p.Targets) == 0 {
			t.Errorf("%s: needs a title and at least one query", where)
		}
		g := p.GridPos
		if g.W < 1 || g.H < 1 || g.X < 0 || g.Y < 0 || g.X+g.W > 24 {
			t.Errorf("%s: gridPos %+v outside the 24-column grid", where, g)
		}
		for x := g.X; x < g.X+g.W; x++ {
			for y := g.Y; y < g.Y+g.H; y++ {
				if other, ok := occupied[[2]int{x, y}]; ok {
					t.Errorf("%s overlaps panel %d at (%d,%d)", where, other, x, y)
				}
				occupied[[2]int{x, y}] = p.ID
			}
		}
		checkVars(where, p.Datasource.UID)
		refs := map[string]bool{}
		for _, tg := range p.Targets {
			if tg.Expr == "" || tg.RefID == "" || refs[tg.RefID] {
				t.Errorf("%s: every query needs an expr and a unique refId, got %+v", where, tg)
			}
			refs[tg.RefID] = true
			checkVars(where, tg.Datasource.UID)
			checkVars(where, tg.Expr)
			checkMetrics(t, where, tg.Expr)
		}
	}
}

// prometheusRule is the part of a PrometheusRule (monitoring.coreos.com/v1)
// the alerts use.
type prometheusRule struct {
	APIVersion string          `json:"apiVersion"`
	Kind       string          `json:"kind"`
	Metadata   json.RawMessage `json:"metadata"`
	Spec       struct {
		Groups []struct {
			Name  string `json:"name"`
			Rules []struct {
				Alert       string            `json:"alert"`
				Expr        string            `json:"expr"`
				For         string            `json:"for"`
				Labels      map[string]string `json:"labels"`
				Annotations map[string]string `json:"annotations"`
			} `json:"rules"`
		} `json:"groups"`
	} `json:"spec"`
}

func TestAlertsUseExportedMetrics(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(root(t), "config", "prometheus", "alerts.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var pr prometheusRule
	if err := yaml.UnmarshalStrict(raw, &pr); err != nil {
		t.Fatalf("alerts.yaml: %v", err)
	}
	if pr.Kind != "PrometheusRule" || len(pr.Spec.Groups) == 0 {
		t.Fatalf("alerts.yaml is not a PrometheusRule with groups")
	}
	n := 0
	for _, g := range pr.Spec.Groups {
		for _, r := range g.Rules {
			n++
			if r.Alert == "" || r.For == "" || r.Labels["severity"] == "" || r.Annotations["summary"] == "" || r.Annotations["description"] == "" {
				t.Errorf("alert %q needs for, a severity label, a summary and a description", r.Alert)
			}
			checkMetrics(t, "alert "+r.Alert, r.Expr)
			checkAlertKeepsCluster(t, r.Alert, r.Expr, r.Annotations)
		}
	}
	if n == 0 {
		t.Fatal("no alert")
	}
}

var metricRef = regexp.MustCompile(`\bresponsibility_[a-z_]+`)

// checkMetrics fails for every responsibility_ metric an expression names
// that the operator does not export.
func checkMetrics(t *testing.T, where, expr string) {
	t.Helper()
	exported := exportedMetrics(t)
	for _, name := range metricRef.FindAllString(expr, -1) {
		if !exported[name] {
			t.Errorf("%s: %s is not a metric the operator exports", where, name)
		}
	}
}

func exportedMetrics(t *testing.T) map[string]bool {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	m := metrics.NewMetrics()
	for _, c := range []prometheus.Collector{m.MatchedObjects, m.DutyObjects, m.EvaluationDuration, m.ApplyDuration, m.Applies, m.Events, m.ModelReady} {
		reg.MustRegister(c)
	}
	// Vectors export nothing until a series exists.
	m.MatchedObjects.WithLabelValues("m", "k").Set(1)
	m.DutyObjects.WithLabelValues("m", "d", "Met", "ns").Set(1)
	m.Applies.WithLabelValues("k", "success").Inc()
	m.Events.WithLabelValues("r", "Normal").Inc()
	m.ModelReady.WithLabelValues("m").Set(1)
	m.EvaluationDuration.Observe(1)
	m.ApplyDuration.Observe(1)
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{metrics.WatchSyncedMetric: true} // collected at scrape time from the watchers
	for _, f := range families {
		out[f.GetName()] = true
		if f.GetType().String() == "HISTOGRAM" {
			for _, s := range []string{"_bucket", "_sum", "_count"} {
				out[f.GetName()+s] = true
			}
		}
	}
	return out
}

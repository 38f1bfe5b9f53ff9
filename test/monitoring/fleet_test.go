package monitoring

// The fleet view: a Prometheus (or Thanos, Mimir) that holds many clusters,
// each cluster's series carrying the label cluster from its Prometheus'
// external labels. The dashboard selects clusters with a variable whose All
// value also matches series without the label, and the alerts keep the label
// in every aggregation. The checks below read the files; the promtool tests
// evaluate them with Prometheus's own engine and rule manager.

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

const (
	clusterLabel = "cluster"
	// clusterMatcher is the matcher every metric selector of the dashboard
	// carries. A regex matcher, because Grafana interpolates a multi-value
	// selection as (a|b) and All as the variable's allValue.
	clusterMatcher = `cluster=~"$cluster"`
	// clusterAllValue is the cluster variable's All: in PromQL a matcher
	// that matches the empty string also selects series without the label,
	// so All shows a single-cluster Prometheus' series too.
	clusterAllValue = ".*"
	clusterQuery    = "label_values(responsibility_model_ready, cluster)"
)

// checkClusterVariable checks the cluster variable: from the label the
// operator's ready gauge carries, multi-select with an All whose value
// matches every series, with or without the label.
func checkClusterVariable(t *testing.T, vars []variable) {
	t.Helper()
	for _, v := range vars {
		if v.Name != clusterLabel {
			continue
		}
		var q struct {
			Query string `json:"query"`
		}
		if err := json.Unmarshal(v.Query, &q); err != nil {
			t.Errorf("variable cluster: query: %v", err)
		}
		if v.Type != "query" || q.Query != clusterQuery || v.Definition != clusterQuery {
			t.Errorf("variable cluster: want a query variable %q, got type %q query %q definition %q", clusterQuery, v.Type, q.Query, v.Definition)
		}
		if !v.Multi || !v.IncludeAll || v.AllValue != clusterAllValue {
			t.Errorf("variable cluster: want multi-select with All = %q (matches series without the label), got multi %v includeAll %v allValue %q", clusterAllValue, v.Multi, v.IncludeAll, v.AllValue)
		}
		if v.Datasource == nil || v.Datasource.UID != "${datasource}" {
			t.Errorf("variable cluster: want the dashboard's datasource variable, got %+v", v.Datasource)
		}
		return
	}
	t.Error("templating has no cluster variable")
}

// selectorRef finds each metric selector of the operator's metrics with
// its label matchers, if any. The dashboard writes variables as $name, never
// ${name}, so a matcher list holds no brace.
var selectorRef = regexp.MustCompile(`\b(responsibility_[a-z_]+)\s*(\{[^{}]*\})?`)

// byRef finds the labels of a by (...) or without (...) clause.
var byRef = regexp.MustCompile(`\b(by|without)\s*\(([^)]*)\)`)

// clusterSelectorErrors lists the metric selectors of expr that do not
// carry the cluster matcher.
func clusterSelectorErrors(expr string) []string {
	var out []string
	for _, m := range selectorRef.FindAllStringSubmatch(expr, -1) {
		if !strings.Contains(m[2], clusterMatcher) {
			out = append(out, strings.TrimSpace(m[0]))
		}
	}
	return out
}

// byLabels returns the labels of every by (...) clause of expr, and fails
// on a without (...) clause, which would keep or drop cluster by accident.
func byLabels(t *testing.T, where, expr string) [][]string {
	t.Helper()
	var out [][]string
	for _, m := range byRef.FindAllStringSubmatch(expr, -1) {
		if m[1] == "without" {
			t.Errorf("%s: %q: aggregate with by (...) so that the kept labels, cluster among them, are explicit", where, m[0])
			continue
		}
		var labels []string
		for _, l := range strings.Split(m[2], ",") {
			labels = append(labels, strings.TrimSpace(l))
		}
		out = append(out, labels)
	}
	return out
}

// checkClusterMatchers checks that every panel query and every variable
// query but the cluster variable's own selects by the cluster variable, that
// an aggregation by namespace keeps cluster (a namespace's name is unique
// only within its cluster), and that some panel shows unmet duties per
// cluster.
func checkClusterMatchers(t *testing.T, d dashboard) {
	t.Helper()
	perCluster := false
	for _, p := range d.Panels {
		for _, tg := range p.Targets {
			where := fmt.Sprintf("panel %q query %s", p.Title, tg.RefID)
			for _, sel := range clusterSelectorErrors(tg.Expr) {
				t.Errorf("%s: selector %q lacks %s", where, sel, clusterMatcher)
			}
			for _, labels := range byLabels(t, where, tg.Expr) {
				if slices.Contains(labels, "namespace") && !slices.Contains(labels, clusterLabel) {
					t.Errorf("%s: by (%s) merges the namespaces of equal name of different clusters: keep cluster", where, strings.Join(labels, ", "))
				}
				if len(labels) == 1 && labels[0] == clusterLabel && strings.Contains(tg.Expr, `state="Unmet"`) {
					perCluster = true
				}
			}
		}
	}
	if !perCluster {
		t.Error("no panel shows unmet duties by cluster (sum by (cluster) of the Unmet objects)")
	}
	for _, v := range d.Templating.List {
		if v.Type != "query" || v.Name == clusterLabel {
			continue
		}
		var q struct {
			Query string `json:"query"`
		}
		if err := json.Unmarshal(v.Query, &q); err != nil {
			t.Errorf("variable %s: query: %v", v.Name, err)
		}
		for _, sel := range clusterSelectorErrors(q.Query) {
			t.Errorf("variable %s: selector %q lacks %s: its values would come from every cluster", v.Name, sel, clusterMatcher)
		}
	}
}

// checkAlertKeepsCluster checks that every aggregation of an alert keeps
// the cluster label, and that its annotations name the cluster.
func checkAlertKeepsCluster(t *testing.T, alert, expr string, annotations map[string]string) {
	t.Helper()
	where := "alert " + alert
	for _, labels := range byLabels(t, where, expr) {
		if !slices.Contains(labels, clusterLabel) {
			t.Errorf("%s: by (%s) drops the label cluster: on a Prometheus holding many clusters the alert could not say which", where, strings.Join(labels, ", "))
		}
	}
	for _, k := range []string{"summary", "description"} {
		if !strings.Contains(annotations[k], "$labels.cluster") {
			t.Errorf("%s: annotation %s does not name the cluster ({{ $labels.cluster }})", where, k)
		}
	}
}

// promtool returns Prometheus's promtool, which make promtool builds at a
// pinned version into bin/.
func promtool(t *testing.T) string {
	t.Helper()
	p := filepath.Join(root(t), "bin", "promtool")
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("%v: run make promtool (it builds Prometheus's promtool from its Go module at the pinned version)", err)
	}
	return p
}

// runPromtool runs promtool with args and fails the test with its output
// when it exits non-zero.
func runPromtool(t *testing.T, args ...string) {
	t.Helper()
	out, err := exec.Command(promtool(t), args...).CombinedOutput()
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
	case err != nil:
		t.Fatalf("promtool %s: %v", strings.Join(args, " "), err)
	}
	t.Logf("promtool %s:\n%s", strings.Join(args, " "), out)
}

// ruleFile writes the groups of config/prometheus/alerts.yaml, the spec of
// a PrometheusRule, as a Prometheus rule file into dir.
func ruleFile(t *testing.T, dir string) string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(root(t), "config", "prometheus", "alerts.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var pr struct {
		Spec json.RawMessage `json:"spec"`
	}
	if err := yaml.Unmarshal(raw, &pr); err != nil {
		t.Fatalf("alerts.yaml: %v", err)
	}
	rules, err := yaml.JSONToYAML(pr.Spec)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "alerts.rules.yaml")
	if err := os.WriteFile(path, rules, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestAlertRulesWithPromtool checks the alert rules with Prometheus's own
// promtool: check rules (syntax, templates, duplicate rules), then the unit
// tests of testdata/alerts_test.yaml, whose input series come from one
// cluster without the label cluster, from two clusters with it, and from a
// cluster whose Prometheus has the external label cluster.
func TestAlertRulesWithPromtool(t *testing.T) {
	dir := t.TempDir()
	rules := ruleFile(t, dir)
	runPromtool(t, "check", "rules", "--lint-fatal", rules)

	tests, err := os.ReadFile(filepath.Join("testdata", "alerts_test.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "alerts_test.yaml")
	if err := os.WriteFile(path, tests, 0o600); err != nil {
		t.Fatal(err)
	}
	runPromtool(t, "test", "rules", path)
}

// A promtool unit test file (promtool test rules), the parts used here.
type promtoolTests struct {
	RuleFiles []string        `json:"rule_files"`
	Tests     []promtoolGroup `json:"tests"`
}

type promtoolGroup struct {
	Name           string             `json:"name,omitempty"`
	Interval       string             `json:"interval"`
	InputSeries    []promtoolSeries   `json:"input_series"`
	PromqlExprTest []promtoolExprTest `json:"promql_expr_test,omitempty"`
}

type promtoolSeries struct {
	Series string `json:"series"`
	Values string `json:"values"`
}

type promtoolExprTest struct {
	Expr       string           `json:"expr"`
	EvalTime   string           `json:"eval_time"`
	ExpSamples []promtoolSample `json:"exp_samples"`
}

type promtoolSample struct {
	Labels string  `json:"labels"`
	Value  float64 `json:"value"`
}

// withCluster returns the series with the label cluster set to name.
func withCluster(series []promtoolSeries, name string) []promtoolSeries {
	out := make([]promtoolSeries, 0, len(series))
	for _, s := range series {
		out = append(out, promtoolSeries{
			Series: strings.Replace(s.Series, "{", `{cluster="`+name+`",`, 1),
			Values: s.Values,
		})
	}
	return out
}

// interpolate replaces the dashboard's variables as Grafana does for the
// Prometheus data source: cluster by the selection (All is the allValue),
// namespace and model by their All (.*).
func interpolate(expr, cluster string) string {
	return strings.NewReplacer("$cluster", cluster, "$namespace", ".*", "$model", ".*").Replace(expr)
}

// withoutClusterMatcher returns expr without the cluster matcher: the query
// as it was before the fleet view.
func withoutClusterMatcher(expr string) string {
	return strings.NewReplacer("{"+clusterMatcher+"}", "", clusterMatcher+", ", "").Replace(expr)
}

// TestDashboardQueriesWithPromtool evaluates every panel query with
// Prometheus's engine (promtool test rules with PromQL expression tests) on
// the series of testdata/dashboard_series.yaml: as one cluster's
// Prometheus has them (no label cluster) and as a Prometheus holding two
// clusters has them. With the cluster variable at All, or at both clusters,
// every query returns data and exactly what it returns without the cluster
// matcher; a query that keeps cluster in its by (...) returns one series
// per selected cluster; with one cluster selected, it returns only that one.
func TestDashboardQueriesWithPromtool(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(root(t), "config", "grafana", "responsibility-dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatal(err)
	}
	raw, err = os.ReadFile(filepath.Join("testdata", "dashboard_series.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var one promtoolGroup
	if err := yaml.UnmarshalStrict(raw, &one); err != nil {
		t.Fatalf("dashboard_series.yaml: %v", err)
	}

	const evalTime = "20m"
	nonEmpty := func(expr string) promtoolExprTest {
		return promtoolExprTest{Expr: "count(" + expr + ") > bool 0", EvalTime: evalTime, ExpSamples: []promtoolSample{{Labels: "{}", Value: 1}}}
	}
	// Empty when a and b hold the same series with the same values.
	same := func(a, b string) promtoolExprTest {
		return promtoolExprTest{Expr: fmt.Sprintf("((%[1]s) != (%[2]s)) or ((%[1]s) unless (%[2]s)) or ((%[2]s) unless (%[1]s))", a, b), EvalTime: evalTime}
	}
	clusters := func(expr string, n int) promtoolExprTest {
		return promtoolExprTest{Expr: "count(count by (cluster) (" + expr + "))", EvalTime: evalTime, ExpSamples: []promtoolSample{{Labels: "{}", Value: float64(n)}}}
	}
	type selection struct {
		name, cluster string
		clusters      int // the clusters a per-cluster query shows
		series        []promtoolSeries
		unchanged     bool // the selection is every cluster: the query returns what it returned without the matcher
	}
	all := "" // what Grafana puts for All: the variable's allValue
	for _, v := range d.Templating.List {
		if v.Name == clusterLabel {
			all = v.AllValue
		}
	}
	fleet := append(withCluster(one.InputSeries, "east"), withCluster(one.InputSeries, "west")...)
	selections := []selection{
		{"one cluster, no cluster label, All", all, 1, one.InputSeries, true},
		{"two clusters, All", all, 2, fleet, true},
		{"two clusters, both selected", "(east|west)", 2, fleet, true},
		{"two clusters, east selected", "(east)", 1, fleet, false},
	}
	file := promtoolTests{RuleFiles: []string{}}
	n := 0
	for _, s := range selections {
		g := promtoolGroup{Name: s.name, Interval: one.Interval, InputSeries: s.series}
		for _, p := range d.Panels {
			for _, tg := range p.Targets {
				expr := interpolate(tg.Expr, s.cluster)
				g.PromqlExprTest = append(g.PromqlExprTest, nonEmpty(expr))
				if s.unchanged {
					g.PromqlExprTest = append(g.PromqlExprTest, same(expr, interpolate(withoutClusterMatcher(tg.Expr), s.cluster)))
				}
				for _, labels := range byLabels(t, p.Title, tg.Expr) {
					if slices.Contains(labels, clusterLabel) {
						g.PromqlExprTest = append(g.PromqlExprTest, clusters(expr, s.clusters))
						break
					}
				}
				n++
			}
		}
		file.Tests = append(file.Tests, g)
	}
	if n == 0 {
		t.Fatal("the dashboard has no query")
	}
	out, err := yaml.Marshal(file)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "dashboard_test.yaml")
	if err := os.WriteFile(path, out, 0o600); err != nil {
		t.Fatal(err)
	}
	runPromtool(t, "test", "rules", path)
}

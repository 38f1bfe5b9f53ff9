package plugin

import (
	"bytes"
	"context"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/ with the current output")

// goldenNow is the clock of the golden tests; events.yaml is relative to it.
var goldenNow = time.Date(2026, time.August, 1, 12, 0, 0, 0, time.UTC)

// runCommand runs the plugin with args against a cluster and returns what
// a user sees: the command line, standard output, standard error and the
// error the command returned.
func runCommand(t *testing.T, c Cluster, color bool, args ...string) string {
	t.Helper()
	return runCommandWidth(t, c, color, 0, args...)
}

// runCommandWidth is runCommand on a terminal width columns wide (0: not a
// terminal, no wrapping).
func runCommandWidth(t *testing.T, c Cluster, color bool, width int, args ...string) string {
	t.Helper()
	shown, _ := runWith(t, c, runOptions{color: color, width: width, now: goldenNow}, args...)
	return shown
}

// runOptions are how runWith runs the plugin.
type runOptions struct {
	color bool
	// width is the terminal's (0: not a terminal).
	width int
	stdin string
	now   time.Time
}

// runWith runs the plugin with args against a cluster and returns what a
// user sees (the command line, standard output, standard error and the
// error the command returned) and standard output alone.
func runWith(t *testing.T, c Cluster, ro runOptions, args ...string) (shown string, stdout []byte) {
	t.Helper()
	var out, errOut bytes.Buffer
	o := &Options{
		Streams:     genericiooptions.IOStreams{In: strings.NewReader(ro.stdin), Out: &out, ErrOut: &errOut},
		ConfigFlags: genericclioptions.NewConfigFlags(false),
		Color:       ro.color,
		Now:         func() time.Time { return ro.now },
		Width:       func() int { return ro.width },
	}
	o.NewCluster = func(flags *genericclioptions.ConfigFlags) (Cluster, error) {
		if f, ok := c.(*fakeCluster); ok {
			f.flags = flags
		}
		return c, nil
	}
	cmd := newRootCommand(o)
	cmd.SetArgs(args)
	err := cmd.ExecuteContext(context.Background())
	var b strings.Builder
	b.WriteString("$ kubectl responsibility " + strings.Join(args, " ") + "\n")
	b.WriteString(out.String())
	if errOut.Len() > 0 {
		b.WriteString("--- stderr\n" + errOut.String())
	}
	if err != nil {
		b.WriteString("--- error\n" + err.Error() + "\n")
	}
	return b.String(), out.Bytes()
}

func TestGolden(t *testing.T) {
	tests := []struct {
		name         string
		args         []string
		color        bool
		forbidModels bool
		// forbidWaivers and noWaiverCRD: see fakeCluster.
		forbidWaivers, noWaiverCRD bool
		// width is the terminal's; 0 is not a terminal.
		width int
	}{
		{name: "show", args: []string{"show", "cluster/scratch-db", "-n", "legacy"}},
		{name: "show-color", args: []string{"show", "cluster/scratch-db", "-n", "legacy"}, color: true},
		{name: "show-narrow", args: []string{"show", "cluster/scratch-db", "-n", "legacy"}, width: 100},
		{name: "show-customer", args: []string{"show", "cluster/scratch-db", "-n", "legacy", "--customer", "--hide-na"}, width: 80},
		{name: "show-unknown", args: []string{"show", "clusters.postgresql.cnpg.io", "reports-db", "--namespace=legacy"}},
		{name: "show-met-tenant", args: []string{"show", "cluster/orders-db", "-n", "shop"}, forbidModels: true},
		{name: "show-forged", args: []string{"show", "cluster.postgresql.cnpg.io/forged-db", "-n", "legacy"}},
		{name: "show-unannotated", args: []string{"show", "deployment/web", "-n", "shop"}},
		{name: "show-not-found", args: []string{"show", "cluster/nope", "-n", "shop"}},
		{name: "show-json", args: []string{"show", "cluster/scratch-db", "-n", "legacy", "-o", "json"}},
		{name: "unmet-all", args: []string{"unmet", "-A"}},
		{name: "unmet-all-color", args: []string{"unmet", "-A"}, color: true},
		{name: "unmet-namespace-none", args: []string{"unmet", "-n", "shop"}},
		{name: "unmet-summary", args: []string{"unmet", "-A", "--summary"}},
		{name: "unmet-summary-json", args: []string{"unmet", "-A", "--summary", "-o", "json"}},
		{name: "unmet-narrow", args: []string{"unmet", "-A"}, width: 120},
		{name: "unmet-yaml", args: []string{"unmet", "-n", "legacy", "-o", "yaml"}},
		{name: "show-bucket", args: []string{"show", "bucket/assets", "-n", "media"}},
		{name: "show-bucket-tenant", args: []string{"show", "bucket/assets", "-n", "media"}, forbidModels: true},
		{name: "show-bucket-json", args: []string{"show", "bucket/archive", "-n", "media", "-o", "json"}},
		{name: "waivers", args: []string{"waivers", "-A"}},
		{name: "waivers-narrow", args: []string{"waivers", "-A"}, width: 160},
		{name: "waivers-medium", args: []string{"waivers", "-A"}, width: 210},
		{name: "waivers-json", args: []string{"waivers", "-A", "-o", "json"}},
		{name: "waivers-tenant", args: []string{"waivers", "-n", "legacy"}, forbidModels: true, forbidWaivers: true},
		{name: "waivers-no-crd", args: []string{"waivers", "-n", "media"}, noWaiverCRD: true},
		{name: "waivers-none", args: []string{"waivers", "-n", "shop"}},
		{name: "models", args: []string{"models"}},
		{name: "models-forbidden", args: []string{"models"}, forbidModels: true},
		{name: "explain", args: []string{"explain", "acme-postgres"}},
		{name: "explain-dutywaivers", args: []string{"explain", "acme-buckets"}},
		{name: "explain-not-found", args: []string{"explain", "acme-nope"}},
		{name: "explain-forbidden", args: []string{"explain", "acme-postgres"}, forbidModels: true},
		{name: "lint-against", args: []string{"lint", "testdata/models.yaml", "--against", "testdata/objects.yaml"}},
		{name: "lint-broken", args: []string{"lint", "testdata/broken.yaml", "testdata/models.yaml"}},
		{name: "lint-not-a-model", args: []string{"lint", "testdata/events.yaml", "testdata/missing.yaml"}},
		{name: "lint-json", args: []string{"lint", "testdata/broken.yaml", "-o", "json"}},
		{name: "bad-output", args: []string{"models", "-o", "wide"}},
		{name: "test", args: []string{"test", "testdata/tests.yaml"}},
		{name: "test-require-all-junit", args: []string{"test", "testdata/tests.yaml", "--require-all", "-o", "junit"}},
		{name: "test-json", args: []string{"test", "testdata/tests.yaml", "-o", "json"}},
		{name: "test-no-tests", args: []string{"test", "testdata/models.yaml"}},
		{name: "junit-not-for-show", args: []string{"show", "cluster/scratch-db", "-n", "legacy", "-o", "junit"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := loadFakeCluster(t)
			c.forbidModels, c.forbidWaivers, c.noWaiverCRD = tt.forbidModels, tt.forbidWaivers, tt.noWaiverCRD
			got := runCommandWidth(t, c, tt.color, tt.width, tt.args...)
			path := filepath.Join("testdata", tt.name+".golden")
			if *update {
				if err := os.WriteFile(path, []byte(got), 0o600); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test ./internal/plugin -update to create it)", err)
			}
			if got != string(want) {
				t.Errorf("output differs from %s (run go test ./internal/plugin -update and review the diff)\n--- got\n%s\n--- want\n%s", path, got, want)
			}
		})
	}
}

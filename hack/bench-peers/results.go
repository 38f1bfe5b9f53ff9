package main

import (
	"cmp"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
)

// Results is what `make bench-peers` reports.
type Results struct {
	N              int    `json:"n"`
	Namespaces     int    `json:"namespaces"`
	Concurrency    int    `json:"concurrency"`
	CPUs           int    `json:"cpus"`
	Started        string `json:"started"`
	KyvernoVersion string `json:"kyvernoVersion"`
	// LoadAvgBefore and LoadAvgAfter are /proc/loadavg's first three
	// fields when the run started and ended.
	LoadAvgBefore string      `json:"loadAvgBefore"`
	LoadAvgAfter  string      `json:"loadAvgAfter"`
	Contenders    []Contender `json:"contenders"`
}

// Contender is one contender's run on its own control plane.
type Contender struct {
	Name        string   `json:"name"`
	Description string   `json:"description"`
	Args        []string `json:"args,omitempty"`
	Converged   bool     `json:"converged"`
	Error       string   `json:"error,omitempty"`
	// Seconds is from the models or policies being created (the plain
	// client's first write) to the last workload carrying what it must,
	// seen by a watch; Ratio is Seconds over the plain client's.
	Seconds float64 `json:"seconds"`
	Ratio   float64 `json:"ratioToPlain"`
	// ClientSeconds is the plain client's own time for its pass.
	ClientSeconds float64 `json:"clientSeconds,omitempty"`
	// The API server's requests from the contender's start to the end of
	// the settling period, per workload: every write, the writes to the
	// workloads, the reads (GET, LIST, WATCH), and each by "VERB resource".
	WritesPerObject       float64            `json:"writesPerObject"`
	TargetWritesPerObject float64            `json:"targetWritesPerObject"`
	ReadsPerObject        float64            `json:"readsPerObject"`
	WritesByResource      map[string]float64 `json:"writesPerObjectByResource"`
	ReadsByResource       map[string]float64 `json:"readsPerObjectByResource"`
	// LeftBehind is the change of every resource's object count.
	LeftBehind map[string]int `json:"leftBehind"`
	// PeakRSSMiB is the controller's VmHWM (0 for the plain client);
	// ControllerCPUSeconds its CPU time from its start (the plain client's:
	// this program's, with its watch); ServerCPUSeconds and EtcdCPUSeconds
	// the API server's and etcd's over the same window as the requests.
	PeakRSSMiB           float64 `json:"peakRSSMiB"`
	ControllerCPUSeconds float64 `json:"controllerCPUSeconds"`
	ServerCPUSeconds     float64 `json:"serverCPUSeconds"`
	EtcdCPUSeconds       float64 `json:"etcdCPUSeconds"`
}

// printTable prints the contenders side by side, one column each.
func printTable(r *Results) {
	fmt.Printf("\nbench-peers: %d workloads (3 kinds, %d namespaces), %d CPUs, Kyverno %s; load average %s before, %s after\n\n",
		r.N, r.Namespaces, r.CPUs, r.KyvernoVersion, r.LoadAvgBefore, r.LoadAvgAfter)
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	row := func(label string, f func(c Contender) string) {
		cells := make([]string, 0, 1+len(r.Contenders))
		cells = append(cells, label)
		for _, c := range r.Contenders {
			cells = append(cells, f(c))
		}
		_, _ = fmt.Fprintln(tw, strings.Join(cells, "\t"))
	}
	row("", func(c Contender) string { return c.Name })
	row("converge (s)", func(c Contender) string {
		if !c.Converged {
			return "did not"
		}
		return fmt.Sprintf("%.1f", c.Seconds)
	})
	row("× plain client", func(c Contender) string {
		if c.Ratio == 0 {
			return "-"
		}
		return fmt.Sprintf("%.2f", c.Ratio)
	})
	row("API writes / workload", func(c Contender) string { return fmt.Sprintf("%.2f", c.WritesPerObject) })
	row("  to the workloads", func(c Contender) string { return fmt.Sprintf("%.2f", c.TargetWritesPerObject) })
	for _, k := range keysOf(r, func(c Contender) map[string]float64 { return c.WritesByResource }, 0.005) {
		row("  "+k, func(c Contender) string { return fmt.Sprintf("%.2f", c.WritesByResource[k]) })
	}
	row("API reads / workload", func(c Contender) string { return fmt.Sprintf("%.2f", c.ReadsPerObject) })
	for _, k := range keysOf(r, func(c Contender) map[string]float64 { return c.ReadsByResource }, 0.05) {
		row("  "+k, func(c Contender) string { return fmt.Sprintf("%.2f", c.ReadsByResource[k]) })
	}
	leftKeys := map[string]bool{}
	for _, c := range r.Contenders {
		for k := range c.LeftBehind {
			leftKeys[k] = true
		}
	}
	row("objects left behind", func(Contender) string { return "" })
	for _, k := range slices.Sorted(maps.Keys(leftKeys)) {
		row("  "+k, func(c Contender) string { return fmt.Sprint(c.LeftBehind[k]) })
	}
	row("peak RSS (MiB)", func(c Contender) string {
		if c.PeakRSSMiB == 0 {
			return "-"
		}
		return fmt.Sprintf("%.0f", c.PeakRSSMiB)
	})
	row("CPU s: controller", func(c Contender) string { return fmt.Sprintf("%.1f", c.ControllerCPUSeconds) })
	row("CPU s: API server", func(c Contender) string { return fmt.Sprintf("%.1f", c.ServerCPUSeconds) })
	row("CPU s: etcd", func(c Contender) string { return fmt.Sprintf("%.1f", c.EtcdCPUSeconds) })
	_ = tw.Flush()
	for _, c := range r.Contenders {
		if c.Error != "" {
			fmt.Printf("%s: %s\n", c.Name, c.Error)
		}
	}
}

// keysOf returns the keys any contender has above min, the largest first.
func keysOf(r *Results, m func(Contender) map[string]float64, min float64) []string {
	most := map[string]float64{}
	for _, c := range r.Contenders {
		for k, v := range m(c) {
			most[k] = max(most[k], v)
		}
	}
	var keys []string
	for k, v := range most {
		if v >= min {
			keys = append(keys, k)
		}
	}
	slices.SortFunc(keys, func(a, b string) int { return cmp.Or(cmp.Compare(most[b], most[a]), cmp.Compare(a, b)) })
	return keys
}

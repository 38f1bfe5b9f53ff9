package main

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"syscall"
	"time"

	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/responsibility-operator/responsibility-operator/internal/devcluster"
)

// apiWrites are write requests the API server counted.
type apiWrites struct {
	// targets are writes to the workloads' resources, events creations of
	// Events, all every write request (models, reports, leases too).
	targets, events, all float64
	// applies and applySeconds are the number and the total server-side
	// duration of the applies to the workloads' resources.
	applies, applySeconds float64
	// cpuSeconds is the CPU time the API server process has used,
	// etcdCPUSeconds etcd's, operatorCPUSeconds the operator's (0 when it
	// does not run).
	cpuSeconds, etcdCPUSeconds, operatorCPUSeconds float64
	// reads are GET, LIST and WATCH requests of any resource.
	reads float64
	// byResource counts write requests by verb and resource ("PATCH
	// responsibilitymodels").
	byResource map[string]float64
}

func (a apiWrites) sub(o apiWrites) apiWrites {
	out := apiWrites{targets: a.targets - o.targets, events: a.events - o.events, all: a.all - o.all,
		applies: a.applies - o.applies, applySeconds: a.applySeconds - o.applySeconds, cpuSeconds: a.cpuSeconds - o.cpuSeconds, etcdCPUSeconds: a.etcdCPUSeconds - o.etcdCPUSeconds, operatorCPUSeconds: a.operatorCPUSeconds - o.operatorCPUSeconds, reads: a.reads - o.reads,
		byResource: map[string]float64{}}
	for k, v := range a.byResource {
		if d := v - o.byResource[k]; d != 0 {
			out.byResource[k] = d
		}
	}
	return out
}

// others are the write counts by verb and resource other than the
// workloads' and Events, most first.
func (a apiWrites) others(targets map[schema.GroupVersionResource]schema.GroupVersionKind) string {
	skip := map[string]bool{"events": true}
	for gvr := range targets {
		skip[gvr.Resource] = true
	}
	var keys []string
	for k := range a.byResource {
		if _, resource, _ := strings.Cut(k, " "); !skip[resource] {
			keys = append(keys, k)
		}
	}
	slices.SortFunc(keys, func(x, y string) int { return cmp.Compare(a.byResource[y], a.byResource[x]) })
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s %.0f", k, a.byResource[k]))
	}
	return strings.Join(parts, ", ")
}

// meanApplyMs is the API server's mean time to serve an apply to a workload.
func (a apiWrites) meanApplyMs() float64 {
	if a.applies == 0 {
		return 0
	}
	return 1000 * a.applySeconds / a.applies
}

var writeVerbs = []string{"POST", "PUT", "PATCH", "APPLY", "DELETE"}

// apiWrites reads the API server's own request counters.
func (b *bench) apiWrites(ctx context.Context) (apiWrites, error) {
	raw, err := b.raw.Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		return apiWrites{}, fmt.Errorf("scrape the API server's metrics: %w", err)
	}
	f, err := devcluster.ParseMetrics(raw)
	if err != nil {
		return apiWrites{}, err
	}
	out := apiWrites{byResource: map[string]float64{}}
	for _, verb := range writeVerbs {
		out.all += f.Sum("apiserver_request_total", map[string]string{"verb": verb})
		maps.Copy(out.byResource, f.SumBy("apiserver_request_total", map[string]string{"verb": verb}, "verb", "resource"))
	}
	for gvr := range b.gvrs {
		for _, verb := range writeVerbs {
			out.targets += f.Sum("apiserver_request_total", map[string]string{"group": gvr.Group, "resource": gvr.Resource, "verb": verb})
		}
		sum, count := f.Observed("apiserver_request_duration_seconds", map[string]string{"group": gvr.Group, "resource": gvr.Resource, "verb": "APPLY"})
		out.applySeconds += sum
		out.applies += count
	}
	out.cpuSeconds = f.Sum("process_cpu_seconds_total", nil)
	if out.etcdCPUSeconds, err = b.cluster.EtcdCPUSeconds(ctx); err != nil {
		return apiWrites{}, err
	}
	if b.operator != nil {
		if of, err := b.operator.Metrics(ctx); err == nil {
			out.operatorCPUSeconds = of.Sum("process_cpu_seconds_total", nil)
		}
	}
	for _, verb := range []string{"GET", "LIST", "WATCH"} {
		out.reads += f.Sum("apiserver_request_total", map[string]string{"verb": verb})
	}
	out.events = f.Sum("apiserver_request_total", map[string]string{"group": "events.k8s.io", "resource": "events", "verb": "POST"}) +
		f.Sum("apiserver_request_total", map[string]string{"group": "", "resource": "events", "verb": "POST"})
	return out, nil
}

// processCPUSeconds is the CPU time this process has used, user and system.
func processCPUSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/responsibility-operator/responsibility-operator/hack/bench/benchkit"
	"github.com/responsibility-operator/responsibility-operator/internal/devcluster"
)

// counters are the API server's request counts and the CPU time of the API
// server and etcd.
type counters struct {
	writes, targetWrites, reads float64
	// writesBy and readsBy count requests by "VERB resource".
	writesBy, readsBy  map[string]float64
	serverCPU, etcdCPU float64
}

func (a counters) sub(b counters) counters {
	out := counters{writes: a.writes - b.writes, targetWrites: a.targetWrites - b.targetWrites, reads: a.reads - b.reads,
		serverCPU: a.serverCPU - b.serverCPU, etcdCPU: a.etcdCPU - b.etcdCPU,
		writesBy: map[string]float64{}, readsBy: map[string]float64{}}
	for k, v := range a.writesBy {
		if d := v - b.writesBy[k]; d != 0 {
			out.writesBy[k] = d
		}
	}
	for k, v := range a.readsBy {
		if d := v - b.readsBy[k]; d != 0 {
			out.readsBy[k] = d
		}
	}
	return out
}

var (
	writeVerbs = []string{"POST", "PUT", "PATCH", "APPLY", "DELETE", "DELETECOLLECTION"}
	readVerbs  = []string{"GET", "LIST", "WATCH"}
)

// counters reads the API server's apiserver_request_total and
// process_cpu_seconds_total, and etcd's CPU time.
func (e *env) counters(ctx context.Context) (counters, error) {
	raw, err := e.raw.Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		return counters{}, fmt.Errorf("scrape the API server's metrics: %w", err)
	}
	f, err := devcluster.ParseMetrics(raw)
	if err != nil {
		return counters{}, err
	}
	out := counters{writesBy: map[string]float64{}, readsBy: map[string]float64{}}
	for _, verb := range writeVerbs {
		for k, v := range f.SumBy("apiserver_request_total", map[string]string{"verb": verb}, "verb", "resource") {
			out.writesBy[k] += v
			out.writes += v
		}
		for gvr := range e.gvrs {
			out.targetWrites += f.Sum("apiserver_request_total", map[string]string{"group": gvr.Group, "resource": gvr.Resource, "verb": verb})
		}
	}
	for _, verb := range readVerbs {
		for k, v := range f.SumBy("apiserver_request_total", map[string]string{"verb": verb}, "verb", "resource") {
			out.readsBy[k] += v
			out.reads += v
		}
	}
	out.serverCPU = f.Sum("process_cpu_seconds_total", nil)
	if out.etcdCPU, err = e.cluster.EtcdCPUSeconds(ctx); err != nil {
		return counters{}, err
	}
	return out, nil
}

// objectCounts counts the objects of every listable resource the server
// serves (its preferred version), by "resource.group".
func (e *env) objectCounts(ctx context.Context) (map[string]int, error) {
	gvrs, err := benchkit.ListableResources(e.disc)
	if err != nil {
		return nil, err
	}
	out := map[string]int{}
	for _, gvr := range gvrs {
		n, cont := 0, ""
		for {
			list, err := e.meta.Resource(gvr).List(ctx, metav1.ListOptions{Limit: 1000, Continue: cont})
			if err != nil {
				return nil, fmt.Errorf("list %s: %w", gvr, err)
			}
			n += len(list.Items)
			if cont = list.GetContinue(); cont == "" {
				break
			}
		}
		key := gvr.Resource
		if gvr.Group != "" {
			key += "." + gvr.Group
		}
		out[key] = n
	}
	return out, nil
}

func perObject(m map[string]float64, n float64) map[string]float64 {
	out := make(map[string]float64, len(m))
	for k, v := range m {
		out[k] = v / n
	}
	return out
}

// clockTicks is the kernel's USER_HZ, the unit of /proc/<pid>/stat's times
// (100 on every Linux architecture Go supports).
const clockTicks = 100

// procCPUSeconds is a process's user and system CPU time (/proc/<pid>/stat).
func procCPUSeconds(pid int) (float64, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("read process stat: %w", err)
	}
	s := string(raw)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("unexpected /proc/%d/stat", pid)
	}
	f := strings.Fields(s[i+1:])
	// After the command: state is field 3 of stat(5), utime 14, stime 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("unexpected /proc/%d/stat", pid)
	}
	utime, err1 := strconv.ParseFloat(f[11], 64)
	stime, err2 := strconv.ParseFloat(f[12], 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("parse /proc/%d/stat: %w", pid, errors.Join(err1, err2))
	}
	return (utime + stime) / clockTicks, nil
}

// procPeakRSS is a process's peak resident set size in bytes (VmHWM).
func procPeakRSS(pid int) (int64, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("read process status: %w", err)
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			f := strings.Fields(rest)
			if len(f) != 2 || f[1] != "kB" {
				return 0, fmt.Errorf("unexpected VmHWM line %q", line)
			}
			kb, err := strconv.ParseInt(f[0], 10, 64)
			if err != nil {
				return 0, fmt.Errorf("parse VmHWM: %w", err)
			}
			return kb * 1024, nil
		}
	}
	return 0, fmt.Errorf("no VmHWM in /proc/%d/status", pid)
}

// processCPUSeconds is the CPU time this process has used, user and system.
func processCPUSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// cpuSplit runs the control plane and the clients on separate CPUs, as in
// a cluster, where a controller runs on a worker node and not on the API
// server's: kube-apiserver and etcd on the first half of the CPUs, the
// benchmark (its plain client and its watch) and the operator on the rest.
// Without it the operator's own CPU is taken from the server it is compared
// against, on a machine of two cores a tenth of the server's.
//
// It uses two cpuset cgroups (v1 or v2; it needs root). The control plane
// is started while this process is in the first, so kube-apiserver and etcd
// start there (and size their Go runtime to its CPUs); this process then
// moves to the second, where every operator it starts runs.
type cpuSplit struct {
	// controlPlane and clients are the groups' directories.
	controlPlane, clients string
	// root is the group this process came from, the groups' parent.
	root string
	// cpus of each group, as written to its cpuset.cpus ("0", "2,3").
	controlPlaneCPUs, clientCPUs string
}

// newCPUSplit creates the two groups. It returns a clear error where the
// machine cannot: no cpuset controller, no root, a single CPU.
func newCPUSplit() (*cpuSplit, error) {
	base, v2, err := cpusetHierarchy()
	if err != nil {
		return nil, err
	}
	raw, err := os.ReadFile(filepath.Join(base, cpusetFile(v2, "cpus")))
	if err != nil {
		return nil, fmt.Errorf("-cpus-apart: read the CPUs this machine has: %w", err)
	}
	cpus, err := parseCPUList(strings.TrimSpace(string(raw)))
	if err != nil {
		return nil, fmt.Errorf("-cpus-apart: %w", err)
	}
	if len(cpus) < 2 {
		return nil, fmt.Errorf("-cpus-apart needs at least 2 CPUs, the cpuset has %d", len(cpus))
	}
	half := len(cpus) / 2
	s := &cpuSplit{
		root:             base,
		controlPlaneCPUs: formatCPUList(cpus[:half]),
		clientCPUs:       formatCPUList(cpus[half:]),
	}
	id := strconv.Itoa(os.Getpid())
	s.controlPlane = filepath.Join(base, "responsibility-bench-"+id+"-control-plane")
	s.clients = filepath.Join(base, "responsibility-bench-"+id+"-clients")
	for _, g := range []struct{ dir, cpus string }{{s.controlPlane, s.controlPlaneCPUs}, {s.clients, s.clientCPUs}} {
		if err := os.Mkdir(g.dir, 0o755); err != nil {
			s.remove()
			return nil, fmt.Errorf("-cpus-apart: create the cgroup %s (it needs root): %w", g.dir, err)
		}
		if !v2 {
			// A v1 cpuset takes no task until its memory nodes are set.
			mems, err := os.ReadFile(filepath.Join(base, "cpuset.mems"))
			if err == nil {
				err = os.WriteFile(filepath.Join(g.dir, "cpuset.mems"), mems, 0o644)
			}
			if err != nil {
				s.remove()
				return nil, fmt.Errorf("-cpus-apart: set the memory nodes of %s: %w", g.dir, err)
			}
		}
		if err := os.WriteFile(filepath.Join(g.dir, "cpuset.cpus"), []byte(g.cpus), 0o644); err != nil {
			s.remove()
			return nil, fmt.Errorf("-cpus-apart: give %s the CPUs %s: %w", g.dir, g.cpus, err)
		}
	}
	return s, nil
}

// cpusetHierarchy finds where the groups are made: under the cpuset group
// this process is in (the root, or a container's own), in the v1 cpuset
// hierarchy, or in the v2 one with the cpuset controller enabled for its
// children.
func cpusetHierarchy() (dir string, v2 bool, err error) {
	const v1 = "/sys/fs/cgroup/cpuset"
	if _, err := os.Stat(filepath.Join(v1, "cpuset.cpus")); err == nil {
		own, err := ownGroup(false)
		if err != nil {
			return "", false, err
		}
		return filepath.Join(v1, own), false, nil
	}
	const unified = "/sys/fs/cgroup"
	controllers, err := os.ReadFile(filepath.Join(unified, "cgroup.controllers"))
	if err != nil || !slices.Contains(strings.Fields(string(controllers)), "cpuset") {
		return "", false, errors.New("-cpus-apart: this machine has no cpuset cgroup controller (neither /sys/fs/cgroup/cpuset nor cpuset in /sys/fs/cgroup/cgroup.controllers)")
	}
	own, err := ownGroup(true)
	if err != nil {
		return "", false, err
	}
	dir = filepath.Join(unified, own)
	if err := os.WriteFile(filepath.Join(dir, "cgroup.subtree_control"), []byte("+cpuset"), 0o644); err != nil {
		return "", false, fmt.Errorf("-cpus-apart: enable the cpuset controller for the groups under %s (it needs root, and a v2 group other than the root may not both hold processes and delegate): %w", dir, err)
	}
	return dir, true, nil
}

// ownGroup is the path of this process's cpuset group (v1) or cgroup (v2)
// in its hierarchy, from /proc/self/cgroup.
func ownGroup(v2 bool) (string, error) {
	raw, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return "", fmt.Errorf("-cpus-apart: read this process's cgroups: %w", err)
	}
	return groupIn(string(raw), v2)
}

// groupIn finds the cpuset group (v1) or the cgroup (v2) in a
// /proc/PID/cgroup.
func groupIn(procCgroup string, v2 bool) (string, error) {
	for line := range strings.SplitSeq(strings.TrimSpace(procCgroup), "\n") {
		// hierarchy-ID:controllers:path
		fields := strings.SplitN(line, ":", 3)
		if len(fields) != 3 {
			continue
		}
		if (v2 && fields[0] == "0" && fields[1] == "") || (!v2 && slices.Contains(strings.Split(fields[1], ","), "cpuset")) {
			return fields[2], nil
		}
	}
	return "", errors.New("-cpus-apart: /proc/self/cgroup names no cpuset group of this process")
}

// cpusetFile is the name of the cpuset file that lists what a group may
// use: the root of a v2 hierarchy has only the effective list.
func cpusetFile(v2 bool, what string) string {
	if v2 {
		return "cpuset." + what + ".effective"
	}
	return "cpuset." + what
}

// enter moves this process (every thread of it) into a group.
func (s *cpuSplit) enter(dir string) error {
	if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		return fmt.Errorf("-cpus-apart: move the benchmark into %s: %w", dir, err)
	}
	return nil
}

// remove moves this process back and deletes the groups; a group that
// still has a process (a control plane that did not stop) stays.
func (s *cpuSplit) remove() {
	_ = s.enter(s.root)
	for _, dir := range []string{s.controlPlane, s.clients} {
		if dir != "" {
			_ = os.Remove(dir)
		}
	}
}

func (s *cpuSplit) String() string {
	return fmt.Sprintf("control plane on CPU %s, benchmark and operator on CPU %s", s.controlPlaneCPUs, s.clientCPUs)
}

// parseCPUList reads a kernel CPU list such as "0-3,6".
func parseCPUList(list string) ([]int, error) {
	var cpus []int
	for part := range strings.SplitSeq(list, ",") {
		if part == "" {
			continue
		}
		lo, hi, isRange := strings.Cut(part, "-")
		first, err := strconv.Atoi(lo)
		if err != nil {
			return nil, fmt.Errorf("CPU list %q: %w", list, err)
		}
		last := first
		if isRange {
			if last, err = strconv.Atoi(hi); err != nil {
				return nil, fmt.Errorf("CPU list %q: %w", list, err)
			}
		}
		for c := first; c <= last; c++ {
			cpus = append(cpus, c)
		}
	}
	return cpus, nil
}

// formatCPUList writes CPUs as a comma-separated list, which every cpuset
// accepts.
func formatCPUList(cpus []int) string {
	parts := make([]string, len(cpus))
	for i, c := range cpus {
		parts[i] = strconv.Itoa(c)
	}
	return strings.Join(parts, ",")
}

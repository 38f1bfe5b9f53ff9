// Package memlimit sets the Go runtime's memory knobs: the soft memory limit
// from the container's memory limit, so that the heap is collected harder as
// it nears the limit instead of growing to twice the live heap and being
// killed, and the collector's target percentage (SetGCPercent).
package memlimit

import (
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
)

// Files of the container's memory limit, relative to the cgroup file
// system's root: cgroup v2 first, then v1.
const (
	cgroupV2Max = "memory.max"
	cgroupV1Max = "memory/memory.limit_in_bytes"
)

// unlimitedV1 is the smallest value cgroup v1 reports for "no limit" (the
// largest page-aligned int64; anything at or above it is unlimited).
const unlimitedV1 = math.MaxInt64 &^ (1<<12 - 1)

// Result says which soft limit the runtime has and where it came from.
type Result struct {
	// Limit is the soft limit in bytes; 0 when none was set.
	Limit int64
	// Container is the container's limit it was derived from, 0 if none.
	Container int64
	// Source is "GOMEMLIMIT", "cgroup" or "none".
	Source string
}

// Set gives the runtime a soft memory limit of ratio × the container's
// memory limit, read from the cgroup files in cgroupFS (os.DirFS
// "/sys/fs/cgroup" in a pod). It leaves the limit alone when GOMEMLIMIT is
// set in the environment (the runtime has already applied it), when ratio
// is 0, and when the container has no limit. The remaining (1 - ratio) of
// the container's limit is for what the runtime does not count: the
// binary's mapped text and C libraries.
func Set(cgroupFS fs.FS, ratio float64) (Result, error) {
	if v, ok := os.LookupEnv("GOMEMLIMIT"); ok && v != "" {
		return Result{Limit: debug.SetMemoryLimit(-1), Source: "GOMEMLIMIT"}, nil
	}
	if ratio == 0 {
		return Result{Source: "none"}, nil
	}
	if err := CheckRatio(ratio); err != nil {
		return Result{}, err
	}
	container, err := ContainerLimit(cgroupFS)
	if err != nil || container == 0 {
		return Result{Source: "none"}, err
	}
	limit := int64(float64(container) * ratio)
	debug.SetMemoryLimit(limit)
	return Result{Limit: limit, Container: container, Source: "cgroup"}, nil
}

// CheckRatio refuses a ratio that is not a fraction between 0 and 1 (NaN
// included: every comparison with it is false).
func CheckRatio(ratio float64) error {
	if math.IsNaN(ratio) || ratio < 0 || ratio > 1 {
		return fmt.Errorf("memory limit ratio %v: want a fraction between 0 and 1", ratio)
	}
	return nil
}

// ContainerLimit reads the memory limit of the cgroup the process runs in,
// v2 first, then v1. It returns 0 when there is no cgroup file system or
// no limit.
func ContainerLimit(cgroupFS fs.FS) (int64, error) {
	for _, name := range []string{cgroupV2Max, cgroupV1Max} {
		b, err := fs.ReadFile(cgroupFS, name)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("read cgroup memory limit %s: %w", name, err)
		}
		s := strings.TrimSpace(string(b))
		if s == "max" {
			return 0, nil
		}
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n <= 0 {
			return 0, fmt.Errorf("cgroup memory limit %s: %q is not a number of bytes", name, s)
		}
		if n >= unlimitedV1 {
			return 0, nil
		}
		return n, nil
	}
	return 0, nil
}

// GC says what the garbage collector's target percentage is and where it
// came from.
type GC struct {
	// Percent is how much the heap may grow, as a percentage of the live
	// heap, between collections; -1 when GOGC=off.
	Percent int
	// Source is "GOGC" or "flag".
	Source string
}

// SetGCPercent sets the collector's target percentage, unless GOGC is set
// in the environment (the runtime has already applied it). Go's default,
// 100, lets the heap grow to twice the live heap between collections; an
// operator's live heap is mostly its cache, long-lived and growing with the
// cluster, so a lower target holds its peak memory closer to the cache
// itself.
func SetGCPercent(percent int) (GC, error) {
	if v, ok := os.LookupEnv("GOGC"); ok && v != "" {
		current := debug.SetGCPercent(100)
		debug.SetGCPercent(current)
		return GC{Percent: current, Source: "GOGC"}, nil
	}
	if percent <= 0 {
		return GC{}, fmt.Errorf("GC percent %d: want a positive percentage (Go's default is 100)", percent)
	}
	debug.SetGCPercent(percent)
	return GC{Percent: percent, Source: "flag"}, nil
}

package memlimit

import (
	"math"
	"runtime/debug"
	"testing"
	"testing/fstest"
)

func TestContainerLimit(t *testing.T) {
	for _, tc := range []struct {
		name    string
		files   fstest.MapFS
		want    int64
		wantErr bool
	}{
		{name: "no cgroup file system", files: fstest.MapFS{}},
		{name: "v2 limit", files: fstest.MapFS{"memory.max": {Data: []byte("536870912\n")}}, want: 512 << 20},
		{name: "v2 unlimited", files: fstest.MapFS{"memory.max": {Data: []byte("max\n")}}},
		{name: "v1 limit", files: fstest.MapFS{"memory/memory.limit_in_bytes": {Data: []byte("268435456\n")}}, want: 256 << 20},
		{name: "v1 unlimited", files: fstest.MapFS{"memory/memory.limit_in_bytes": {Data: []byte("9223372036854771712\n")}}},
		{name: "v2 wins over v1", files: fstest.MapFS{
			"memory.max":                   {Data: []byte("1073741824")},
			"memory/memory.limit_in_bytes": {Data: []byte("268435456")},
		}, want: 1 << 30},
		{name: "garbage", files: fstest.MapFS{"memory.max": {Data: []byte("lots")}}, wantErr: true},
		{name: "negative", files: fstest.MapFS{"memory.max": {Data: []byte("-1")}}, wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ContainerLimit(tc.files)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, want error %v", err, tc.wantErr)
			}
			if got != tc.want {
				t.Errorf("limit = %d, want %d", got, tc.want)
			}
		})
	}
}

func TestSet(t *testing.T) {
	before := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(before) })
	limited := fstest.MapFS{"memory.max": {Data: []byte("536870912")}}

	for _, tc := range []struct {
		name       string
		env        string
		files      fstest.MapFS
		ratio      float64
		wantSource string
		wantLimit  int64 // the runtime's limit afterwards
		wantErr    bool
	}{
		{name: "from the cgroup", files: limited, ratio: 0.75, wantSource: "cgroup", wantLimit: 384 << 20},
		{name: "GOMEMLIMIT wins", env: "100MiB", files: limited, ratio: 0.75, wantSource: "GOMEMLIMIT", wantLimit: math.MaxInt64},
		{name: "ratio 0 disables", files: limited, ratio: 0, wantSource: "none", wantLimit: math.MaxInt64},
		{name: "no limit", files: fstest.MapFS{"memory.max": {Data: []byte("max")}}, ratio: 0.9, wantSource: "none", wantLimit: math.MaxInt64},
		{name: "ratio above 1", files: limited, ratio: 1.5, wantErr: true, wantLimit: math.MaxInt64},
		{name: "ratio NaN", files: limited, ratio: math.NaN(), wantErr: true, wantLimit: math.MaxInt64},
		{name: "unreadable limit", files: fstest.MapFS{"memory.max": {Data: []byte("x")}}, ratio: 0.9, wantErr: true, wantLimit: math.MaxInt64},
	} {
		t.Run(tc.name, func(t *testing.T) {
			debug.SetMemoryLimit(math.MaxInt64)
			// GOMEMLIMIT is read by the runtime at start; here only Set's
			// choice is tested, so the runtime's limit stays as it was.
			t.Setenv("GOMEMLIMIT", tc.env)
			got, err := Set(tc.files, tc.ratio)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, want error %v", err, tc.wantErr)
			}
			if !tc.wantErr && got.Source != tc.wantSource {
				t.Errorf("source = %q, want %q", got.Source, tc.wantSource)
			}
			if l := debug.SetMemoryLimit(-1); l != tc.wantLimit {
				t.Errorf("runtime limit = %d, want %d", l, tc.wantLimit)
			}
		})
	}
}

func TestSetGCPercent(t *testing.T) {
	before := debug.SetGCPercent(100)
	t.Cleanup(func() { debug.SetGCPercent(before) })

	t.Setenv("GOGC", "")
	got, err := SetGCPercent(50)
	if err != nil || got != (GC{Percent: 50, Source: "flag"}) {
		t.Fatalf("SetGCPercent(50) = %+v, %v", got, err)
	}
	if p := debug.SetGCPercent(50); p != 50 {
		t.Errorf("the runtime's percentage is %d, want 50", p)
	}
	for _, bad := range []int{0, -1} {
		if _, err := SetGCPercent(bad); err == nil {
			t.Errorf("SetGCPercent(%d) accepted", bad)
		}
	}
	if p := debug.SetGCPercent(50); p != 50 {
		t.Errorf("a refused percentage changed the runtime's to %d", p)
	}

	// The runtime read GOGC when the process started; set now, it only
	// makes SetGCPercent leave the percentage alone.
	t.Setenv("GOGC", "70")
	debug.SetGCPercent(80)
	got, err = SetGCPercent(50)
	if err != nil || got != (GC{Percent: 80, Source: "GOGC"}) {
		t.Errorf("with GOGC set, SetGCPercent(50) = %+v, %v; want the runtime's 80 left alone", got, err)
	}
	if p := debug.SetGCPercent(80); p != 80 {
		t.Errorf("with GOGC set, the runtime's percentage became %d", p)
	}
}

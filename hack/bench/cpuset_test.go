package main

import (
	"slices"
	"testing"
)

func TestParseCPUList(t *testing.T) {
	for _, tc := range []struct {
		list string
		want []int
		err  bool
	}{
		{list: "0", want: []int{0}},
		{list: "0-1", want: []int{0, 1}},
		{list: "0-3,6,8-9", want: []int{0, 1, 2, 3, 6, 8, 9}},
		{list: "", want: nil},
		{list: "a", err: true},
		{list: "0-b", err: true},
	} {
		got, err := parseCPUList(tc.list)
		if (err != nil) != tc.err {
			t.Errorf("parseCPUList(%q) error = %v, want error %v", tc.list, err, tc.err)
			continue
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("parseCPUList(%q) = %v, want %v", tc.list, got, tc.want)
		}
		if !tc.err && len(got) > 0 {
			// What formatCPUList writes, a cpuset reads back the same.
			again, err := parseCPUList(formatCPUList(got))
			if err != nil || !slices.Equal(again, got) {
				t.Errorf("parseCPUList(formatCPUList(%v)) = %v, %v", got, again, err)
			}
		}
	}
}

func TestGroupIn(t *testing.T) {
	hybrid := "9:name=systemd:/\n4:memory:/process_api/c87f\n3:cpuset:/\n1:cpu:/\n0::/\n"
	nested := "5:cpuset,cpu:/kubepods/pod1\n0::/ignored\n"
	unified := "0::/user.slice/session-1.scope\n"
	for _, tc := range []struct {
		in   string
		v2   bool
		want string
		err  bool
	}{
		{in: hybrid, want: "/"},
		{in: hybrid, v2: true, want: "/"},
		{in: nested, want: "/kubepods/pod1"},
		{in: unified, v2: true, want: "/user.slice/session-1.scope"},
		{in: unified, err: true},
		{in: "", v2: true, err: true},
	} {
		got, err := groupIn(tc.in, tc.v2)
		if (err != nil) != tc.err || got != tc.want {
			t.Errorf("groupIn(%q, v2=%v) = %q, %v; want %q, error %v", tc.in, tc.v2, got, err, tc.want, tc.err)
		}
	}
}

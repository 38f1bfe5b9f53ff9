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

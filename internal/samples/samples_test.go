package samples

import (
	"reflect"
	"testing"
	"time"
)

func TestShift(t *testing.T) {
	d := 36*time.Hour + 5*time.Second
	cases := []struct {
		name     string
		obj, out map[string]any
	}{{
		name: "times in status move, other strings stay",
		obj: map[string]any{
			"metadata": map[string]any{"creationTimestamp": "2025-12-31T22:00:00Z"},
			"spec":     map[string]any{"schedule": "0 0 * * *", "at": "2025-12-31T22:00:00Z"},
			"status": map[string]any{
				"phase":     "completed",
				"stoppedAt": "2025-12-31T22:00:00Z",
				"conditions": []any{map[string]any{
					"type": "Ready", "lastTransitionTime": "2025-12-31T20:00:00.396588Z", "message": "ok",
				}},
				"notAfter": "2026-03-01T00:00:00+01:00",
				"ready":    true,
				"count":    int64(2),
			},
		},
		out: map[string]any{
			"metadata": map[string]any{"creationTimestamp": "2025-12-31T22:00:00Z"},
			"spec":     map[string]any{"schedule": "0 0 * * *", "at": "2025-12-31T22:00:00Z"},
			"status": map[string]any{
				"phase":     "completed",
				"stoppedAt": "2026-01-02T10:00:05Z",
				"conditions": []any{map[string]any{
					"type": "Ready", "lastTransitionTime": "2026-01-02T08:00:05.396588Z", "message": "ok",
				}},
				"notAfter": "2026-03-02T11:00:05Z",
				"ready":    true,
				"count":    int64(2),
			},
		},
	}, {
		name: "no status",
		obj:  map[string]any{"spec": map[string]any{"at": "2025-12-31T22:00:00Z"}},
		out:  map[string]any{"spec": map[string]any{"at": "2025-12-31T22:00:00Z"}},
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			Shift(tc.obj, d)
			if !reflect.DeepEqual(tc.obj, tc.out) {
				t.Errorf("got  %v\nwant %v", tc.obj, tc.out)
			}
		})
	}
}

// TestLoadAtEpoch: at the sample epoch the samples are as the files say.
func TestLoadAtEpoch(t *testing.T) {
	at, err := LoadAt("../..", Epoch)
	if err != nil {
		t.Fatal(err)
	}
	files, err := ReadDir("../../config/samples/workloads")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != len(at.Objects) {
		t.Fatalf("%d objects, want %d", len(at.Objects), len(files))
	}
	for i := range files {
		if !reflect.DeepEqual(files[i].Object, at.Objects[i].Object) {
			t.Errorf("%s: %s %s changed at the epoch", files[i].File, files[i].GetKind(), files[i].GetName())
		}
	}
}

package plugin

import (
	"encoding/json"
	"runtime"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/responsibility-operator/responsibility-operator/internal/version"
)

// TestVersion runs version as a release build would: with the version linked
// in. The plain form is the version alone, for scripts; -o json and -o yaml
// carry the Go version and platform too.
func TestVersion(t *testing.T) {
	saved := version.Version
	version.Version = "v9.8.7"
	t.Cleanup(func() { version.Version = saved })
	want := VersionInfo{Version: "v9.8.7", GoVersion: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}

	if got := runCommand(t, nil, false, "version"); got != "$ kubectl responsibility version\nv9.8.7\n" {
		t.Errorf("plain:\n%s", got)
	}
	for _, format := range []string{outputJSON, outputYAML} {
		got := runCommand(t, nil, false, "version", "-o", format)
		out, ok := strings.CutPrefix(got, "$ kubectl responsibility version -o "+format+"\n")
		if !ok {
			t.Fatalf("-o %s:\n%s", format, got)
		}
		var info VersionInfo
		var err error
		if format == outputJSON {
			err = json.Unmarshal([]byte(out), &info)
		} else {
			err = yaml.UnmarshalStrict([]byte(out), &info)
		}
		if err != nil || info != want {
			t.Errorf("-o %s: %+v (%v), want %+v in:\n%s", format, info, err, want, got)
		}
	}
	for _, args := range [][]string{{"version", "extra"}, {"version", "-o", "junit"}} {
		if got := runCommand(t, nil, false, args...); !strings.Contains(got, "--- error\n") {
			t.Errorf("%q did not fail:\n%s", args, got)
		}
	}
}

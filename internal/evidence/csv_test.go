package evidence

import (
	"bytes"
	"encoding/csv"
	"reflect"
	"strings"
	"testing"
)

func TestWriteCSV(t *testing.T) {
	tricky := Snapshot{CollectedAt: testNow, Namespaces: []Namespace{{Name: "n", Objects: []Object{
		{APIVersion: "v1", Kind: "ConfigMap", Name: "c", Models: []string{"a", "b"}, Duties: []DutyState{}},
		{APIVersion: "v1", Kind: "Secret", Name: "s", Models: []string{"m"}, Duties: []DutyState{
			{Model: "m", Duty: "d", State: "Unmet", Message: "say \"no\", then\nstop"},
		}},
	}}}}
	tests := []struct {
		name string
		s    Snapshot
		want [][]string
	}{
		{"empty", Snapshot{CollectedAt: testNow}, [][]string{CSVHeader}},
		{"snapshot", testSnapshot(), [][]string{
			CSVHeader,
			{"legacy", "postgresql.cnpg.io/v1", "Cluster", "forged-db", "acme-postgres", "", "", "Unknown",
				"the annotation responsibility.io/duties is not the operator's JSON", "", "2026-08-01T12:00:00Z"},
			{"legacy", "postgresql.cnpg.io/v1", "Cluster", "scratch-db", "acme-postgres", "Backups", "backup-scheduled", "Unmet",
				"No active ScheduledBackup names cluster scratch-db", "", "2026-08-01T12:00:00Z"},
			{"legacy", "postgresql.cnpg.io/v1", "Cluster", "scratch-db", "acme-postgres", "Connection Security", "tls-enforced", "Waived",
				"waived: only reachable inside the namespace", "annotation", "2026-08-01T12:00:00Z"},
			{"media", "storage.acme.io/v1", "Bucket", "assets", "acme-buckets", "Data Protection", "public-access-blocked", "Waived",
				"waived by DutyWaiver public-assets until 2026-08-13T00:00:00Z", "public-assets", "2026-08-01T12:00:00Z"},
			{"media", "storage.acme.io/v1", "Bucket", "assets", "acme-buckets", "Data Protection", "versioning-enabled", "Unknown",
				"no such key: versioning", "", "2026-08-01T12:00:00Z"},
			{"media", "postgresql.cnpg.io/v1", "Cluster", "media-db", "acme-postgres", "Backups", "backup-scheduled", "Met",
				"", "", "2026-08-01T12:00:00Z"},
		}},
		{"quoting and objects without duties", tricky, [][]string{
			CSVHeader,
			{"n", "v1", "ConfigMap", "c", "a,b", "", "", "", "", "", "2026-08-01T12:00:00Z"},
			{"n", "v1", "Secret", "s", "m", "", "d", "Unmet", "say \"no\", then\nstop", "", "2026-08-01T12:00:00Z"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := WriteCSV(&buf, tt.s); err != nil {
				t.Fatal(err)
			}
			out := buf.String()
			got, err := csv.NewReader(strings.NewReader(out)).ReadAll()
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got\n%q\nwant\n%q", got, tt.want)
			}
			// RFC 4180: every record ends with CRLF.
			if !strings.HasSuffix(out, "\r\n") || strings.Count(out, "\r\n") < len(tt.want) {
				t.Errorf("records do not end with CRLF: %q", out)
			}
		})
	}
	var buf bytes.Buffer
	if err := WriteCSV(&buf, tricky); err != nil {
		t.Fatal(err)
	}
	if want := `"say ""no"", then` + "\r\nstop\""; !strings.Contains(buf.String(), want) {
		t.Errorf("the message is not quoted as RFC 4180 says: %q", buf.String())
	}
}

package evidence

import (
	"bytes"
	"encoding/csv"
	"fmt"
	"io"
	"strings"
)

// CSVHeader is the first record of WriteCSV.
var CSVHeader = []string{"namespace", "api-version", "kind", "name", "model", "area", "duty", "state", "message", "waiver", "collected-at"}

// WriteCSV writes the duty states of the Snapshot as CSV (RFC 4180: CRLF
// line ends, fields with a comma, quote or line end quoted): a header
// (CSVHeader), then one record per object and duty, in the Snapshot's
// order. area is the duty's area in its model (empty when the model could
// not be read); waiver is the DutyWaiver that waives the duty, or
// "annotation" for a waiver annotation; collected-at is the time of
// collection (RFC 3339). An object whose duties annotation cannot be read
// has one record, state Unknown, that says why; one without duties one
// record naming its models. Fields are written as they were read: a
// spreadsheet that evaluates formulas should open the file as text.
func WriteCSV(w io.Writer, s Snapshot) error {
	areas := map[[2]string]string{}
	for _, m := range s.Models {
		for _, a := range m.Areas {
			for _, d := range a.Duties {
				areas[[2]string{m.Name, d.Name}] = a.Name
			}
		}
	}
	collected := oscalTime(s.CollectedAt)
	var buf bytes.Buffer
	cw := csv.NewWriter(&buf)
	cw.UseCRLF = true
	records := [][]string{CSVHeader}
	for _, ns := range s.Namespaces {
		for _, o := range ns.Objects {
			object := []string{ns.Name, o.APIVersion, o.Kind, o.Name}
			switch {
			case o.Problem != "":
				records = append(records, concat(object, strings.Join(o.Models, ","), "", "", stateUnknown, o.Problem, "", collected))
			case len(o.Duties) == 0:
				records = append(records, concat(object, strings.Join(o.Models, ","), "", "", "", "", "", collected))
			}
			for _, d := range o.Duties {
				waiver := d.Waiver
				if waiver == "" && d.State == stateWaived {
					waiver = sourceAnnotation
				}
				records = append(records, concat(object, d.Model, areas[[2]string{d.Model, d.Duty}], d.Duty, d.State, d.Message, waiver, collected))
			}
		}
	}
	if err := cw.WriteAll(records); err != nil {
		return fmt.Errorf("encode the CSV: %w", err)
	}
	if _, err := w.Write(buf.Bytes()); err != nil {
		return fmt.Errorf("write the CSV: %w", err)
	}
	return nil
}

func concat(head []string, tail ...string) []string {
	return append(append(make([]string, 0, len(head)+len(tail)), head...), tail...)
}

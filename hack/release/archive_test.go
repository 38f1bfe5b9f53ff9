package main

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"testing"
)

var testFiles = []archiveFile{
	{Name: "kubectl-responsibility", Mode: 0o755, Data: []byte("#!/bin/sh\necho fake plugin\n")},
	{Name: "LICENSE", Mode: 0o644, Data: []byte("Apache License\n")},
}

// entry is what an archive says of one file.
type entry struct {
	Name   string
	Mode   fs.FileMode
	Data   string
	Time   int64
	Owners string
}

// TestArchives writes each format twice and reads it back: the same files
// give the same bytes, and every entry is a top-level regular file with its
// mode, at the fixed time, owned by root without names.
func TestArchives(t *testing.T) {
	for _, tt := range []struct {
		name  string
		write func(io.Writer, []archiveFile) error
		read  func(*testing.T, []byte) []entry
	}{
		{"tar.gz", writeTarGz, readTarGz},
		{"zip", writeZip, readZip},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var first, second bytes.Buffer
			if err := tt.write(&first, testFiles); err != nil {
				t.Fatal(err)
			}
			if err := tt.write(&second, testFiles); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(first.Bytes(), second.Bytes()) {
				t.Error("two archives of the same files differ")
			}
			got := tt.read(t, first.Bytes())
			if len(got) != len(testFiles) {
				t.Fatalf("%d entries, want %d: %+v", len(got), len(testFiles), got)
			}
			for i, f := range testFiles {
				want := entry{Name: f.Name, Mode: f.Mode, Data: string(f.Data), Time: archiveTime.Unix(), Owners: "0:0::"}
				if tt.name == "zip" {
					want.Owners = "" // zip records no owners
				}
				if got[i] != want {
					t.Errorf("entry %d: %+v, want %+v", i, got[i], want)
				}
			}
		})
	}
}

func readTarGz(t *testing.T, b []byte) []entry {
	t.Helper()
	gz, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	if gz.Name != "" || !gz.ModTime.IsZero() {
		t.Errorf("gzip header: name %q, time %v", gz.Name, gz.ModTime)
	}
	tr := tar.NewReader(gz)
	var out []entry
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Typeflag != tar.TypeReg || h.Format != tar.FormatUSTAR {
			t.Errorf("%s: type %c, format %v: want a regular file in USTAR", h.Name, h.Typeflag, h.Format)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, entry{Name: h.Name, Mode: fs.FileMode(h.Mode), Data: string(data), Time: h.ModTime.Unix(),
			Owners: fmt.Sprintf("%d:%d:%s:%s", h.Uid, h.Gid, h.Uname, h.Gname)})
	}
}

func readZip(t *testing.T, b []byte) []entry {
	t.Helper()
	zr, err := zip.NewReader(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	var out []entry
	for _, f := range zr.File {
		rc, err := f.Open()
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(rc)
		_ = rc.Close()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, entry{Name: f.Name, Mode: f.Mode(), Data: string(data), Time: f.Modified.Unix()})
	}
	return out
}

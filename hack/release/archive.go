package main

import (
	"archive/tar"
	"archive/zip"
	"compress/flate"
	"compress/gzip"
	"fmt"
	"io"
	"io/fs"
	"time"
)

// archiveTime is the modification time of every file in every archive. A
// fixed time, rather than the build's, makes the archive a function of its
// files; 1980-01-01 is the earliest time a zip (MS-DOS) date can hold.
var archiveTime = time.Date(1980, time.January, 1, 0, 0, 0, 0, time.UTC)

// archiveFile is one file of an archive: a name at the archive's top level,
// where krew's default files rule (from "*" to ".") finds it, its mode and
// its content.
type archiveFile struct {
	Name string
	Mode fs.FileMode
	Data []byte
}

// writeTarGz writes files as a gzip-compressed tar in the given order:
// regular files only (krew's extractor rejects other types), owned by uid
// and gid 0 without user or group names, at archiveTime, in the plain USTAR
// format (no PAX records to vary); the gzip header has no name and no time.
// Go's compressors are deterministic for a given Go version, so the bytes
// depend on the files alone.
func writeTarGz(w io.Writer, files []archiveFile) error {
	gz, err := gzip.NewWriterLevel(w, gzip.BestCompression)
	if err != nil {
		return fmt.Errorf("gzip: %w", err)
	}
	tw := tar.NewWriter(gz)
	for _, f := range files {
		hdr := &tar.Header{
			Typeflag: tar.TypeReg,
			Name:     f.Name,
			Mode:     int64(f.Mode.Perm()),
			Size:     int64(len(f.Data)),
			ModTime:  archiveTime,
			Format:   tar.FormatUSTAR,
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return fmt.Errorf("tar header of %s: %w", f.Name, err)
		}
		if _, err := tw.Write(f.Data); err != nil {
			return fmt.Errorf("tar %s: %w", f.Name, err)
		}
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("tar: %w", err)
	}
	if err := gz.Close(); err != nil {
		return fmt.Errorf("gzip: %w", err)
	}
	return nil
}

// writeZip writes files as a zip in the given order, deflated, at
// archiveTime, with Unix modes (krew applies the entry's mode when it
// extracts).
func writeZip(w io.Writer, files []archiveFile) error {
	zw := zip.NewWriter(w)
	zw.RegisterCompressor(zip.Deflate, func(out io.Writer) (io.WriteCloser, error) {
		return flate.NewWriter(out, flate.BestCompression)
	})
	for _, f := range files {
		hdr := &zip.FileHeader{Name: f.Name, Method: zip.Deflate, Modified: archiveTime}
		hdr.SetMode(f.Mode.Perm())
		fw, err := zw.CreateHeader(hdr)
		if err != nil {
			return fmt.Errorf("zip header of %s: %w", f.Name, err)
		}
		if _, err := fw.Write(f.Data); err != nil {
			return fmt.Errorf("zip %s: %w", f.Name, err)
		}
	}
	if err := zw.Close(); err != nil {
		return fmt.Errorf("zip: %w", err)
	}
	return nil
}

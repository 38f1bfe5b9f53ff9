package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// caCertsPath is where Go's crypto/x509 looks first on Linux, and where
// distroless has the bundle.
const caCertsPath = "/etc/ssl/certs/ca-certificates.crt"

// nonrootUID is distroless's nonroot user and group, which the Dockerfile
// and the manifests' runAsNonRoot run the manager as.
const nonrootUID = 65532

// passwd and group are distroless/static's accounts: root, nobody and
// nonroot 65532, whose home is /home/nonroot; none has a shell.
const (
	passwd = "root:x:0:0:root:/root:/sbin/nologin\n" +
		"nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n" +
		"nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n"
	group = "root:x:0:\n" +
		"nobody:x:65534:\n" +
		"nonroot:x:65532:\n"
)

// entry is one file or directory of a layer.
type entry struct {
	name     string
	mode     int64
	uid, gid int
	dir      bool
	data     []byte
}

// baseLayer is what distroless/static:nonroot gives the manager: CA
// certificates, the accounts, /tmp (1777, though the pod mounts what it
// writes: readOnlyRootFilesystem) and the homes of root and nonroot.
func baseLayer(caCerts []byte, caSource string, created time.Time) (v1.Layer, error) {
	entries := []entry{
		{name: "etc/", mode: 0o755, dir: true},
		{name: "etc/group", mode: 0o644, data: []byte(group)},
		{name: "etc/passwd", mode: 0o644, data: []byte(passwd)},
		{name: "etc/ssl/", mode: 0o755, dir: true},
		{name: "etc/ssl/certs/", mode: 0o755, dir: true},
		{name: strings.TrimPrefix(caCertsPath, "/"), mode: 0o644, data: caCerts},
		{name: "home/", mode: 0o755, dir: true},
		{name: "home/nonroot/", mode: 0o700, uid: nonrootUID, gid: nonrootUID, dir: true},
		{name: "root/", mode: 0o700, dir: true},
		{name: "tmp/", mode: 0o1777, dir: true},
	}
	l, err := layer(entries, created)
	if err != nil {
		return nil, fmt.Errorf("base layer (CA certificates from %s): %w", caSource, err)
	}
	return l, nil
}

// managerLayer holds the binary at /manager, root-owned and executable, as
// the Dockerfile's COPY leaves it.
func managerLayer(binary string, created time.Time) (v1.Layer, error) {
	data, err := os.ReadFile(binary)
	if err != nil {
		return nil, fmt.Errorf("read the manager binary: %w", err)
	}
	l, err := layer([]entry{{name: strings.TrimPrefix(binaryPath, "/"), mode: 0o755, data: data}}, created)
	if err != nil {
		return nil, fmt.Errorf("manager layer: %w", err)
	}
	return l, nil
}

// layer writes entries into a gzipped tar with fixed times, owners and no
// user or group names, so that the same inputs give the same digest, and
// wraps it as an OCI layer. The gzip header has no name and no time.
func layer(entries []entry, created time.Time) (v1.Layer, error) {
	var tarBuf bytes.Buffer
	tw := tar.NewWriter(&tarBuf)
	for _, e := range entries {
		h := &tar.Header{
			Name:    e.name,
			Mode:    e.mode,
			Uid:     e.uid,
			Gid:     e.gid,
			ModTime: created,
			Format:  tar.FormatPAX,
		}
		if e.dir {
			h.Typeflag = tar.TypeDir
		} else {
			h.Typeflag = tar.TypeReg
			h.Size = int64(len(e.data))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, fmt.Errorf("tar header of %s: %w", e.name, err)
		}
		if _, err := tw.Write(e.data); err != nil {
			return nil, fmt.Errorf("tar %s: %w", e.name, err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("close tar: %w", err)
	}
	var gzBuf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&gzBuf, gzip.DefaultCompression)
	if err != nil {
		return nil, fmt.Errorf("gzip: %w", err)
	}
	if _, err := zw.Write(tarBuf.Bytes()); err != nil {
		return nil, fmt.Errorf("gzip: %w", err)
	}
	if err := zw.Close(); err != nil {
		return nil, fmt.Errorf("gzip: %w", err)
	}
	compressed := gzBuf.Bytes()
	// Already gzipped: go-containerregistry serves these bytes as the blob
	// and gunzips them for the diff ID, instead of compressing again.
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(compressed)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, fmt.Errorf("layer: %w", err)
	}
	return l, nil
}

// caCertsSource says where the CA certificates came from, for a label: the
// build machine's file, its digest and, when dpkg knows it, the version of
// Debian's ca-certificates package that wrote it.
func caCertsSource(ctx context.Context, path string, data []byte) string {
	sum := sha256.Sum256(data)
	s := "build machine's " + path + " sha256:" + hex.EncodeToString(sum[:])
	out, err := exec.CommandContext(ctx, "dpkg-query", "-W", "-f=${Version}", "ca-certificates").Output()
	if v := strings.TrimSpace(string(out)); err == nil && v != "" {
		s += " (Debian ca-certificates " + v + ")"
	}
	return s
}

package devcluster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// StopAPIServer stops kube-apiserver and leaves etcd running, as a crashed or
// upgraded API server would. envtest's API server keeps its serving
// certificate, service-account keys and client CA in a temporary directory
// that its Stop removes; StopAPIServer copies that directory to keepDir
// first and points the API server at the copy, so that StartAPIServer brings
// it back on the same address with the same certificates: every kubeconfig
// of the cluster (the admin's, the operator's) stays valid. keepDir must be
// empty or absent; the caller removes it after the cluster stops.
func (c *Cluster) StopAPIServer(keepDir string) error {
	s := c.Env.ControlPlane.GetAPIServer()
	if s.CertDir == "" {
		return errors.New("the API server has no certificate directory: was it started?")
	}
	if err := copyDir(s.CertDir, keepDir); err != nil {
		return fmt.Errorf("keep the API server's certificates: %w", err)
	}
	if err := s.Stop(); err != nil {
		return fmt.Errorf("stop kube-apiserver: %w", err)
	}
	// Stop forgot the removed temporary directory; the next start reads the
	// copy (and, since it did not create it, leaves it in place on Stop).
	s.CertDir = keepDir
	return nil
}

// StartAPIServer starts a kube-apiserver stopped by StopAPIServer against the
// same etcd, and waits until it is healthy.
func (c *Cluster) StartAPIServer() error {
	if err := c.Env.ControlPlane.GetAPIServer().Start(); err != nil {
		return fmt.Errorf("restart kube-apiserver: %w", err)
	}
	return nil
}

// APIServerMetrics scrapes kube-apiserver's own /metrics (for example
// apiserver_request_total by verb and resource) with an admin client
// configuration.
func APIServerMetrics(ctx context.Context, cfg *rest.Config) (Families, error) {
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("client for the API server's metrics: %w", err)
	}
	raw, err := cs.RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		return nil, fmt.Errorf("scrape the API server's metrics: %w", err)
	}
	return ParseMetrics(raw)
}

// copyDir copies the regular files below src into dst (created 0700).
func copyDir(src, dst string) error {
	if err := os.MkdirAll(dst, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", dst, err)
	}
	err := filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return fmt.Errorf("relative path of %s: %w", path, err)
		}
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			if err := os.MkdirAll(target, 0o700); err != nil {
				return fmt.Errorf("create %s: %w", target, err)
			}
			return nil
		}
		if !d.Type().IsRegular() {
			return nil
		}
		raw, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("read %s: %w", path, err)
		}
		if err := os.WriteFile(target, raw, 0o600); err != nil {
			return fmt.Errorf("write %s: %w", target, err)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("copy %s to %s: %w", src, dst, err)
	}
	return nil
}

// EtcdCPUSeconds is the CPU time etcd has used, from the metrics on its
// client URL.
func (c *Cluster) EtcdCPUSeconds(ctx context.Context) (float64, error) {
	u := c.Env.ControlPlane.Etcd.URL
	if u == nil {
		return 0, errors.New("etcd's URL is not known")
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.JoinPath("metrics").String(), nil)
	if err != nil {
		return 0, fmt.Errorf("scrape etcd's metrics: %w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, fmt.Errorf("scrape etcd's metrics: %w", err)
	}
	defer func() { _ = resp.Body.Close() }()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, fmt.Errorf("read etcd's metrics: %w", err)
	}
	f, err := ParseMetrics(raw)
	if err != nil {
		return 0, err
	}
	return f.Sum("process_cpu_seconds_total", nil), nil
}

// CompactEtcd compacts etcd's history up to its current revision, as the
// API server does every five minutes (--etcd-compaction-interval), and
// returns once etcd has removed it (physical). A benchmark that turns the
// API server's own compaction off calls it between timed phases, so that a
// compaction never runs inside one.
func (c *Cluster) CompactEtcd(ctx context.Context) (int64, error) {
	u := c.Env.ControlPlane.Etcd.URL
	if u == nil {
		return 0, errors.New("etcd's URL is not known")
	}
	var current struct {
		Header struct {
			Revision int64 `json:"revision,string"`
		} `json:"header"`
	}
	// Any range answers with the store's revision; "/" counts nothing.
	if err := etcdCall(ctx, u.JoinPath("v3", "kv", "range").String(), map[string]any{"key": "Lw==", "count_only": true}, &current); err != nil {
		return 0, fmt.Errorf("read etcd's revision: %w", err)
	}
	rev := current.Header.Revision
	if err := etcdCall(ctx, u.JoinPath("v3", "kv", "compaction").String(), map[string]any{"revision": strconv.FormatInt(rev, 10), "physical": true}, nil); err != nil &&
		!strings.Contains(err.Error(), "has been compacted") {
		return 0, fmt.Errorf("compact etcd to revision %d: %w", rev, err)
	}
	return rev, nil
}

// etcdCall posts a request to etcd's JSON gateway and decodes its answer.
func etcdCall(ctx context.Context, url string, body, into any) error {
	raw, err := json.Marshal(body)
	if err != nil {
		return fmt.Errorf("encode the request to %s: %w", url, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(raw))
	if err != nil {
		return fmt.Errorf("request %s: %w", url, err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("post to %s: %w", url, err)
	}
	defer func() { _ = resp.Body.Close() }()
	answer, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("read the answer of %s: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s: %s", url, resp.Status, bytes.TrimSpace(answer))
	}
	if into == nil {
		return nil
	}
	if err := json.Unmarshal(answer, into); err != nil {
		return fmt.Errorf("decode the answer of %s: %w", url, err)
	}
	return nil
}

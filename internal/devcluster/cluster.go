package devcluster

import (
	"fmt"
	"os"
	"path/filepath"

	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// Cluster is a local control plane (kube-apiserver and etcd built by
// `make controlplane`) with the operator's CRD and the test CRDs of the
// catalog's kinds installed, and an admin kubeconfig on disk.
type Cluster struct {
	Env *envtest.Environment
	// Config is the admin client configuration.
	Config *rest.Config
	// Kubeconfig is the path of an admin kubeconfig for kubectl and the operator.
	Kubeconfig string
}

// ClusterOptions say what a local control plane needs.
type ClusterOptions struct {
	// Root is the repository root.
	Root string
	// Assets is the directory with kube-apiserver, etcd and kubectl.
	Assets string
	// Dir receives the kubeconfig.
	Dir string
	// Webhook serves the operator's validating webhook (the operator must
	// then run with the webhook enabled, see OperatorOptions.Webhook).
	Webhook bool
	// APIServerArgs are extra kube-apiserver flags (name to value).
	APIServerArgs map[string]string
	// CRDDirs are more directories of CRDs to install beside the operator's
	// and test/crds.
	CRDDirs []string
}

// StartCluster starts a local control plane.
func StartCluster(opts ClusterOptions) (*Cluster, error) {
	if _, err := os.Stat(filepath.Join(opts.Assets, "kube-apiserver")); err != nil {
		return nil, fmt.Errorf("no kube-apiserver in %s: run `make controlplane`", opts.Assets)
	}
	env := &envtest.Environment{
		BinaryAssetsDirectory: opts.Assets,
		CRDDirectoryPaths:     append([]string{filepath.Join(opts.Root, "config", "crd", "bases"), filepath.Join(opts.Root, "test", "crds")}, opts.CRDDirs...),
		ErrorIfCRDPathMissing: true,
	}
	if opts.Webhook {
		env.WebhookInstallOptions = envtest.WebhookInstallOptions{
			Paths: []string{filepath.Join(opts.Root, "config", "webhook", "manifests.yaml")},
		}
	}
	if len(opts.APIServerArgs) > 0 {
		args := env.ControlPlane.GetAPIServer().Configure()
		for k, v := range opts.APIServerArgs {
			args.Set(k, v)
		}
	}
	cfg, err := env.Start()
	if err != nil {
		return nil, fmt.Errorf("start control plane: %w", err)
	}
	c := &Cluster{Env: env, Config: cfg}
	admin, err := env.AddUser(envtest.User{Name: "local-admin", Groups: []string{"system:masters"}}, cfg)
	if err != nil {
		_ = env.Stop()
		return nil, fmt.Errorf("add admin user: %w", err)
	}
	raw, err := admin.KubeConfig()
	if err != nil {
		_ = env.Stop()
		return nil, fmt.Errorf("admin kubeconfig: %w", err)
	}
	c.Kubeconfig = filepath.Join(opts.Dir, "kubeconfig")
	if err := os.WriteFile(c.Kubeconfig, raw, 0o600); err != nil {
		_ = env.Stop()
		return nil, fmt.Errorf("write kubeconfig: %w", err)
	}
	return c, nil
}

// Stop stops the control plane.
func (c *Cluster) Stop() error {
	if err := c.Env.Stop(); err != nil {
		return fmt.Errorf("stop control plane: %w", err)
	}
	return nil
}

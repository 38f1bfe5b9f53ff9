package faults

import (
	"crypto/tls"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/responsibility-operator/responsibility-operator/internal/samples"
)

// TestManagerPodIsRestricted renders config/default as `make deploy` does,
// takes the manager Deployment's pod template and creates it as a Pod with
// a server-side dry run in a namespace that enforces Pod Security
// "restricted": PodSecurity admission on the real API server must admit it.
// Copies without each of the settings "restricted" requires must be refused,
// which proves the namespace really enforces it.
//
// It fails if a change to config/manager or config/default drops one of
// them (runAsNonRoot, seccompProfile RuntimeDefault,
// allowPrivilegeEscalation=false, capabilities drop ALL) or adds something
// restricted forbids (a hostPath volume, a privileged container, ...).
func TestManagerPodIsRestricted(t *testing.T) {
	e := startCluster(t, false)
	ctx := t.Context()
	rendered := e.kubectl("", "kustomize", filepath.Join(root, "config", "default"))
	docs, err := samples.Documents([]byte(rendered))
	if err != nil {
		t.Fatal(err)
	}
	var deploy *appsv1.Deployment
	for _, doc := range docs {
		var meta metav1.TypeMeta
		if err := yaml.Unmarshal(doc, &meta); err != nil {
			t.Fatal(err)
		}
		if meta.Kind == "Deployment" {
			deploy = &appsv1.Deployment{}
			if err := yaml.UnmarshalStrict(doc, deploy); err != nil {
				t.Fatalf("the rendered Deployment: %v", err)
			}
		}
	}
	if deploy == nil {
		t.Fatal("kubectl kustomize config/default renders no Deployment")
	}
	const ns = "psa-restricted"
	e.namespace(ns, map[string]string{
		"pod-security.kubernetes.io/enforce":         "restricted",
		"pod-security.kubernetes.io/enforce-version": "latest",
	})
	dryRun := func(mutate func(*corev1.PodSpec)) error {
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "manager", Labels: deploy.Spec.Template.Labels},
			Spec:       *deploy.Spec.Template.Spec.DeepCopy(),
		}
		if mutate != nil {
			mutate(&pod.Spec)
		}
		return e.c.Create(ctx, pod, client.DryRunAll)
	}
	if err := dryRun(nil); err != nil {
		t.Fatalf("Pod Security restricted refuses the manager's pod template from config/default: %v", err)
	}
	manager := func(s *corev1.PodSpec) *corev1.Container { return &s.Containers[0] }
	for name, mutate := range map[string]func(*corev1.PodSpec){
		"without seccompProfile": func(s *corev1.PodSpec) { s.SecurityContext.SeccompProfile = nil },
		"without runAsNonRoot":   func(s *corev1.PodSpec) { s.SecurityContext.RunAsNonRoot = nil },
		"allowing privilege escalation": func(s *corev1.PodSpec) {
			manager(s).SecurityContext.AllowPrivilegeEscalation = ptr.To(true)
		},
		"keeping capabilities": func(s *corev1.PodSpec) { manager(s).SecurityContext.Capabilities = nil },
		"with a hostPath volume": func(s *corev1.PodSpec) {
			s.Volumes = append(s.Volumes, corev1.Volume{Name: "host", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/"}}})
		},
	} {
		err := dryRun(mutate)
		if err == nil {
			t.Errorf("a copy of the pod template %s was admitted: the namespace does not enforce restricted, or the test checks nothing", name)
			continue
		}
		if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "PodSecurity") {
			t.Errorf("a copy of the pod template %s was refused, but not by PodSecurity: %v", name, err)
		}
	}
}

// TestServersRefuseOldTLS starts the operator with secure metrics and the
// webhook and connects to both with TLS 1.1 at most: the handshake must
// fail, and succeed with TLS 1.2 (so the ports do serve TLS). The operator
// runs with GODEBUG=tls10server=1, which lowers Go's own default minimum
// for servers to TLS 1.0: only the explicit MinVersion in
// cmd/manager/main.go keeps TLS 1.0 and 1.1 out.
//
// It fails if cmd/manager/main.go stops setting MinVersion TLS 1.2 on the
// metrics server or the webhook server.
func TestServersRefuseOldTLS(t *testing.T) {
	e := startCluster(t, true)
	t.Setenv("GODEBUG", "tls10server=1") // inherited by the operator process
	op := e.startOperator("operator", "--metrics-secure=true")
	e.waitReady(op)
	wh := e.cluster.Env.WebhookInstallOptions
	for name, addr := range map[string]string{
		"metrics": net.JoinHostPort("127.0.0.1", strconv.Itoa(op.MetricsPort)),
		"webhook": net.JoinHostPort(wh.LocalServingHost, strconv.Itoa(wh.LocalServingPort)),
	} {
		// The metrics server starts beside the probes, not before readiness.
		eventually(t, 30*time.Second, name+" server listens", func() (bool, string) {
			c, err := net.DialTimeout("tcp", addr, time.Second)
			if err == nil {
				_ = c.Close()
			}
			return err == nil, fmt.Sprint(err)
		})
		if v, err := handshake(addr, tls.VersionTLS12, tls.VersionTLS13); err != nil {
			t.Errorf("%s server (%s): a TLS 1.2+ handshake fails: %v", name, addr, err)
		} else {
			t.Logf("%s server (%s): negotiated %s", name, addr, tls.VersionName(v))
		}
		for _, max := range []uint16{tls.VersionTLS10, tls.VersionTLS11} {
			if v, err := handshake(addr, tls.VersionTLS10, max); err == nil {
				t.Errorf("%s server (%s) accepted %s", name, addr, tls.VersionName(v))
			}
		}
	}
}

// handshake connects with TLS versions in [min, max] and returns the
// negotiated version.
func handshake(addr string, minVersion, maxVersion uint16) (uint16, error) {
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, &tls.Config{
		MinVersion: minVersion, MaxVersion: maxVersion,
		InsecureSkipVerify: true, //nolint:gosec // only the protocol version is under test
	})
	if err != nil {
		return 0, fmt.Errorf("handshake: %w", err)
	}
	defer func() { _ = conn.Close() }()
	return conn.ConnectionState().Version, nil
}

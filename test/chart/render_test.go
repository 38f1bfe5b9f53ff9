package chart

import (
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"github.com/responsibility-operator/responsibility-operator/internal/samples"
)

// The names `make deploy` uses: config/default's namespace and name prefix.
const (
	deployNamespace = "responsibility-operator-system"
	deployRelease   = "responsibility-operator"
)

// TestLint runs `helm lint --strict` with the defaults and each ci/ values
// file. It fails on any warning (a name over 63 characters, invalid YAML).
func TestLint(t *testing.T) {
	needTools(t)
	files := valuesFiles(t)
	for name, f := range files {
		t.Run(name, func(t *testing.T) {
			mustHelm(t, "", "lint", "--strict", chartDir, "-f", f)
		})
	}
}

// TestValuesRefused checks that a typo or an impossible combination fails
// `helm template` with a message naming the cause, instead of rendering
// something the user did not ask for.
func TestValuesRefused(t *testing.T) {
	needTools(t)
	for _, tc := range []struct {
		name string
		set  []string
		want string
	}{
		{"misspelt key", []string{"replicaCont=3"}, "additional properties 'replicaCont' not allowed"},
		{"misspelt nested key", []string{"webhook.enable=false"}, "additional properties 'enable' not allowed"},
		{"unknown pull policy", []string{"image.pullPolicy=Sometimes"}, "/image/pullPolicy"},
		{"unknown policy reports mode", []string{"operator.policyReports=yes"}, "/operator/policyReports"},
		{"unknown certificate source", []string{"webhook.certificate.source=vault"}, "/webhook/certificate/source"},
		{"extra arg without dashes", []string{"extraArgs={gc-percent=50}"}, "/extraArgs/0"},
		{"digest without algorithm", []string{"image.digest=0123"}, "/image/digest"},
		{"catalog model that does not exist", []string{"catalog.enabled=true", "catalog.models={danubedata-nope}"}, `catalog.models names "danubedata-nope", which the catalog does not have`},
		{"replicas without leader election", []string{"operator.leaderElection.enabled=false"}, "replicaCount > 1 needs operator.leaderElection.enabled"},
		{"no service account to run as", []string{"serviceAccount.create=false"}, "serviceAccount.name is required"},
		{"a PDB that blocks every drain", []string{"podDisruptionBudget.enabled=true", "podDisruptionBudget.minAvailable=2"}, "podDisruptionBudget.minAvailable (2) must be below replicaCount (2)"},
		{"a ServiceMonitor without metrics", []string{"metrics.enabled=false", "metrics.serviceMonitor.enabled=true"}, "need metrics.enabled"},
		{"Deny on the whole catalog", []string{"catalog.enabled=true", "catalog.admission=Deny"}, "/catalog/admission"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := []string{"template", "x", chartDir}
			for _, s := range tc.set {
				args = append(args, "--set", s)
			}
			out, err := helm("", args...)
			if err == nil {
				t.Fatalf("helm template --set %v rendered (%d bytes); want it refused with %q", tc.set, len(out), tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("helm template --set %v refused, but without %q:\n%v", tc.set, tc.want, err)
			}
		})
	}
}

// TestChartMatchesConfig renders the chart as `make deploy` names things
// (release responsibility-operator in responsibility-operator-system, the
// webhook certificate from cert-manager) and config/default with kustomize,
// and compares them: the same objects by kind and name, the same RBAC rules
// and bindings (so the chart grants exactly what the generated ClusterRole
// does: internal/controller's privilege test proves that is what the
// operator needs), the same webhook rules, certificate names and manager
// pod settings. It fails when config/ changes and the chart does not follow
// (or the other way round): run `make manifests` and mirror the change.
func TestChartMatchesConfig(t *testing.T) {
	needTools(t)
	kubectl := filepath.Join(root, "bin", "k8s", "kubectl")
	if _, err := os.Stat(kubectl); err != nil {
		t.Fatalf("no kubectl in bin/k8s: run `make controlplane`")
	}
	kustomized, err := exec.Command(kubectl, "kustomize", filepath.Join(root, "config", "default")).Output()
	if err != nil {
		t.Fatalf("kubectl kustomize config/default: %v", err)
	}
	rendered := mustHelm(t, "", "template", deployRelease, chartDir, "-n", deployNamespace, "--include-crds",
		"--api-versions", "cert-manager.io/v1/Certificate")
	// cert-manager writes the webhook's Secret: kustomize's namePrefix does
	// not reach a name it has no object for, the chart prefixes it as every
	// other name. Compare them as one.
	kustomized = []byte(strings.ReplaceAll(string(kustomized), "secretName: webhook-server-cert", "secretName: "+deployRelease+"-webhook-server-cert"))
	config, chart := index(t, string(kustomized)), index(t, rendered)
	delete(config, "Namespace/"+deployNamespace) // helm install --create-namespace
	for key := range config {
		if _, ok := chart[key]; !ok {
			t.Errorf("config/default has %s, the chart does not render it", key)
		}
	}
	for key := range chart {
		if _, ok := config[key]; !ok {
			t.Errorf("the chart renders %s, config/default has no such object", key)
		}
	}
	for key, want := range config {
		got, ok := chart[key]
		if !ok {
			continue
		}
		var fields [][]string
		switch want.GetKind() {
		case "ClusterRole", "Role":
			fields = [][]string{{"rules"}}
		case "ClusterRoleBinding", "RoleBinding":
			fields = [][]string{{"roleRef"}, {"subjects"}}
		case "CustomResourceDefinition":
			fields = [][]string{{"spec"}}
		case "Certificate":
			fields = [][]string{{"spec", "dnsNames"}, {"spec", "secretName"}, {"spec", "issuerRef"}}
		case "Deployment":
			fields = [][]string{
				{"spec", "replicas"},
				{"spec", "template", "spec", "securityContext"},
				{"spec", "template", "spec", "terminationGracePeriodSeconds"},
				{"spec", "template", "spec", "volumes"},
			}
			compareManager(t, want, got)
		case "ValidatingWebhookConfiguration":
			compareWebhooks(t, want, got)
		}
		for _, f := range fields {
			w, _, _ := unstructured.NestedFieldNoCopy(want.Object, f...)
			g, _, _ := unstructured.NestedFieldNoCopy(got.Object, f...)
			if !reflect.DeepEqual(w, g) {
				t.Errorf("%s .%s differs:\nconfig/default: %s\nchart:          %s", key, strings.Join(f, "."), toYAML(w), toYAML(g))
			}
		}
	}
}

// compareManager compares the manager containers: security context,
// resources, probes, mounts, and every flag config/default passes has the
// same value in the chart (the chart passes its defaults explicitly too).
func compareManager(t *testing.T, want, got *unstructured.Unstructured) {
	t.Helper()
	container := func(u *unstructured.Unstructured) map[string]any {
		cs, _, _ := unstructured.NestedSlice(u.Object, "spec", "template", "spec", "containers")
		for _, c := range cs {
			if m, ok := c.(map[string]any); ok && m["name"] == "manager" {
				return m
			}
		}
		t.Fatalf("%s has no manager container", u.GetName())
		return nil
	}
	w, g := container(want), container(got)
	for _, f := range []string{"securityContext", "resources", "volumeMounts", "command"} {
		if !reflect.DeepEqual(w[f], g[f]) {
			t.Errorf("manager container .%s differs:\nconfig/default: %s\nchart:          %s", f, toYAML(w[f]), toYAML(g[f]))
		}
	}
	for _, probe := range []string{"livenessProbe", "readinessProbe"} {
		for _, f := range [][]string{{"httpGet", "path"}, {"initialDelaySeconds"}, {"periodSeconds"}} {
			wv, _, _ := unstructured.NestedFieldNoCopy(w, append([]string{probe}, f...)...)
			gv, _, _ := unstructured.NestedFieldNoCopy(g, append([]string{probe}, f...)...)
			if !reflect.DeepEqual(wv, gv) {
				t.Errorf("manager %s.%s: config/default %v, chart %v", probe, strings.Join(f, "."), wv, gv)
			}
		}
	}
	flags := func(c map[string]any) map[string]string {
		out := map[string]string{}
		args, _ := c["args"].([]any)
		for _, a := range args {
			name, value, ok := strings.Cut(a.(string), "=")
			if !ok {
				value = "true"
			}
			out[name] = value
		}
		return out
	}
	gotFlags := flags(g)
	for name, value := range flags(w) {
		if gotFlags[name] != value {
			t.Errorf("config/default runs the manager with %s=%s, the chart with %q", name, value, gotFlags[name])
		}
	}
}

// compareWebhooks compares what each webhook matches and how it is called.
func compareWebhooks(t *testing.T, want, got *unstructured.Unstructured) {
	t.Helper()
	hooks := func(u *unstructured.Unstructured) map[string]map[string]any {
		list, _, _ := unstructured.NestedSlice(u.Object, "webhooks")
		out := map[string]map[string]any{}
		for _, h := range list {
			m := h.(map[string]any)
			out[m["name"].(string)] = m
		}
		return out
	}
	w, g := hooks(want), hooks(got)
	if !slices.Equal(sortedKeys(w), sortedKeys(g)) {
		t.Fatalf("webhooks: config/default %v, chart %v", sortedKeys(w), sortedKeys(g))
	}
	for name, wh := range w {
		for _, f := range [][]string{{"rules"}, {"sideEffects"}, {"admissionReviewVersions"}, {"failurePolicy"}, {"timeoutSeconds"}, {"clientConfig", "service", "name"}, {"clientConfig", "service", "namespace"}, {"clientConfig", "service", "path"}} {
			wv, _, _ := unstructured.NestedFieldNoCopy(wh, f...)
			gv, _, _ := unstructured.NestedFieldNoCopy(g[name], f...)
			if !reflect.DeepEqual(wv, gv) {
				t.Errorf("webhook %s .%s: config/default %s, chart %s", name, strings.Join(f, "."), toYAML(wv), toYAML(gv))
			}
		}
	}
	if a := got.GetAnnotations()["cert-manager.io/inject-ca-from"]; a != want.GetAnnotations()["cert-manager.io/inject-ca-from"] {
		t.Errorf("cert-manager.io/inject-ca-from: config/default %q, chart %q", want.GetAnnotations()["cert-manager.io/inject-ca-from"], a)
	}
}

// index parses a multi-document rendering into objects by kind/name.
func index(t *testing.T, rendered string) map[string]*unstructured.Unstructured {
	t.Helper()
	docs, err := samples.Documents([]byte(rendered))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*unstructured.Unstructured{}
	for _, doc := range docs {
		obj := map[string]any{}
		if err := yaml.Unmarshal(doc, &obj); err != nil {
			t.Fatalf("%v\n%s", err, doc)
		}
		if len(obj) == 0 {
			continue
		}
		u := &unstructured.Unstructured{Object: obj}
		key := u.GetKind() + "/" + u.GetName()
		if _, dup := out[key]; dup {
			t.Fatalf("%s rendered twice", key)
		}
		out[key] = u
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func toYAML(v any) string {
	raw, err := yaml.Marshal(v)
	if err != nil {
		return err.Error()
	}
	return strings.TrimSpace(string(raw))
}

// TestDefaultImageIsWhatMakeImageTags checks that the chart's default image
// is the reference `make image` tags: the Makefile's IMAGE_REPO and
// v + the chart's appVersion.
func TestDefaultImageIsWhatMakeImageTags(t *testing.T) {
	needTools(t)
	makefile, err := os.ReadFile(filepath.Join(root, "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	var repo string
	for line := range strings.SplitSeq(string(makefile), "\n") {
		if v, ok := strings.CutPrefix(line, "IMAGE_REPO ?= "); ok {
			repo = strings.TrimSpace(v)
		}
	}
	raw, err := os.ReadFile(filepath.Join(chartDir, "Chart.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var chart struct {
		AppVersion string `json:"appVersion"`
	}
	if err := yaml.Unmarshal(raw, &chart); err != nil {
		t.Fatal(err)
	}
	if repo == "" || chart.AppVersion == "" {
		t.Fatalf("Makefile IMAGE_REPO %q, Chart.yaml appVersion %q: both must be set", repo, chart.AppVersion)
	}
	deploy := index(t, mustHelm(t, "", "template", deployRelease, chartDir))["Deployment/"+deployRelease+"-controller-manager"]
	containers, _, _ := unstructured.NestedSlice(deploy.Object, "spec", "template", "spec", "containers")
	got := containers[0].(map[string]any)["image"]
	if want := repo + ":v" + chart.AppVersion; got != want {
		t.Errorf("the chart's default image is %v; make image tags %s", got, want)
	}
}

// TestCatalogIsConfigCatalog renders the chart with the catalog on and
// compares every model with its file in config/catalog: the same spec (the
// chart reads and writes it back as YAML, which must change nothing), and
// only labels added.
func TestCatalogIsConfigCatalog(t *testing.T) {
	needTools(t)
	rendered := index(t, mustHelm(t, "", "template", deployRelease, chartDir, "--set", "catalog.enabled=true"))
	files, err := filepath.Glob(filepath.Join(root, "config", "catalog", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	models := 0
	for _, f := range files {
		if filepath.Base(f) == "kustomization.yaml" {
			continue
		}
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for key, want := range index(t, string(raw)) {
			models++
			got, ok := rendered[key]
			if !ok {
				t.Errorf("%s (%s) is not in the chart's rendering", key, filepath.Base(f))
				continue
			}
			if !reflect.DeepEqual(want.Object["spec"], got.Object["spec"]) {
				t.Errorf("%s: the chart's spec differs from %s", key, filepath.Base(f))
			}
			if got.GetLabels()["responsibility.io/catalog"] == "" {
				t.Errorf("%s has no responsibility.io/catalog label: the chart's webhook would not let Helm create it", key)
			}
		}
	}
	var inChart int
	for key := range rendered {
		if strings.HasPrefix(key, "ResponsibilityModel/") {
			inChart++
		}
	}
	if models == 0 || inChart != models {
		t.Errorf("config/catalog has %d models, the chart renders %d", models, inChart)
	}
	// catalog.admission sets every model's spec.admission, and nothing else.
	warned := index(t, mustHelm(t, "", "template", deployRelease, chartDir, "--set", "catalog.enabled=true", "--set", "catalog.admission=Warn"))
	for key, u := range warned {
		if !strings.HasPrefix(key, "ResponsibilityModel/") {
			continue
		}
		spec, _ := u.Object["spec"].(map[string]any)
		if spec["admission"] != "Warn" {
			t.Errorf("%s: spec.admission %v with catalog.admission=Warn", key, spec["admission"])
		}
		delete(spec, "admission")
		if !reflect.DeepEqual(spec, rendered[key].Object["spec"]) {
			t.Errorf("%s: catalog.admission changed more than spec.admission", key)
		}
	}
}

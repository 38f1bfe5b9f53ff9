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

// requiredObjects are objects every install path must create, by kind/name
// as `make deploy` names them: both CRDs, both webhook configurations and
// the DutyWaiver roles.
var requiredObjects = []string{
	"CustomResourceDefinition/responsibilitymodels.responsibility.io",
	"CustomResourceDefinition/dutywaivers.responsibility.io",
	"MutatingWebhookConfiguration/" + deployRelease + "-mutating-webhook-configuration",
	"ValidatingWebhookConfiguration/" + deployRelease + "-validating-webhook-configuration",
	"ClusterRole/" + deployRelease + "-dutywaiver-viewer-role",
	"ClusterRole/" + deployRelease + "-dutywaiver-approver-role",
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
	// What config/default must hold (the chart then must too): a piece lost
	// from both would pass the comparison below.
	for _, key := range requiredObjects {
		if _, ok := config[key]; !ok {
			t.Errorf("config/default has no %s", key)
		}
	}
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
			// With the default rbac.aggregateToDefaultRoles, a role
			// aggregates into view, edit or admin exactly where config/rbac
			// says (the DutyWaiver approver role into none).
			if w, g := aggregation(want), aggregation(got); !reflect.DeepEqual(w, g) {
				t.Errorf("%s aggregates into: config/default %v, chart %v", key, w, g)
			}
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
		case "MutatingWebhookConfiguration", "ValidatingWebhookConfiguration":
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

// aggregation returns the aggregate-to-* labels of a role.
func aggregation(u *unstructured.Unstructured) map[string]string {
	out := map[string]string{}
	for k, v := range u.GetLabels() {
		if strings.HasPrefix(k, "rbac.authorization.k8s.io/aggregate-to-") {
			out[k] = v
		}
	}
	return out
}

// compareWebhooks compares what each webhook of a configuration matches and
// how it is called, and where its CA bundle comes from: with cert-manager,
// its CA injector fills in the configuration the annotation names, so the
// annotation must be the same and no webhook may carry a bundle of its own.
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
		for _, f := range [][]string{{"rules"}, {"sideEffects"}, {"admissionReviewVersions"}, {"failurePolicy"}, {"timeoutSeconds"}, {"clientConfig", "service", "name"}, {"clientConfig", "service", "namespace"}, {"clientConfig", "service", "path"}, {"clientConfig", "caBundle"}} {
			wv, _, _ := unstructured.NestedFieldNoCopy(wh, f...)
			gv, _, _ := unstructured.NestedFieldNoCopy(g[name], f...)
			if !reflect.DeepEqual(wv, gv) {
				t.Errorf("%s webhook %s .%s: config/default %s, chart %s", want.GetKind(), name, strings.Join(f, "."), toYAML(wv), toYAML(gv))
			}
		}
	}
	w1, g1 := want.GetAnnotations()[injectCAFrom], got.GetAnnotations()[injectCAFrom]
	if w1 == "" || g1 != w1 {
		t.Errorf("%s %s: config/default %q, chart %q (cert-manager would leave its CA bundle empty)", want.GetKind(), injectCAFrom, w1, g1)
	}
}

// injectCAFrom is the annotation that has cert-manager's CA injector write
// a Certificate's CA into a webhook configuration.
const injectCAFrom = "cert-manager.io/inject-ca-from"

// TestWebhookConfigurations renders the chart with each certificate source
// and checks both webhook configurations: the CA reaches every webhook of
// the mutating and the validating configuration (cert-manager's annotation,
// or the chart's CA bundle, the ca.crt of the Secret the manager serves
// with), the mutating webhook fails closed whatever webhook.failurePolicy
// says (it records who granted a DutyWaiver), and only the model webhook
// skips the catalog's label (a label must not let a waiver's author bypass
// the record of its grant).
func TestWebhookConfigurations(t *testing.T) {
	needTools(t)
	certManagerAPI := []string{"--api-versions", "cert-manager.io/v1/Certificate"}
	for _, tc := range []struct {
		name string
		args []string
		// certManager: the CA comes from cert-manager, else from the chart.
		certManager bool
	}{
		{"auto without cert-manager", nil, false},
		{"auto with cert-manager", certManagerAPI, true},
		{"certManager", []string{"--set", "webhook.certificate.source=certManager"}, true},
		{"chart", append([]string{"--set", "webhook.certificate.source=chart"}, certManagerAPI...), false},
		{"validating webhooks Ignore", []string{"--set", "webhook.failurePolicy=Ignore"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			objects := index(t, mustHelm(t, "", append([]string{"template", deployRelease, chartDir, "-n", deployNamespace}, tc.args...)...))
			secret := objects["Secret/"+deployRelease+"-webhook-server-cert"]
			var caBundle string
			if !tc.certManager {
				if secret == nil {
					t.Fatal("the chart's certificate source renders no Secret " + deployRelease + "-webhook-server-cert")
				}
				caBundle, _, _ = unstructured.NestedString(secret.Object, "data", "ca.crt")
				if caBundle == "" {
					t.Fatal("the chart's webhook Secret has no ca.crt")
				}
			}
			wantPolicy := "Fail"
			if slices.Contains(tc.args, "webhook.failurePolicy=Ignore") {
				wantPolicy = "Ignore"
			}
			for _, kind := range []string{"MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"} {
				key := kind + "/" + deployRelease + "-" + strings.ToLower(strings.TrimSuffix(kind, "WebhookConfiguration")) + "-webhook-configuration"
				cfg, ok := objects[key]
				if !ok {
					t.Errorf("the chart renders no %s", key)
					continue
				}
				annotation := cfg.GetAnnotations()[injectCAFrom]
				switch {
				case tc.certManager && annotation != deployNamespace+"/"+deployRelease+"-serving-cert":
					t.Errorf("%s: %s is %q, want the chart's Certificate %s/%s-serving-cert", key, injectCAFrom, annotation, deployNamespace, deployRelease)
				case !tc.certManager && annotation != "":
					t.Errorf("%s: %s %q with the chart's own certificate", key, injectCAFrom, annotation)
				}
				hooks, _, _ := unstructured.NestedSlice(cfg.Object, "webhooks")
				if len(hooks) == 0 {
					t.Errorf("%s has no webhook", key)
				}
				for _, h := range hooks {
					hook := h.(map[string]any)
					name := hook["name"]
					if got, _, _ := unstructured.NestedString(hook, "clientConfig", "caBundle"); got != caBundle {
						t.Errorf("%s webhook %s: caBundle %.20q..., want %.20q... (the Secret's ca.crt, or none with cert-manager)", key, name, got, caBundle)
					}
					want := wantPolicy
					if kind == "MutatingWebhookConfiguration" {
						want = "Fail"
					}
					if hook["failurePolicy"] != want {
						t.Errorf("%s webhook %s: failurePolicy %v, want %s", key, name, hook["failurePolicy"], want)
					}
					_, skips := hook["objectSelector"]
					if models := matchesModels(hook); skips != models {
						t.Errorf("%s webhook %s: objectSelector %s; only the webhook for responsibilitymodels skips the catalog's label", key, name, toYAML(hook["objectSelector"]))
					}
				}
			}
		})
	}
	off := index(t, mustHelm(t, "", "template", deployRelease, chartDir, "--set", "webhook.enabled=false"))
	for key := range off {
		if strings.HasSuffix(strings.Split(key, "/")[0], "WebhookConfiguration") {
			t.Errorf("webhook.enabled=false renders %s", key)
		}
	}
}

// matchesModels reports whether a webhook's rules name responsibilitymodels.
func matchesModels(hook map[string]any) bool {
	rules, _, _ := unstructured.NestedSlice(hook, "rules")
	for _, r := range rules {
		resources, _, _ := unstructured.NestedStringSlice(r.(map[string]any), "resources")
		if slices.Contains(resources, "responsibilitymodels") {
			return true
		}
	}
	return false
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

package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"github.com/responsibility-operator/responsibility-operator/api/v1alpha1"
	"github.com/responsibility-operator/responsibility-operator/hack/bench/benchkit"
	"github.com/responsibility-operator/responsibility-operator/internal/evaluate"
)

// The Kyverno policies do the job of the benchmark's three models: they write
// to every workload the annotations and the status label the operator writes
// (the oracle's, evaluate.EvaluateWorkload). They are rendered from the
// oracle, so that their constant strings (the matrix, the duties of a
// compliant object) are the operator's byte for byte, and committed under
// hack/bench-peers/policies so that they can be read; the benchmark refuses to
// run when the committed files differ from what it renders
// (`go run ./hack/bench-peers -write-policies` writes them again).
//
// What each policy evaluates per object: the one duty of each model whose
// verdict differs between the benchmark's workloads (the duty a neglected
// workload breaks, benchkit.Kind.Neglect); the other four duties of each model
// have the same verdict and message on every workload of the benchmark, and
// the policies write them as constants. In the MutatingPolicy that duty is the
// model's own CEL rule, its related lists read with Kyverno's resource.List
// (an API LIST per object and evaluation: Kyverno has no cache of related
// objects). In the ClusterPolicy it is a JMESPath condition written for it
// (below), its related objects read with a context apiCall, likewise an API
// call per object and evaluation.

// policyDir is where the rendered policies are committed.
func policyDir(root string) string { return filepath.Join(root, "hack", "bench-peers", "policies") }

// Placeholders the rendered strings carry for what differs per object.
const (
	phName      = "\x00name\x00"
	phNamespace = "\x00namespace\x00"
	phImages    = "\x00images\x00"
)

// variant is the metadata of one kind's workloads, compliant or neglected,
// with placeholders for the object's name, namespace and unpinned images.
type variant struct {
	annotations, labels map[string]string
}

// kindPolicy is what the policies of one kind need.
type kindPolicy struct {
	kind       *benchkit.Kind
	model      *v1alpha1.ResponsibilityModel
	gvk        [3]string // group, version, kind
	resource   string    // plural
	duty       v1alpha1.Duty
	met, unmet variant
}

// kindPolicies derives, from the oracle's verdicts on one compliant and one
// neglected workload of each kind, what the policies write.
func kindPolicies(models []*v1alpha1.ResponsibilityModel, oracle *benchkit.Oracle, workloads []*benchkit.Workload) ([]kindPolicy, error) {
	out := make([]kindPolicy, 0, len(benchkit.Kinds))
	for i := range benchkit.Kinds {
		k := &benchkit.Kinds[i]
		var good, bad *benchkit.Workload
		for _, w := range workloads {
			if w.Kind != k {
				continue
			}
			if w.Compliant && good == nil {
				good = w
			}
			if !w.Compliant && bad == nil {
				bad = w
			}
		}
		if good == nil || bad == nil {
			return nil, fmt.Errorf("kind %s: need a compliant and a neglected workload (n too small)", k.Short)
		}
		gvk := good.Obj.GroupVersionKind()
		kp := kindPolicy{kind: k, model: models[i], gvk: [3]string{gvk.Group, gvk.Version, gvk.Kind}, resource: strings.ToLower(gvk.Kind) + "s"}
		var err error
		if kp.met, err = variantOf(oracle, good, false); err != nil {
			return nil, err
		}
		if kp.unmet, err = variantOf(oracle, bad, true); err != nil {
			return nil, err
		}
		goodAnnotations, _ := oracle.Desired(good.Obj)
		badAnnotations, _ := oracle.Desired(bad.Obj)
		before := evaluate.ParseDuties(goodAnnotations[v1alpha1.AnnotationDuties])[models[i].Name]
		after := evaluate.ParseDuties(badAnnotations[v1alpha1.AnnotationDuties])[models[i].Name]
		var differ []string
		for name := range after {
			if after[name].State != before[name].State {
				differ = append(differ, name)
			}
		}
		if len(differ) != 1 {
			return nil, fmt.Errorf("kind %s: the neglected workload should break one duty, the oracle says %v", k.Short, differ)
		}
		for _, a := range models[i].Spec.Areas {
			for _, d := range a.Duties {
				if d.Name == differ[0] {
					kp.duty = d
				}
			}
		}
		out = append(out, kp)
	}
	return out, nil
}

// variantOf returns the oracle's metadata of w with its name, namespace and
// (for a neglected Service) its unpinned images replaced by placeholders.
func variantOf(oracle *benchkit.Oracle, w *benchkit.Workload, neglected bool) (variant, error) {
	a, l := oracle.Desired(w.Obj)
	v := variant{annotations: map[string]string{}, labels: map[string]string{}}
	images := ""
	if neglected && w.Kind.Drift != nil {
		images = strings.Join(containerImages(w.Obj), ", ")
	}
	subst := func(s string) string {
		if images != "" {
			s = strings.ReplaceAll(s, images, phImages)
		}
		s = strings.ReplaceAll(s, w.Obj.GetName(), phName)
		return strings.ReplaceAll(s, w.Obj.GetNamespace(), phNamespace)
	}
	for key, val := range a {
		v.annotations[key] = subst(val)
	}
	for key, val := range l {
		v.labels[key] = subst(val)
	}
	if !neglected {
		for key, val := range v.annotations {
			if strings.Contains(val, "\x00") {
				return variant{}, fmt.Errorf("%s: the annotation %s of a compliant workload names the workload; the policies cannot write it as a constant", w.Key(), key)
			}
		}
	}
	return v, nil
}

func containerImages(obj *unstructured.Unstructured) []string {
	containers, _, _ := unstructured.NestedSlice(obj.Object, "spec", "template", "spec", "containers")
	var out []string
	for _, c := range containers {
		if m, ok := c.(map[string]any); ok {
			if img, ok := m["image"].(string); ok {
				out = append(out, img)
			}
		}
	}
	return out
}

// renderPolicies returns the policy files by name: the ClusterPolicies
// (cpol-*.yaml) and the MutatingPolicies (mpol-*.yaml), one per model.
func renderPolicies(kps []kindPolicy) (map[string][]byte, error) {
	out := map[string][]byte{}
	for i := range kps {
		cpol, err := clusterPolicy(&kps[i])
		if err != nil {
			return nil, err
		}
		mpol, err := mutatingPolicy(&kps[i])
		if err != nil {
			return nil, err
		}
		for name, obj := range map[string]map[string]any{"cpol-" + kps[i].kind.Short + ".yaml": cpol, "mpol-" + kps[i].kind.Short + ".yaml": mpol} {
			raw, err := yaml.Marshal(obj)
			if err != nil {
				return nil, fmt.Errorf("render %s: %w", name, err)
			}
			out[name] = append([]byte(policyHeader), raw...)
		}
	}
	return out, nil
}

const policyHeader = `# Rendered by hack/bench-peers (policies.go) from the benchmark's models and the
# operator's own verdicts; do not edit: run go run ./hack/bench-peers -write-policies.
`

// jmesTemplate renders a string with placeholders for a ClusterPolicy.
func jmesTemplate(s string) string {
	s = strings.ReplaceAll(s, phName, "{{request.object.metadata.name}}")
	s = strings.ReplaceAll(s, phNamespace, "{{request.object.metadata.namespace}}")
	return strings.ReplaceAll(s, phImages, "{{ join(', ', unpinned) }}")
}

// clusterPolicy is a Kyverno ClusterPolicy with mutateExistingOnPolicyUpdate:
// two rules per model, for the workloads that meet the varying duty and for
// those that do not (Kyverno's patches cannot branch; a rule's preconditions
// can), each patching the workload that triggered it (mutate.targets naming
// the trigger itself).
func clusterPolicy(kp *kindPolicy) (map[string]any, error) {
	context, met, unmet, err := jmesCondition(kp)
	if err != nil {
		return nil, err
	}
	rule := func(name string, when []any, v variant) map[string]any {
		annotations := map[string]any{}
		for key, val := range v.annotations {
			annotations[key] = jmesTemplate(val)
		}
		labels := map[string]any{}
		for key, val := range v.labels {
			labels[key] = jmesTemplate(val)
		}
		return map[string]any{
			"name":          name,
			"match":         map[string]any{"any": []any{map[string]any{"resources": map[string]any{"kinds": []any{kp.gvk[0] + "/" + kp.gvk[1] + "/" + kp.gvk[2]}}}}},
			"context":       context,
			"preconditions": map[string]any{"all": when},
			"mutate": map[string]any{
				"targets": []any{map[string]any{
					"apiVersion": kp.gvk[0] + "/" + kp.gvk[1], "kind": kp.gvk[2],
					"namespace": "{{request.object.metadata.namespace}}", "name": "{{request.object.metadata.name}}",
				}},
				"patchStrategicMerge": map[string]any{"metadata": map[string]any{"annotations": annotations, "labels": labels}},
			},
		}
	}
	return map[string]any{
		"apiVersion": "kyverno.io/v1",
		"kind":       "ClusterPolicy",
		"metadata":   map[string]any{"name": kp.model.Name},
		"spec": map[string]any{
			"background":                   true,
			"mutateExistingOnPolicyUpdate": true,
			"rules": []any{
				rule(kp.duty.Name+"-met", met, kp.met),
				rule(kp.duty.Name+"-unmet", unmet, kp.unmet),
			},
		},
	}, nil
}

// jmesCondition is the varying duty of a kind in JMESPath: the context
// entries it reads and the preconditions of the rule for the workloads that
// meet it and of the rule for those that do not. Each is written for its
// duty: JMESPath cannot run the model's CEL rule.
//
//   - backup-scheduled: a ScheduledBackup in the workload's namespace whose
//     spec.cluster.name is the workload's and that is not suspended (an API
//     call per workload). Unlike the model's rule it does not check that the
//     backup's method has a destination in the Cluster: every Cluster of the
//     benchmark has a barmanObjectStore.
//   - vm-snapshot-taken: a VirtualMachineSnapshot in the workload's namespace
//     whose spec.source names the VM and that is ready to use (an API call
//     per workload). Unlike the model's rule it does not look at status.error,
//     status.phase and the PartialSnapshot indications: none of the
//     benchmark's snapshots has them.
//   - image-pinned: the model's two regular expressions on the last path
//     segment of every image of spec.template.spec.containers (not of the
//     initContainers, which no benchmark Service has); {7,40} is written out
//     as seven hex digits and more, because Kyverno reads {{ as a variable.
func jmesCondition(kp *kindPolicy) (context []any, met, unmet []any, err error) {
	count := func(name string) ([]any, []any) {
		return []any{map[string]any{"key": "{{ " + name + " }}", "operator": "GreaterThan", "value": 0}},
			[]any{map[string]any{"key": "{{ " + name + " }}", "operator": "Equals", "value": 0}}
	}
	switch kp.duty.Name {
	case "backup-scheduled":
		context = []any{map[string]any{"name": "schedules", "apiCall": map[string]any{
			"urlPath":  "/apis/postgresql.cnpg.io/v1/namespaces/{{request.object.metadata.namespace}}/scheduledbackups",
			"jmesPath": "items[?spec.cluster.name == '{{request.object.metadata.name}}' && spec.suspend != `true`] | length(@)",
		}}}
		met, unmet = count("schedules")
	case "vm-snapshot-taken":
		context = []any{map[string]any{"name": "snapshots", "apiCall": map[string]any{
			"urlPath":  "/apis/snapshot.kubevirt.io/v1beta1/namespaces/{{request.object.metadata.namespace}}/virtualmachinesnapshots",
			"jmesPath": "items[?spec.source.kind == 'VirtualMachine' && spec.source.name == '{{request.object.metadata.name}}' && status.readyToUse == `true`] | length(@)",
		}}}
		met, unmet = count("snapshots")
	case "image-pinned":
		last := "split(image, '/')[-1]"
		context = []any{map[string]any{"name": "unpinned", "variable": map[string]any{
			"jmesPath": "request.object.spec.template.spec.containers[?!contains(image, '@sha256:') && !(regex_match('^[^:]+:(v?[0-9][^:]*|([^:]*[-_.])?[0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f]+([-_.][^:]*)?)$', " + last + ") && regex_match(':[^:]*[0-9]', " + last + "))].image",
		}}}
		met = []any{map[string]any{"key": "{{ length(unpinned) }}", "operator": "Equals", "value": 0}}
		unmet = []any{map[string]any{"key": "{{ length(unpinned) }}", "operator": "GreaterThan", "value": 0}}
	default:
		return nil, nil, nil, fmt.Errorf("no JMESPath condition for duty %s", kp.duty.Name)
	}
	return context, met, unmet, nil
}

// celString is a CEL string literal.
func celString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch r {
		case '\\':
			b.WriteString(`\\`)
		case '"':
			b.WriteString(`\"`)
		case '\n':
			b.WriteString(`\n`)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// celTemplate renders a string with placeholders as a CEL expression.
func celTemplate(s string) string {
	var parts []string
	for s != "" {
		i := strings.IndexByte(s, 0)
		if i < 0 {
			parts = append(parts, celString(s))
			break
		}
		if i > 0 {
			parts = append(parts, celString(s[:i]))
		}
		j := strings.IndexByte(s[i+1:], 0) + i + 1
		switch s[i : j+1] {
		case phName:
			parts = append(parts, "object.metadata.name")
		case phNamespace:
			parts = append(parts, "object.metadata.namespace")
		case phImages:
			parts = append(parts, "variables.unpinned.join(\", \")")
		}
		s = s[j+1:]
	}
	if len(parts) == 0 {
		return `""`
	}
	return strings.Join(parts, " + ")
}

// celRule is the model's rule of the varying duty with each related list read
// by Kyverno's resource.List in the workload's namespace (its items are of
// type any, which a comprehension needs as dyn).
func celRule(kp *kindPolicy) string {
	rule := kp.duty.Rule
	for _, r := range kp.duty.Related {
		rule = strings.ReplaceAll(rule, "related."+r.Name, fmt.Sprintf("dyn(resource.List(%q, %q, object.metadata.namespace).items)", r.APIVersion, strings.ToLower(r.Kind)+"s"))
	}
	return rule
}

// mutatingPolicy is a Kyverno MutatingPolicy with mutate-existing: one per
// model, the varying duty the model's own CEL rule, every annotation and the
// label one server-side-apply-like configuration.
func mutatingPolicy(kp *kindPolicy) (map[string]any, error) {
	variables := []any{map[string]any{"name": "met", "expression": celRule(kp)}}
	if kp.duty.Name == "image-pinned" {
		// The images the message names: the model's messageExpression's filter.
		variables = append(variables, map[string]any{"name": "unpinned", "expression": "(object.spec.template.spec.containers + object.spec.template.spec.?initContainers.orValue([])).filter(c, !(c.image.contains(\"@sha256:\") || (c.image.split(\"/\")[c.image.split(\"/\").size() - 1].matches(\"^[^:]+:(v?[0-9][^:]*|([^:]*[-_.])?[0-9a-f]{7,40}([-_.][^:]*)?)$\") && c.image.split(\"/\")[c.image.split(\"/\").size() - 1].matches(\":[^:]*[0-9]\")))).map(c, c.image)"})
	}
	entries := func(met, unmet map[string]string) string {
		keys := make([]string, 0, len(met))
		for k := range met {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		var b bytes.Buffer
		for i, k := range keys {
			if i > 0 {
				b.WriteString(",\n")
			}
			if met[k] == unmet[k] {
				fmt.Fprintf(&b, "  %s: %s", celString(k), celTemplate(met[k]))
			} else {
				fmt.Fprintf(&b, "  %s: variables.met ? %s : %s", celString(k), celTemplate(met[k]), celTemplate(unmet[k]))
			}
		}
		return b.String()
	}
	for k := range kp.unmet.annotations {
		if _, ok := kp.met.annotations[k]; !ok {
			return nil, fmt.Errorf("kind %s: annotation %s only on neglected workloads", kp.kind.Short, k)
		}
	}
	expr := "Object{metadata: Object.metadata{annotations: {\n" + entries(kp.met.annotations, kp.unmet.annotations) +
		"\n}, labels: {\n" + entries(kp.met.labels, kp.unmet.labels) + "\n}}}\n"
	return map[string]any{
		"apiVersion": "policies.kyverno.io/v1beta1",
		"kind":       "MutatingPolicy",
		"metadata":   map[string]any{"name": kp.model.Name},
		"spec": map[string]any{
			"matchConstraints": map[string]any{"resourceRules": []any{map[string]any{
				"apiGroups": []any{kp.gvk[0]}, "apiVersions": []any{kp.gvk[1]},
				"operations": []any{"CREATE", "UPDATE"}, "resources": []any{kp.resource},
			}}},
			"evaluation": map[string]any{"mutateExisting": map[string]any{"enabled": true}},
			"variables":  variables,
			"mutations": []any{map[string]any{
				"patchType":          "ApplyConfiguration",
				"applyConfiguration": map[string]any{"expression": expr},
			}},
		},
	}, nil
}

// checkPolicies compares the committed policies with the rendered ones, or
// writes them when write is set.
func checkPolicies(root string, rendered map[string][]byte, write bool) error {
	dir := policyDir(root)
	if write {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("create %s: %w", dir, err)
		}
		for name, raw := range rendered {
			if err := os.WriteFile(filepath.Join(dir, name), raw, 0o644); err != nil {
				return fmt.Errorf("write policy: %w", err)
			}
		}
		return nil
	}
	var stale []string
	for name, raw := range rendered {
		cur, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil || !bytes.Equal(cur, raw) {
			stale = append(stale, name)
		}
	}
	if len(stale) > 0 {
		slices.Sort(stale)
		return errors.New("the committed policies " + strings.Join(stale, ", ") + " in " + dir +
			" differ from what the models render: run go run ./hack/bench-peers -write-policies")
	}
	return nil
}

package faults

import (
	"fmt"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"github.com/responsibility-operator/responsibility-operator/internal/evaluate"
	"github.com/responsibility-operator/responsibility-operator/internal/samples"
)

// TestEvaluationIsDeterministic evaluates every catalog model on every
// sample, and on a tenant with two wildcard capabilities and two buckets
// without lifecycle rules, many times, with the related lists in both
// orders. The operator writes only when the result differs from what the
// object carries, so a result that depends on an iteration order makes it
// rewrite unchanged objects (on a restart, a resync or any event of the
// namespace) and makes the annotation flap.
//
// It fails when a duty's state or message changes between evaluations of
// the same input.
func TestEvaluationIsDeterministic(t *testing.T) {
	set, err := samples.Load(repoRoot())
	if err != nil {
		t.Fatal(err)
	}
	objs := append([]samples.Object(nil), set.Objects...)
	// Both orders only matter with two elements or more: a user with two
	// wildcard capabilities and two buckets without lifecycle rules.
	objs = append(objs, sampleObject(`
apiVersion: ceph.rook.io/v1
kind: CephObjectStoreUser
metadata: {name: owner, namespace: legacy}
spec: {store: s3, capabilities: {user: "*", bucket: "*", usage: "*", metadata: "*"}}`),
		sampleObject(`
apiVersion: objectbucket.io/v1alpha1
kind: ObjectBucketClaim
metadata: {name: bucket-a, namespace: legacy}
spec: {storageClassName: s3, additionalConfig: {bucketOwner: owner}}`),
		sampleObject(`
apiVersion: objectbucket.io/v1alpha1
kind: ObjectBucketClaim
metadata: {name: bucket-b, namespace: legacy}
spec: {storageClassName: s3, additionalConfig: {bucketOwner: owner}}`))

	all := make([]*unstructured.Unstructured, len(objs))
	for i := range objs {
		all[i] = objs[i].Unstructured
	}
	list := evaluate.ListerOf(all)
	varying := map[string][]string{} // model/duty -> objects
	for _, o := range objs {
		ns := o.GetNamespace()
		nsObj := set.Namespaces[ns]
		matched := evaluate.Match(set.Models, o.GroupVersionKind(), o.GetLabels(), nsObj, ns != "")
		if len(matched) == 0 {
			continue
		}
		// The lister never fails, so neither does RelatedInput.
		related, _, _ := evaluate.RelatedInput(matched, ns, list)
		reversed := map[evaluate.RelatedSource][]map[string]any{}
		for src, list := range related {
			reversed[src] = slices.Clone(list)
			slices.Reverse(reversed[src])
		}
		first := evaluate.Evaluate(matched, evaluate.Input{GVK: o.GroupVersionKind(), Object: o.Object, Namespace: nsObj, Related: related})
		for i := range 40 {
			rel := related
			if i%2 == 1 {
				rel = reversed
			}
			again := evaluate.Evaluate(matched, evaluate.Input{GVK: o.GroupVersionKind(), Object: o.Object, Namespace: nsObj, Related: rel})
			for j, d := range again.Duties {
				if d.State != first.Duties[j].State || d.Message != first.Duties[j].Message {
					key := d.Model + "/" + d.Duty.Name
					obj := fmt.Sprintf("%s %s/%s: ", o.GetKind(), ns, o.GetName())
					if !slices.ContainsFunc(varying[key], func(s string) bool { return strings.HasPrefix(s, obj) }) {
						varying[key] = append(varying[key], fmt.Sprintf("%s%q then %q", obj, first.Duties[j].Message, d.Message))
					}
				}
			}
		}
	}
	var lines []string
	for key, where := range varying {
		lines = append(lines, key+":\n    "+strings.Join(where, "\n    "))
	}
	sort.Strings(lines)
	if len(lines) > 0 {
		t.Fatalf("the result of these duties depends on an iteration order:\n  %s", strings.Join(lines, "\n  "))
	}
}

// repoRoot returns the repository root, also in -short mode.
func repoRoot() string {
	if root != "" {
		return root
	}
	return filepath.Join("..", "..")
}

func sampleObject(doc string) samples.Object {
	docs, err := samples.Documents([]byte(doc))
	if err != nil || len(docs) != 1 {
		panic(fmt.Sprintf("sample object: %v", err))
	}
	u := &unstructured.Unstructured{}
	if err := yaml.Unmarshal(docs[0], &u.Object); err != nil {
		panic(err)
	}
	return samples.Object{File: "test", Unstructured: u}
}

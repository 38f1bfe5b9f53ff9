package watch

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"runtime"
	"slices"
	"strconv"
	"testing"

	"github.com/go-json-experiment/json/jsontext"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/responsibility-operator/responsibility-operator/hack/bench/benchkit"
	"github.com/responsibility-operator/responsibility-operator/internal/evaluate"
)

// BenchmarkCachedBytes measures what the cache holds per object of the
// benchmark's workloads (hack/bench) as they stand after the operator
// annotated them, and of their related objects: the heap that decoding
// 3,000 workloads' worth with the projecting decoder keeps, with equal maps
// and lists shared (sharedValues) and each object on its own. The workloads
// come from one template per kind, so "shared" is the best case and
// "unshared" the worst (objects that share nothing but their metadata's
// strings).
//
//	go test ./internal/watch -run '^$' -bench CachedBytes
func BenchmarkCachedBytes(b *testing.B) {
	const n = 3000
	objects, p := benchObjects(b, n)
	kinds := slices.SortedFunc(maps.Keys(objects), func(a, b schema.GroupVersionKind) int {
		return bytes.Compare([]byte(a.Kind), []byte(b.Kind))
	})
	for _, mode := range []string{"shared", "unshared"} {
		for _, gvk := range kinds {
			b.Run(mode+"/"+gvk.Kind, func(b *testing.B) {
				raws := objects[gvk]
				for b.Loop() {
					d := newProjectingDecoder(gvk, p)
					if mode == "unshared" {
						d.shared = nil
					} else {
						d.shared = newSharedValues()
					}
					f := d.fields()
					kept := make([]map[string]any, len(raws))
					var before, after runtime.MemStats
					runtime.GC()
					runtime.ReadMemStats(&before)
					for i, raw := range raws {
						var err error
						if kept[i], err = d.object(jsontext.NewDecoder(bytes.NewReader(raw), jsonOptions...), f); err != nil {
							b.Fatal(err)
						}
					}
					runtime.GC()
					runtime.ReadMemStats(&after)
					runtime.KeepAlive(kept)
					runtime.KeepAlive(d)
					b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/float64(len(raws)), "B/object")
				}
			})
		}
	}
}

// benchObjects are the JSON of the benchmark's n workloads, with the
// operator's annotations and label as the benchmark's oracle wants them,
// and of their related objects, by kind, and the projections of the
// benchmark's models.
func benchObjects(b *testing.B, n int) (map[schema.GroupVersionKind][][]byte, *Projections) {
	const namespaces = 20
	root := "../.."
	workloads, err := benchkit.Generate(root, n, namespaces)
	if err != nil {
		b.Fatal(err)
	}
	rms, err := benchkit.BenchModels(root)
	if err != nil {
		b.Fatal(err)
	}
	nsObjs := map[string]map[string]any{}
	for i := range namespaces {
		name := benchkit.NamespaceName(i)
		nsObjs[name] = map[string]any{"apiVersion": "v1", "kind": "Namespace", "metadata": map[string]any{"name": name}}
	}
	oracle, err := benchkit.NewOracle(rms, nsObjs, workloads)
	if err != nil {
		b.Fatal(err)
	}
	var models []*evaluate.Model
	for _, rm := range rms {
		m, err := evaluate.Compile(rm)
		if err != nil {
			b.Fatal(err)
		}
		models = append(models, m)
	}
	p := NewProjections()
	out := map[schema.GroupVersionKind][][]byte{}
	serial := 0
	add := func(obj map[string]any, gvk schema.GroupVersionKind) {
		md := obj["metadata"].(map[string]any)
		// As the API server sets them: a unique uid, and a resourceVersion
		// that is a string of etcd's revision.
		md["uid"] = fmt.Sprintf("8b2c4c5e-2f5e-4b0e-9b7e-%012x", serial)
		md["resourceVersion"] = strconv.Itoa(100000 + serial)
		serial++
		md["generation"] = 1
		md["creationTimestamp"] = "2026-12-04T12:00:00Z"
		data, err := json.Marshal(obj)
		if err != nil {
			b.Fatal(err)
		}
		out[gvk] = append(out[gvk], data)
		if _, ok := p.fields[gvk]; !ok {
			p.set(gvk, evaluate.FieldsOf(models, gvk))
		}
	}
	for _, w := range workloads {
		obj := w.Obj.DeepCopy()
		annotations, labels := oracle.Desired(obj)
		a, l := obj.GetAnnotations(), obj.GetLabels()
		if a == nil {
			a = map[string]string{}
		}
		maps.Copy(a, annotations)
		maps.Copy(l, labels)
		obj.SetAnnotations(a)
		obj.SetLabels(l)
		add(obj.Object, obj.GroupVersionKind())
		if w.Related != nil {
			add(w.Related.DeepCopy().Object, w.Related.GroupVersionKind())
		}
	}
	return out, p
}

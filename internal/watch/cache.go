package watch

import (
	"unique"
	"unsafe"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"

	"github.com/responsibility-operator/responsibility-operator/api/v1alpha1"
)

// CacheOptions are the manager's cache options: the transform of
// TransformForCache with the projections to pass on to Setup in Options,
// and no informer started behind a reader's back.
func CacheOptions(p *Projections) cache.Options {
	return cache.Options{
		DefaultTransform:            TransformForCache(p),
		ReaderFailOnMissingInformer: true,
	}
}

// lastAppliedAnnotation is where kubectl apply keeps the configuration it
// last applied.
const lastAppliedAnnotation = "kubectl.kubernetes.io/last-applied-configuration"

// TransformForCache prepares an object for the cache. It strips
// managedFields and kubectl's last-applied configuration: nothing the
// operator decides reads them, and together they are often most of an
// object. It also makes the operator's own annotation
// values on objects share one copy each: every object a model matches
// carries the same matrix, a few KiB of JSON, and most carry the same duties,
// which would otherwise be decoded into a string of their own per object;
// so are the keys of metadata, labels and annotations, and the namespace.
// Last, it keeps of an object of a watched kind only what p says the models
// read (nil p keeps everything).
func TransformForCache(p *Projections) toolscache.TransformFunc {
	strip := cache.TransformStripManagedFields()
	return func(in any) (any, error) {
		u, ok := in.(*unstructured.Unstructured)
		if !ok {
			return strip(in)
		}
		internMetadata(u.Object)
		p.project(u)
		return u, nil
	}
}

// internMetadata drops an object's managedFields and kubectl's
// last-applied configuration, and makes the keys of its metadata, labels
// and annotations, its namespace and the operator's own annotation values
// the same strings on every object. A decoder makes a copy of each per object:
// at 10,000 cached objects, a few MiB of the same few hundred strings.
func internMetadata(obj map[string]any) {
	meta, _ := obj["metadata"].(map[string]any)
	if meta == nil {
		return
	}
	// Deleted from the map rather than through the object's accessor, whose
	// GetManagedFields converts every entry to its typed form first: that
	// was a tenth of the operator's CPU while it converged 10,000 objects.
	delete(meta, "managedFields")
	internKeys(meta)
	if ns, ok := meta["namespace"]; ok {
		if _, ok := ns.(string); ok {
			meta["namespace"] = unique.Make(ns).Value()
		}
	}
	if labels, ok := meta["labels"].(map[string]any); ok {
		internKeys(labels)
	}
	annotations, _ := meta["annotations"].(map[string]any)
	if len(annotations) == 0 {
		return
	}
	// kubectl apply's copy of the whole object, as large as the object
	// itself on every kubectl-applied workload; rules see objects without it.
	delete(annotations, lastAppliedAnnotation)
	internKeys(annotations)
	for _, k := range v1alpha1.OwnedAnnotations {
		if v, ok := annotations[k]; ok {
			if _, ok := v.(string); ok {
				// The value as an interface, so that its box is shared too.
				annotations[k] = unique.Make(v).Value()
			}
		}
	}
}

// internKeys replaces every key of m by its interned copy. Deleting a key
// and adding an equal one reuses its slot: m does not grow.
func internKeys(m map[string]any) {
	for k, v := range m {
		ik := unique.Make(k).Value()
		if unsafe.StringData(ik) == unsafe.StringData(k) {
			continue
		}
		delete(m, k)
		m[ik] = v
	}
}

package watch

import (
	"sync"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/responsibility-operator/responsibility-operator/internal/evaluate"
)

// Projections say, per watched kind, which fields of its objects the cache
// keeps: those the models' rules and messages read (evaluate.Fields), with
// every object's apiVersion, kind and metadata. The watcher sets a kind's
// projection before it starts the kind's informer, and widens it by
// starting the informer again (see Watcher.Ensure); the cache's transform
// applies it to every object it stores.
//
// The cache holds decoded JSON, about 10 KiB for a typical workload, of
// which a rule reads a few hundred bytes: without projections the operator's
// memory is mostly parts of objects nothing reads.
type Projections struct {
	mu     sync.RWMutex
	fields map[schema.GroupVersionKind]*evaluate.Fields
}

// NewProjections returns projections that keep everything until the
// watcher sets them.
func NewProjections() *Projections {
	return &Projections{fields: map[schema.GroupVersionKind]*evaluate.Fields{}}
}

func (p *Projections) set(gvk schema.GroupVersionKind, f *evaluate.Fields) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.fields[gvk] = f
}

func (p *Projections) delete(gvk schema.GroupVersionKind) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.fields, gvk)
}

// project keeps the part of u its kind's projection says; a kind without
// one is kept whole.
func (p *Projections) project(u *unstructured.Unstructured) {
	if f := p.kept(u.GroupVersionKind()); !f.IsAll() {
		u.Object = f.Project(u.Object)
	}
}

// kept is what the cache keeps of a kind's objects: everything when p is
// nil or the kind has no projection, only the metadata when its projection
// is nil.
func (p *Projections) kept(gvk schema.GroupVersionKind) *evaluate.Fields {
	if p == nil {
		return evaluate.AllFields()
	}
	p.mu.RLock()
	f, ok := p.fields[gvk]
	p.mu.RUnlock()
	switch {
	case !ok:
		return evaluate.AllFields()
	case f == nil:
		return &evaluate.Fields{}
	}
	return f
}

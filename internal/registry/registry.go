// Package registry holds the compiled models the operator applies, indexed
// by the kinds they target and the kinds they read.
package registry

import (
	"sort"
	"strings"
	"sync"

	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/responsibility-operator/responsibility-operator/internal/evaluate"
)

// Registry holds the compiled models the workload reconciler applies, indexed
// by the kinds they target and read. The model reconciler writes it; every
// workload worker reads it. Compiled models are immutable, so readers share
// them without copying.
type Registry struct {
	mu        sync.RWMutex
	models    map[string]*evaluate.Model
	byTarget  map[schema.GroupVersionKind][]*evaluate.Model
	byRelated map[schema.GroupVersionKind][]Dependent
}

// Dependent is a target kind whose models read a related kind: from the
// target object's own namespace (Namespace ""), or from one fixed namespace,
// in which case a change there concerns the targets in every namespace.
type Dependent struct {
	Target    schema.GroupVersionKind
	Namespace string
	// Join is the dotted path of the related objects' field that names
	// the targets they concern (evaluate.Model.RelatedJoin); "" when a
	// change may concern every target of the namespace.
	Join string
}

// JoinPath is Join as the path of a field, nil when there is none.
func (d Dependent) JoinPath() []string {
	if d.Join == "" {
		return nil
	}
	return strings.Split(d.Join, ".")
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry {
	return &Registry{models: map[string]*evaluate.Model{}}
}

// Set installs or replaces a model and returns the one it replaced.
func (r *Registry) Set(m *evaluate.Model) *evaluate.Model {
	r.mu.Lock()
	defer r.mu.Unlock()
	prev := r.models[m.Name]
	r.models[m.Name] = m
	r.reindexLocked()
	return prev
}

// Delete removes a model and returns it, or nil when it was not installed.
func (r *Registry) Delete(name string) *evaluate.Model {
	r.mu.Lock()
	defer r.mu.Unlock()
	prev := r.models[name]
	if prev != nil {
		delete(r.models, name)
		r.reindexLocked()
	}
	return prev
}

// Get returns an installed model by name.
func (r *Registry) Get(name string) *evaluate.Model {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.models[name]
}

func (r *Registry) reindexLocked() {
	r.byTarget = map[schema.GroupVersionKind][]*evaluate.Model{}
	related := map[schema.GroupVersionKind]map[Dependent]bool{}
	names := make([]string, 0, len(r.models))
	for n := range r.models {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		m := r.models[n]
		for _, gvk := range m.TargetKinds() {
			r.byTarget[gvk] = append(r.byTarget[gvk], m)
			for _, src := range m.RelatedSources() {
				if related[src.GVK] == nil {
					related[src.GVK] = map[Dependent]bool{}
				}
				related[src.GVK][Dependent{Target: gvk, Namespace: src.Namespace, Join: strings.Join(m.RelatedJoin(src), ".")}] = true
			}
		}
	}
	r.byRelated = make(map[schema.GroupVersionKind][]Dependent, len(related))
	for rel, deps := range related {
		r.byRelated[rel] = sortedDependents(deps)
	}
}

// ModelsFor returns the models targeting a kind, sorted by name. The slice is
// shared: callers must not modify it.
func (r *Registry) ModelsFor(gvk schema.GroupVersionKind) []*evaluate.Model {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.byTarget[gvk]
}

// IsTarget reports whether any installed model targets a kind.
func (r *Registry) IsTarget(gvk schema.GroupVersionKind) bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return len(r.byTarget[gvk]) > 0
}

// TargetKinds returns the kinds some installed model targets.
func (r *Registry) TargetKinds() []schema.GroupVersionKind {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]schema.GroupVersionKind, 0, len(r.byTarget))
	for k, models := range r.byTarget {
		if len(models) > 0 {
			out = append(out, k)
		}
	}
	return out
}

// DependentTargets returns the target kinds whose models read a related kind,
// with the namespace they read it from.
func (r *Registry) DependentTargets(related schema.GroupVersionKind) []Dependent {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.byRelated[related]
}

// Kinds returns every kind an installed model targets or reads.
func (r *Registry) Kinds() map[schema.GroupVersionKind]bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make(map[schema.GroupVersionKind]bool, len(r.byTarget)+len(r.byRelated))
	for k := range r.byTarget {
		out[k] = true
	}
	for k := range r.byRelated {
		out[k] = true
	}
	return out
}

func sortedDependents(set map[Dependent]bool) []Dependent {
	out := make([]Dependent, 0, len(set))
	for k := range set {
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool {
		if a, b := out[i].Target.String(), out[j].Target.String(); a != b {
			return a < b
		}
		if out[i].Namespace != out[j].Namespace {
			return out[i].Namespace < out[j].Namespace
		}
		return out[i].Join < out[j].Join
	})
	return out
}

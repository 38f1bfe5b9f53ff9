package evaluate

import (
	"maps"
	"slices"
	"strings"

	celast "github.com/google/cel-go/common/ast"
	"github.com/google/cel-go/common/operators"
	"github.com/google/cel-go/common/types"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// Fields is the part of an object that rules read: the cache keeps only
// this part of every object of a kind (see Project), so that an operator
// watching thousands of objects does not hold the parts no rule looks at.
//
// It is a tree of field names. All keeps the whole value; Named keeps those
// fields of a map (and drops the others); Each keeps every element of a list
// with the part Each says. A node with neither keeps only the field's
// presence. A nil *Fields reads nothing but the metadata.
type Fields struct {
	All   bool
	Named map[string]*Fields
	Each  *Fields
}

// AllFields keeps every field.
func AllFields() *Fields { return &Fields{All: true} }

// Always-kept top-level fields: the identity, labels and annotations the
// operator matches, writes and compares, and the kind a rule may test.
var keptFields = []string{"apiVersion", "kind", "metadata"}

func (f *Fields) child(name string) *Fields {
	if f.Named == nil {
		f.Named = map[string]*Fields{}
	}
	c := f.Named[name]
	if c == nil {
		c = &Fields{}
		f.Named[name] = c
	}
	return c
}

func (f *Fields) each() *Fields {
	if f.Each == nil {
		f.Each = &Fields{}
	}
	return f.Each
}

// IsAll reports whether f keeps the whole object.
func (f *Fields) IsAll() bool { return f != nil && f.All }

// Covers reports whether everything g keeps, f keeps too.
func (f *Fields) Covers(g *Fields) bool {
	switch {
	case g == nil || (!g.All && len(g.Named) == 0 && g.Each == nil):
		return true
	case f == nil:
		return false
	case f.All:
		return true
	case g.All:
		return false
	}
	for name, gc := range g.Named {
		fc, ok := f.Named[name]
		if !ok || !fc.Covers(gc) {
			return false
		}
	}
	return g.Each == nil || (f.Each != nil && f.Each.Covers(g.Each))
}

// Union returns what f or g keeps. It does not modify either.
func (f *Fields) Union(g *Fields) *Fields {
	switch {
	case f == nil:
		return g.clone()
	case g == nil:
		return f.clone()
	case f.All || g.All:
		return AllFields()
	}
	out := f.clone()
	for name, gc := range g.Named {
		if out.Named == nil {
			out.Named = map[string]*Fields{}
		}
		out.Named[name] = out.Named[name].Union(gc)
	}
	if g.Each != nil {
		out.Each = out.Each.Union(g.Each)
	}
	return out
}

func (f *Fields) clone() *Fields {
	if f == nil {
		return nil
	}
	out := &Fields{All: f.All, Each: f.Each.clone()}
	if f.Named != nil {
		out.Named = make(map[string]*Fields, len(f.Named))
		for name, c := range f.Named {
			out.Named[name] = c.clone()
		}
	}
	return out
}

// String lists the kept paths, sorted, for logs: "spec.postgresql.pg_hba",
// "spec.containers[].image"; a path that ends in "?" is kept only as
// present.
func (f *Fields) String() string {
	if f.IsAll() || (f != nil && f.Each != nil) {
		return "*"
	}
	var paths []string
	var walk func(prefix string, n *Fields)
	walk = func(prefix string, n *Fields) {
		switch {
		case n.All:
			paths = append(paths, prefix)
			return
		case len(n.Named) == 0 && n.Each == nil:
			paths = append(paths, prefix+"?")
			return
		}
		for _, name := range slices.Sorted(maps.Keys(n.Named)) {
			walk(prefix+"."+name, n.Named[name])
		}
		if n.Each != nil {
			walk(prefix+"[]", n.Each)
		}
	}
	if f != nil {
		for _, name := range slices.Sorted(maps.Keys(f.Named)) {
			if !slices.Contains(keptFields, name) {
				walk(name, f.Named[name])
			}
		}
	}
	return strings.Join(paths, ",")
}

// Project returns the part of obj that f keeps, always with apiVersion, kind
// and metadata. It shares values with obj and modifies neither; obj itself
// is returned when f keeps everything.
//
// A rule reads the same from the projection as from obj: every field it
// names is there with the value it reads, every field it tests for is
// present exactly when it is in obj, and every list it walks has the same
// length. A map a rule iterates over, indexes with a computed key or uses as
// a value is kept whole, and so is a list it uses other than by walking it.
func (f *Fields) Project(obj map[string]any) map[string]any {
	if f == nil {
		f = &Fields{}
	}
	if f.All || f.Each != nil {
		return obj
	}
	out := make(map[string]any, len(keptFields)+len(f.Named))
	for _, name := range keptFields {
		if v, ok := obj[name]; ok {
			out[name] = v
		}
	}
	for name, c := range f.Named {
		if slices.Contains(keptFields, name) {
			continue
		}
		if v, ok := obj[name]; ok {
			out[name] = c.project(v)
		}
	}
	return out
}

func (f *Fields) project(v any) any {
	if f.All {
		return v
	}
	switch v := v.(type) {
	case map[string]any:
		if f.Each != nil {
			// Iterated over: its keys are read.
			return v
		}
		out := make(map[string]any, len(f.Named))
		for name, c := range f.Named {
			if cv, ok := v[name]; ok {
				out[name] = c.project(cv)
			}
		}
		return out
	case []any:
		if f.Each == nil {
			// Selecting a field of a list is an error, and testing a list
			// for presence reads nothing of it: either way the same list.
			return v
		}
		out := make([]any, len(v))
		for i, e := range v {
			out[i] = f.Each.project(e)
		}
		return out
	}
	return v
}

// readFields is what a checked expression reads of object, and of related:
// a field per related list. An expression that uses object as a value reads
// all of it.
//
// paths maps each expression that evaluates to a value inside object to its
// path there (object.spec.?postgresql.?pg_hba.orValue([]) is object, spec,
// postgresql, pg_hba; a variable walking it, that path and "@items"): the
// cost estimator sizes them (see sizeBounds), and because they are recorded
// by the same walk that builds object, every value it sizes is one
// fitsObject measures.
func readFields(a *celast.AST) (object, related *Fields, paths map[int64][]string, readsNow bool) {
	r := &fieldReader{refs: a.ReferenceMap(), object: &Fields{}, related: &Fields{}, paths: map[int64][]string{}}
	r.keep(r.read(a.Expr(), nil))
	return r.object, r.related, r.paths, r.now
}

// relatedElements is what related (as readFields returns it) reads of each
// object of the related list name.
func relatedElements(related *Fields, name string) *Fields {
	if related.IsAll() {
		return AllFields()
	}
	list := related.Named[name]
	switch {
	case list == nil:
		return nil
	case list.All:
		return AllFields()
	}
	return list.Each
}

type fieldReader struct {
	refs map[int64]*celast.ReferenceInfo
	// object and related are the roots of what is read.
	object, related *Fields
	// paths are the paths into object of the expressions read so far.
	paths map[int64][]string
	// now is whether the expression reads the variable now (not a
	// comprehension's variable of that name).
	now bool
}

// scope binds the variables of the enclosing comprehensions: to the part of
// an object they range over and its path, or to nil for a value that is not
// one.
type scope struct {
	name   string
	fields *Fields
	path   []string
	parent *scope
}

func (s *scope) lookup(name string) (*scope, bool) {
	for ; s != nil; s = s.parent {
		if s.name == name {
			return s, true
		}
	}
	return nil, false
}

// at records that e evaluates to the value at path in object, if path is
// one, and returns f.
func (r *fieldReader) at(e int64, path []string, f *Fields) *Fields {
	if path != nil {
		r.paths[e] = path
	}
	return f
}

// pathOf is the path into object of an expression already read, or nil.
func (r *fieldReader) pathOf(e celast.Expr) []string { return r.paths[e.ID()] }

// appendPath is path and then name, never sharing path's array.
func appendPath(path []string, name string) []string {
	if path == nil {
		return nil
	}
	return append(path[:len(path):len(path)], name)
}

// keep marks a value the expression uses as a whole.
func (r *fieldReader) keep(f *Fields) {
	if f != nil {
		f.All = true
	}
}

// read walks e and returns the part of object (or of the related lists) e
// evaluates to, or nil when e is some other value. What it reads along the
// way is recorded in r.object and r.related; the caller decides how the
// returned part itself is read, marking it whole (keep) unless it selects
// from it or walks it.
func (r *fieldReader) read(e celast.Expr, s *scope) *Fields {
	switch e.Kind() {
	case celast.IdentKind:
		name := e.AsIdent()
		if v, ok := s.lookup(name); ok {
			return r.at(e.ID(), v.path, v.fields)
		}
		if ref, ok := r.refs[e.ID()]; ok && ref.Name != "" {
			name = ref.Name
		}
		switch name {
		case VarObject:
			return r.at(e.ID(), []string{VarObject}, r.object)
		case VarRelated:
			return r.related
		case VarNow:
			r.now = true
		}
		return nil
	case celast.SelectKind:
		sel := e.AsSelect()
		f := r.read(sel.Operand(), s)
		switch {
		case f == nil:
			return nil
		case sel.IsTestOnly():
			// has(x.f) reads whether f is there, not its value.
			f.child(sel.FieldName())
			return nil
		}
		return r.at(e.ID(), appendPath(r.pathOf(sel.Operand()), sel.FieldName()), f.child(sel.FieldName()))
	case celast.CallKind:
		return r.readCall(e.ID(), e.AsCall(), s)
	case celast.ComprehensionKind:
		r.readComprehension(e.AsComprehension(), s)
		return nil
	case celast.ListKind:
		for _, el := range e.AsList().Elements() {
			r.keep(r.read(el, s))
		}
	case celast.MapKind:
		for _, entry := range e.AsMap().Entries() {
			r.keep(r.read(entry.AsMapEntry().Key(), s))
			r.keep(r.read(entry.AsMapEntry().Value(), s))
		}
	case celast.StructKind:
		for _, field := range e.AsStruct().Fields() {
			r.keep(r.read(field.AsStructField().Value(), s))
		}
	}
	return nil
}

func (r *fieldReader) readCall(id int64, call celast.CallExpr, s *scope) *Fields {
	args := call.Args()
	switch fn := call.FunctionName(); {
	case (fn == operators.OptSelect || fn == operators.Index || fn == operators.OptIndex) && !call.IsMemberFunction() && len(args) == 2:
		f := r.read(args[0], s)
		if f == nil {
			r.keep(r.read(args[1], s))
			return nil
		}
		if args[1].Kind() == celast.LiteralKind {
			switch key := args[1].AsLiteral().(type) {
			case types.String:
				return r.at(id, appendPath(r.pathOf(args[0]), string(key)), f.child(string(key)))
			case types.Int, types.Uint:
				return r.at(id, appendPath(r.pathOf(args[0]), "@items"), f.each())
			}
		}
		// A computed key may name any field or element.
		r.keep(r.read(args[1], s))
		r.keep(f)
		return nil
	case call.IsMemberFunction() && (fn == "orValue" && len(args) == 1 || fn == "value" && len(args) == 0):
		// x.?f.orValue(d) and x.?f.value() are x.f (or d).
		for _, a := range args {
			r.keep(r.read(a, s))
		}
		f := r.read(call.Target(), s)
		if len(args) == 1 && !isEmptyOrScalarLiteral(args[0]) {
			// Its value may be the default's, and what is inside it.
			return f
		}
		return r.at(id, r.pathOf(call.Target()), f)
	}
	if call.IsMemberFunction() {
		r.keep(r.read(call.Target(), s))
	}
	for _, a := range args {
		r.keep(r.read(a, s))
	}
	return nil
}

// readComprehension handles the macros (all, exists, exists_one, map,
// filter) and cel.bind: the loop variable of a list walked is each element.
// A two-variable comprehension reads its range whole.
func (r *fieldReader) readComprehension(c celast.ComprehensionExpr, s *scope) {
	rng := r.read(c.IterRange(), s)
	var elem *Fields
	var elemPath []string
	switch {
	case rng == nil:
	case c.HasIterVar2():
		r.keep(rng)
	default:
		elem, elemPath = rng.each(), appendPath(r.pathOf(c.IterRange()), "@items")
	}
	r.keep(r.read(c.AccuInit(), s))
	inner := &scope{name: c.IterVar(), fields: elem, path: elemPath, parent: &scope{name: c.AccuVar(), parent: s}}
	if c.HasIterVar2() {
		inner = &scope{name: c.IterVar2(), parent: inner}
	}
	r.keep(r.read(c.LoopCondition(), inner))
	r.keep(r.read(c.LoopStep(), inner))
	r.keep(r.read(c.Result(), &scope{name: c.AccuVar(), parent: s}))
}

// FieldsOf is what the models read of the objects of a kind, together.
func FieldsOf(models []*Model, gvk schema.GroupVersionKind) *Fields {
	var f *Fields
	for _, m := range models {
		f = f.Union(m.Fields(gvk))
	}
	return f
}

package evaluate

import (
	"slices"

	celast "github.com/google/cel-go/common/ast"
	"github.com/google/cel-go/common/operators"
)

// A join lets a change of one related object re-evaluate only the
// workloads it can concern. A rule such as
//
//	related.backups.exists(b, b.spec.?cluster.?name.orValue("") == object.metadata.name && ...)
//
// can only be changed, for a workload, by a Backup whose spec.cluster.name
// is that workload's name: for any other Backup the comparison is false,
// and false && anything is false in CEL whatever the rest evaluates to
// (errors included). When every read of a related list is such a
// comprehension (exists, exists_one, filter, or map with a filter) joined on
// the same field, a change of one of its objects needs only the workloads
// of the object's namespace named by that field, before and after the
// change, evaluated again; otherwise every workload of the namespace.
//
// Only the optional form (x.?spec.?f.orValue("")) is taken as a join: a
// plain selection of a missing field is an error rather than false, which
// can change the verdict of every workload. The one plain selection allowed
// is metadata, which every object the API server serves has.

// relatedJoins returns, for each related list e reads, the path of the
// field every read of it joins on object.metadata.name, or nil when some
// read is not such a join. all is true when e uses related as a whole.
func relatedJoins(e celast.Expr) (joins map[string][]string, all bool) {
	j := &joinFinder{joins: map[string][]string{}}
	j.walk(e)
	return j.joins, j.all
}

type joinFinder struct {
	joins map[string][]string
	all   bool
}

// record notes one read of list name, joined on path (nil: not joined).
// fieldMetadata is the one field a join may select plainly.
const fieldMetadata = "metadata"

func (j *joinFinder) record(name string, path []string) {
	prev, seen := j.joins[name]
	switch {
	case !seen:
		j.joins[name] = path
	case prev == nil || !slices.Equal(prev, path):
		j.joins[name] = nil
	}
}

func (j *joinFinder) walk(e celast.Expr) {
	switch e.Kind() {
	case celast.IdentKind:
		if e.AsIdent() == VarRelated {
			j.all = true
		}
	case celast.SelectKind:
		sel := e.AsSelect()
		if name, ok := relatedList(e); ok {
			j.record(name, nil)
			return
		}
		j.walk(sel.Operand())
	case celast.CallKind:
		if name, ok := relatedList(e); ok {
			j.record(name, nil)
			return
		}
		call := e.AsCall()
		if call.IsMemberFunction() {
			j.walk(call.Target())
		}
		for _, a := range call.Args() {
			j.walk(a)
		}
	case celast.ListKind:
		for _, el := range e.AsList().Elements() {
			j.walk(el)
		}
	case celast.MapKind:
		for _, en := range e.AsMap().Entries() {
			entry := en.AsMapEntry()
			j.walk(entry.Key())
			j.walk(entry.Value())
		}
	case celast.StructKind:
		for _, f := range e.AsStruct().Fields() {
			j.walk(f.AsStructField().Value())
		}
	case celast.ComprehensionKind:
		c := e.AsComprehension()
		if name, ok := relatedList(c.IterRange()); ok {
			j.record(name, comprehensionJoin(c))
		} else {
			j.walk(c.IterRange())
		}
		j.walk(c.AccuInit())
		j.walk(c.LoopCondition())
		j.walk(c.LoopStep())
		j.walk(c.Result())
	}
}

// relatedList reports whether e is related.<name> (or related.?<name>).
func relatedList(e celast.Expr) (string, bool) {
	switch e.Kind() {
	case celast.SelectKind:
		sel := e.AsSelect()
		if !sel.IsTestOnly() && isIdent(sel.Operand(), VarRelated) {
			return sel.FieldName(), true
		}
	case celast.CallKind:
		call := e.AsCall()
		if call.FunctionName() == operators.OptSelect && len(call.Args()) == 2 && isIdent(call.Args()[0], VarRelated) {
			return stringLiteral(call.Args()[1])
		}
	}
	return "", false
}

// comprehensionJoin is the path of the field a comprehension's predicate
// joins its element on object.metadata.name with, or nil. Only
// comprehensions in which an element whose predicate is false contributes
// nothing qualify: exists (accu || pred), and exists_one, filter and the
// three-argument map (pred ? ... : accu).
func comprehensionJoin(c celast.ComprehensionExpr) []string {
	if c.HasIterVar2() {
		return nil
	}
	step := c.LoopStep()
	if step.Kind() != celast.CallKind {
		return nil
	}
	call, args := step.AsCall(), step.AsCall().Args()
	var pred celast.Expr
	switch {
	case call.FunctionName() == operators.LogicalOr && len(args) == 2 && isIdent(args[0], c.AccuVar()):
		pred = args[1]
	case call.FunctionName() == operators.Conditional && len(args) == 3 && isIdent(args[2], c.AccuVar()):
		pred = args[0]
	default:
		return nil
	}
	for _, conj := range conjuncts(pred, nil) {
		if path := joinConjunct(conj, c.IterVar()); path != nil {
			return path
		}
	}
	return nil
}

// conjuncts flattens a && b && ... into its terms.
func conjuncts(e celast.Expr, out []celast.Expr) []celast.Expr {
	if e.Kind() == celast.CallKind && e.AsCall().FunctionName() == operators.LogicalAnd {
		for _, a := range e.AsCall().Args() {
			out = conjuncts(a, out)
		}
		return out
	}
	return append(out, e)
}

// joinConjunct is the path p when e is iter.?p.orValue("") ==
// object.metadata.name (either way round), or nil.
func joinConjunct(e celast.Expr, iter string) []string {
	if e.Kind() != celast.CallKind || e.AsCall().FunctionName() != operators.Equals || len(e.AsCall().Args()) != 2 {
		return nil
	}
	a, b := e.AsCall().Args()[0], e.AsCall().Args()[1]
	if isObjectName(a) {
		a, b = b, a
	}
	if !isObjectName(b) || a.Kind() != celast.CallKind {
		return nil
	}
	call := a.AsCall()
	if call.FunctionName() != "orValue" || !call.IsMemberFunction() || len(call.Args()) != 1 {
		return nil
	}
	if def, ok := stringLiteral(call.Args()[0]); !ok || def != "" {
		return nil
	}
	path, optional, ok := fieldChain(call.Target(), iter)
	if !ok || !optional || len(path) == 0 {
		return nil
	}
	return path
}

// fieldChain is the path of fields e selects from the variable iter, and
// whether a selection is optional. Every selection must be optional but
// that of metadata on iter itself.
func fieldChain(e celast.Expr, iter string) (path []string, optional, ok bool) {
	switch e.Kind() {
	case celast.IdentKind:
		return nil, false, e.AsIdent() == iter
	case celast.SelectKind:
		sel := e.AsSelect()
		if sel.IsTestOnly() || sel.FieldName() != fieldMetadata || !isIdent(sel.Operand(), iter) {
			return nil, false, false
		}
		return []string{fieldMetadata}, false, true
	case celast.CallKind:
		call := e.AsCall()
		if call.FunctionName() != operators.OptSelect || len(call.Args()) != 2 {
			return nil, false, false
		}
		field, isString := stringLiteral(call.Args()[1])
		if !isString {
			return nil, false, false
		}
		path, _, ok = fieldChain(call.Args()[0], iter)
		return append(path, field), true, ok
	}
	return nil, false, false
}

// isObjectName reports whether e is object.metadata.name.
func isObjectName(e celast.Expr) bool {
	if e.Kind() != celast.SelectKind || e.AsSelect().IsTestOnly() || e.AsSelect().FieldName() != "name" {
		return false
	}
	meta := e.AsSelect().Operand()
	return meta.Kind() == celast.SelectKind && !meta.AsSelect().IsTestOnly() && meta.AsSelect().FieldName() == fieldMetadata &&
		isIdent(meta.AsSelect().Operand(), VarObject)
}

func isIdent(e celast.Expr, name string) bool {
	return e.Kind() == celast.IdentKind && e.AsIdent() == name
}

func stringLiteral(e celast.Expr) (string, bool) {
	if e.Kind() != celast.LiteralKind {
		return "", false
	}
	s, ok := e.AsLiteral().Value().(string)
	return s, ok
}

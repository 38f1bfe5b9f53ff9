package evaluate

import (
	"github.com/google/cel-go/checker"
	celast "github.com/google/cel-go/common/ast"
	"github.com/google/cel-go/common/types"
	"k8s.io/apiserver/pkg/cel/library"
)

// MaxObjectBytes bounds the size of an object the API server stores: its
// largest request body. No string, list or map inside an object or its
// namespace is larger, which bounds the cost of reading them.
const MaxObjectBytes = 3 * 1024 * 1024

// MaxNameLength bounds an object's name and namespace: the API server accepts
// only DNS subdomains (at most 253 characters) as custom resource names.
const MaxNameLength = 253

// relatedBounds are the related list lengths, largest first, for which
// compileProgram tries to prove a rule's cost within the limit.
var relatedBounds = []uint64{1000, 100, 10}

// objectBounds are the lengths, largest first, for which compileProgram
// tries to prove a rule's cost within the limit when no string, list or map
// the rule reads of object is longer (see fitsObject).
var objectBounds = []uint64{64 << 10, 16 << 10, 4 << 10, 1 << 10, 256}

// sizeBounds tells the cost estimator how large the values a rule reads can
// be. A value read from object or namespaceObject, or from inside a related
// object, is at most MaxObjectBytes long. A related list is unbounded (a
// namespace may hold any number of objects of a kind) unless relatedItems is
// set, and a value read from object is at most objectItems long if that is
// set: compileProgram uses them to ask what the cost would be were the inputs
// that small.
type sizeBounds struct {
	relatedItems uint64
	objectItems  uint64
	// paths are the paths into object of expressions whose path the
	// estimator does not follow (see readFields).
	paths map[int64][]string
}

func (b sizeBounds) EstimateSize(element checker.AstNode) *checker.SizeEstimate {
	return b.sizeOf(b.pathOf(element))
}

func (b sizeBounds) pathOf(n checker.AstNode) []string {
	if n.Expr() != nil {
		if p, ok := b.paths[n.Expr().ID()]; ok {
			return p
		}
	}
	return n.Path()
}

func (b sizeBounds) sizeOf(path []string) *checker.SizeEstimate {
	switch {
	case len(path) == 0:
		return nil
	case isNameOrNamespace(path):
		return &checker.SizeEstimate{Min: 0, Max: MaxNameLength}
	case path[0] == VarObject && b.objectItems != 0:
		return &checker.SizeEstimate{Min: 0, Max: b.objectItems}
	case path[0] == VarObject || path[0] == VarNamespaceObject:
		return &checker.SizeEstimate{Min: 0, Max: MaxObjectBytes}
	case path[0] != VarRelated || len(path) < 2:
		return nil
	case len(path) == 2:
		if b.relatedItems == 0 {
			return nil
		}
		return &checker.SizeEstimate{Min: 0, Max: b.relatedItems}
	default:
		return &checker.SizeEstimate{Min: 0, Max: MaxObjectBytes}
	}
}

// isNameOrNamespace is whether path ends in metadata.name or
// metadata.namespace of object or a related object.
func isNameOrNamespace(path []string) bool {
	n := len(path)
	return n >= 3 && path[n-2] == "metadata" && (path[n-1] == "name" || path[n-1] == "namespace") &&
		((n == 3 && path[0] == VarObject) || (n == 5 && path[0] == VarRelated && path[2] == "@items"))
}

func (sizeBounds) EstimateCallCost(string, string, *checker.AstNode, []checker.AstNode) *checker.CallEstimate {
	return nil
}

// costEstimator is the Kubernetes cost estimator, which also knows how large
// the value of an optional select is. cel-go's estimator gives
// object.spec.?tls.?enabled and x.orValue(d) no size, so that a rule
// that walks an optional list (object.spec.?postgresql.?pg_hba.orValue([]))
// can never be shown bounded. It charges those calls what cel-go does
// (1 plus their arguments), and only adds the size of the result.
type costEstimator struct {
	*library.CostEstimator
	bounds sizeBounds
}

func newCostEstimator(b sizeBounds) costEstimator {
	return costEstimator{CostEstimator: &library.CostEstimator{SizeEstimator: b}, bounds: b}
}

func (e costEstimator) EstimateCallCost(function, overloadID string, target *checker.AstNode, args []checker.AstNode) *checker.CallEstimate {
	var size *checker.SizeEstimate
	switch overloadID {
	case "select_optional_field":
		if len(args) == 2 {
			size = e.bounds.sizeOf(optSelectPath(e.bounds, args))
		}
	case "optional_value":
		if target != nil {
			size = e.sizeOfNode(*target)
		}
	case "optional_orValue_value":
		if target != nil && len(args) == 1 {
			if t, d := e.sizeOfNode(*target), e.sizeOfNode(args[0]); t != nil && d != nil {
				u := t.Union(*d)
				size = &u
			}
		}
	}
	if size != nil {
		return &checker.CallEstimate{CostEstimate: checker.FixedCostEstimate(1), ResultSize: size}
	}
	return e.CostEstimator.EstimateCallCost(function, overloadID, target, args)
}

// sizeOfNode is the size the estimator knows of a node, or else the bound
// of its path.
func (e costEstimator) sizeOfNode(n checker.AstNode) *checker.SizeEstimate {
	if s := n.ComputedSize(); s != nil {
		return s
	}
	return e.bounds.EstimateSize(n)
}

func optSelectPath(b sizeBounds, args []checker.AstNode) []string {
	operand := b.pathOf(args[0])
	key, ok := literalString(args[1].Expr())
	if operand == nil || !ok {
		return nil
	}
	return appendPath(operand, key)
}

func literalString(e celast.Expr) (string, bool) {
	if e == nil || e.Kind() != celast.LiteralKind {
		return "", false
	}
	s, ok := e.AsLiteral().(types.String)
	return string(s), ok
}

// isEmptyOrScalarLiteral is whether e is a literal with nothing inside it:
// what an orValue default may be for the result to keep the path of its
// target.
func isEmptyOrScalarLiteral(e celast.Expr) bool {
	switch e.Kind() {
	case celast.LiteralKind:
		return true
	case celast.ListKind:
		return len(e.AsList().Elements()) == 0
	case celast.MapKind:
		return len(e.AsMap().Entries()) == 0
	}
	return false
}

// fitsObject reports whether no string, list or map that f reads of v is
// longer than n (strings in bytes, which bounds their length in code
// points). A part f keeps whole is measured whole, map keys included. A
// value of a type JSON does not decode to is not measured, and does not fit.
// Measuring stops, and the object does not fit, after maxMeasuredValues
// values: the check costs at most that much whatever the object, and the
// tracked program is always safe to run.
func fitsObject(v any, f *Fields, n int) bool {
	budget := maxMeasuredValues
	return fits(v, f, n, &budget)
}

// maxMeasuredValues bounds the values fitsObject visits. A rule that reads a
// part of the object whole on a larger object runs with the cost tracker.
const maxMeasuredValues = 1 << 16

func fits(v any, f *Fields, n int, budget *int) bool {
	if *budget--; *budget < 0 {
		return false
	}
	switch v := v.(type) {
	case nil, bool, int64, float64:
	case string:
		return len(v) <= n
	case []any:
		if len(v) > n {
			return false
		}
		elem := allFields
		if f != nil && !f.All && f.Each != nil {
			elem = f.Each
		}
		for _, e := range v {
			if !fits(e, elem, n, budget) {
				return false
			}
		}
	case map[string]any:
		if len(v) > n {
			return false
		}
		if f == nil || f.All || f.Each != nil {
			for k, e := range v {
				if len(k) > n || !fits(e, allFields, n, budget) {
					return false
				}
			}
			return true
		}
		for name, c := range f.Named {
			if e, ok := v[name]; ok && !isPresenceOnly(c) && !fits(e, c, n, budget) {
				return false
			}
		}
	default:
		return false
	}
	return true
}

// allFields is AllFields, shared by fitsObject, which only reads it.
var allFields = AllFields()

// isPresenceOnly is whether f reads only that its field is there.
func isPresenceOnly(f *Fields) bool {
	return f != nil && !f.All && len(f.Named) == 0 && f.Each == nil
}

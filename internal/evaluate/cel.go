package evaluate

import (
	"fmt"
	"math"
	"sort"
	"sync"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/checker"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
	"github.com/google/cel-go/ext"
	"github.com/google/cel-go/interpreter"
	"k8s.io/apimachinery/pkg/util/version"
	celconfig "k8s.io/apiserver/pkg/apis/cel"
	apiservercel "k8s.io/apiserver/pkg/cel"
	"k8s.io/apiserver/pkg/cel/environment"
	"k8s.io/apiserver/pkg/cel/library"
)

// Variable names a rule can read.
const (
	VarObject          = "object"
	VarNamespaceObject = "namespaceObject"
	VarRelated         = "related"
)

// RuleCostLimit bounds the cost of one evaluation of one rule, in CEL cost
// units: the limit Kubernetes applies to one ValidatingAdmissionPolicy
// expression. A rule whose minimum estimated cost exceeds it is refused at
// compile time; one that exceeds it at run time is stopped and the duty is
// Unknown.
const RuleCostLimit = celconfig.PerCallLimit

// celCompatibilityVersion pins the CEL libraries to those of Kubernetes 1.37,
// the API server version this operator is built against, so a rule that
// compiles here compiles in every operator of this release.
var celCompatibilityVersion = version.MajorMinor(1, 37)

var (
	baseEnvOnce sync.Once
	baseEnvSet  *environment.EnvSet
	baseEnvErr  error
)

// baseEnv is the Kubernetes CEL environment with object and namespaceObject
// declared as dynamic values, as ValidatingAdmissionPolicy declares object.
func baseEnv() (*environment.EnvSet, error) {
	baseEnvOnce.Do(func() {
		baseEnvSet, baseEnvErr = environment.MustBaseEnvSet(celCompatibilityVersion).Extend(
			environment.VersionedOptions{
				IntroducedVersion: version.MajorMinor(1, 0),
				EnvOptions: []cel.EnvOption{
					cel.Variable(VarObject, cel.DynType),
					cel.Variable(VarNamespaceObject, cel.DynType),
				},
			},
			environment.StrictCostOpt,
		)
	})
	if baseEnvErr != nil {
		return nil, fmt.Errorf("build the CEL environment: %w", baseEnvErr)
	}
	return baseEnvSet, nil
}

// ruleEnvs are the two environments of one duty's expressions: checked
// compiles, type-checks and estimates every expression in the Kubernetes
// environment; untracked plans the expressions whose cost is bounded whatever
// the input (see compileProgram).
type ruleEnvs struct {
	checked   *cel.Env
	untracked *cel.Env
}

// ruleEnv extends the base environments with `related`, an object whose
// fields are exactly the declared related lists, so that a misspelt name is a
// compile error rather than a run-time Unknown.
func ruleEnv(relatedNames []string) (ruleEnvs, error) {
	base, err := baseEnv()
	if err != nil {
		return ruleEnvs{}, fmt.Errorf("build CEL environment: %w", err)
	}
	untrackedBase, err := untrackedEnv()
	if err != nil {
		return ruleEnvs{}, err
	}
	relatedType := relatedDeclType(relatedNames)
	set, err := base.Extend(environment.VersionedOptions{
		IntroducedVersion: version.MajorMinor(1, 0),
		EnvOptions:        []cel.EnvOption{cel.Variable(VarRelated, relatedType.CelType())},
		DeclTypes:         []*apiservercel.DeclType{relatedType},
	})
	if err != nil {
		return ruleEnvs{}, fmt.Errorf("declare related lists %v: %w", relatedNames, err)
	}
	checked, err := set.Env(environment.StoredExpressions)
	if err != nil {
		return ruleEnvs{}, fmt.Errorf("build CEL environment: %w", err)
	}
	// The same declaration, made the way EnvSet.Extend makes it.
	provider := apiservercel.NewDeclTypeProvider(relatedType)
	provider.SetRecognizeKeywordAsFieldName(true)
	providerOpts, err := provider.EnvOptions(untrackedBase.CELTypeProvider())
	if err != nil {
		return ruleEnvs{}, fmt.Errorf("declare related lists %v: %w", relatedNames, err)
	}
	untracked, err := untrackedBase.Extend(append(providerOpts, cel.Variable(VarRelated, relatedType.CelType()))...)
	if err != nil {
		return ruleEnvs{}, fmt.Errorf("declare related lists %v: %w", relatedNames, err)
	}
	return ruleEnvs{checked: checked, untracked: untracked}, nil
}

func relatedDeclType(relatedNames []string) *apiservercel.DeclType {
	names := append([]string(nil), relatedNames...)
	sort.Strings(names)
	fields := make(map[string]*apiservercel.DeclField, len(names))
	for _, n := range names {
		fields[n] = apiservercel.NewDeclField(n, apiservercel.NewListType(apiservercel.DynType, -1), true, nil, nil)
	}
	return apiservercel.NewObjectType("responsibility.Related", fields)
}

var (
	untrackedEnvOnce sync.Once
	untrackedEnvVal  *cel.Env
	untrackedEnvErr  error
)

// untrackedEnv has the libraries of the Kubernetes 1.37 environment (the
// list in k8s.io/apiserver/pkg/cel/environment/base.go at that version) but
// not its program options, which turn on cost tracking for every program:
// cel-go has no way to turn it off for one program. Its programs skip the
// tracker, about a third of an evaluation's time. TestUntrackedEnvMatches
// fails if the two environments stop declaring the same functions.
func untrackedEnv() (*cel.Env, error) {
	untrackedEnvOnce.Do(func() {
		untrackedEnvVal, untrackedEnvErr = cel.NewEnv(
			cel.HomogeneousAggregateLiterals(),
			cel.EagerlyValidateDeclarations(true),
			cel.DefaultUTCTimeZone(true),
			library.URLs(),
			library.Regex(),
			library.Authz(),
			cel.CrossTypeNumericComparisons(true),
			cel.OptionalTypes(),
			library.Quantity(),
			ext.Strings(ext.StringsVersion(2)),
			ext.Sets(),
			library.IP(),
			library.CIDR(),
			library.Format(),
			library.AuthzSelectors(),
			ext.TwoVarComprehensions(),
			library.SemverLib(library.SemverVersion(1)),
			ext.Lists(ext.ListsVersion(3)),
			library.Lists(library.ListsVersion(1)),
			cel.Variable(VarObject, cel.DynType),
			cel.Variable(VarNamespaceObject, cel.DynType),
		)
	})
	if untrackedEnvErr != nil {
		return nil, fmt.Errorf("build the untracked CEL environment: %w", untrackedEnvErr)
	}
	return untrackedEnvVal, nil
}

// MaxObjectBytes bounds the size of an object the API server stores: its
// largest request body. No string, list or map inside an object or its
// namespace is larger, which bounds the cost of reading them.
const MaxObjectBytes = 3 * 1024 * 1024

// MaxNameLength bounds an object's name and namespace: the API server accepts
// only DNS subdomains (at most 253 characters) as custom resource names.
const MaxNameLength = 253

// sizeBounds tells the cost estimator how large the values a rule reads can
// be. A value read from object or namespaceObject, or from inside a related
// object, is at most MaxObjectBytes long. A related list is unbounded (a
// namespace may hold any number of objects of a kind) unless relatedItems is
// set: compileProgram uses that to ask what the cost would be were every
// related list at most that long.
type sizeBounds struct {
	relatedItems uint64
}

func (b sizeBounds) EstimateSize(element checker.AstNode) *checker.SizeEstimate {
	path := element.Path()
	switch {
	case len(path) == 0:
		return nil
	case isNameOrNamespace(path):
		return &checker.SizeEstimate{Min: 0, Max: MaxNameLength}
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

// relatedBounds are the related list lengths, largest first, for which
// compileProgram tries to prove a rule's cost within the limit.
var relatedBounds = []uint64{1000, 100, 10}

type resultKind int

const (
	boolResult resultKind = iota
	stringResult
)

// program is one compiled expression.
type program struct {
	kind resultKind
	// tracked stops when the cost exceeds the limit.
	tracked cel.Program
	// untracked runs without the cost tracker, on inputs whose related lists
	// are at most untrackedUpTo long; nil if its cost is never known bounded.
	untracked     cel.Program
	untrackedUpTo int
	// object and related are what the expression reads of its variables
	// (see readFields).
	object, related *Fields
}

// pick returns the program to run on act.
func (p *program) pick(act *activation) cel.Program {
	if p.untracked != nil && act.relatedItems <= p.untrackedUpTo {
		return p.untracked
	}
	return p.tracked
}

// compileProgram compiles an expression and refuses one whose type cannot be
// the wanted result or whose cheapest evaluation already exceeds the cost limit.
//
// An expression whose most expensive evaluation is within the limit whatever
// the input cannot exceed it at run time, so it is planned without cel-go's
// run-time cost tracker, which is about a third of an evaluation's time.
// One whose cost grows with the length of the related lists gets both: the
// untracked program runs when every related list is short enough for the
// estimate to stay within the limit, the tracked one otherwise. Every other
// expression (a loop over a list inside the object, say) keeps the tracker and
// is stopped when it exceeds the limit.
func compileProgram(envs ruleEnvs, expr string, kind resultKind) (*program, error) {
	env := envs.checked
	ast, issues := env.Compile(expr)
	if issues.Err() != nil {
		return nil, fmt.Errorf("compile: %w", issues.Err())
	}
	want := cel.BoolType
	if kind == stringResult {
		want = cel.StringType
	}
	out := ast.OutputType()
	if !out.IsExactType(want) && !out.IsExactType(cel.DynType) && !out.IsExactType(cel.AnyType) {
		return nil, fmt.Errorf("must evaluate to %s, got %s", want, out)
	}
	est, err := env.EstimateCost(ast, &library.CostEstimator{SizeEstimator: sizeBounds{}})
	if err != nil {
		return nil, fmt.Errorf("estimate cost: %w", err)
	}
	if est.Min > RuleCostLimit {
		return nil, fmt.Errorf("estimated cost is at least %d, over the limit of %d: simplify the expression", est.Min, RuleCostLimit)
	}
	p := &program{kind: kind}
	p.object, p.related = readFields(ast.NativeRep())
	if p.tracked, err = env.Program(ast, cel.CostLimit(RuleCostLimit)); err != nil {
		return nil, fmt.Errorf("build program: %w", err)
	}
	if est.Max <= RuleCostLimit {
		p.untrackedUpTo = math.MaxInt
	} else {
		for _, n := range relatedBounds {
			est, err := env.EstimateCost(ast, &library.CostEstimator{SizeEstimator: sizeBounds{relatedItems: n}})
			if err == nil && est.Max <= RuleCostLimit {
				p.untrackedUpTo = int(n)
				break
			}
		}
		if p.untrackedUpTo == 0 {
			return p, nil
		}
	}
	if p.untracked, err = envs.untracked.PlanProgram(ast.NativeRep(), cel.EvalOptions(cel.OptOptimize)); err != nil {
		return nil, fmt.Errorf("build program: %w", err)
	}
	return p, nil
}

// activation holds the variables of one evaluation.
type activation struct {
	object    any
	namespace any
	related   map[string]any
	// relatedItems is the length of the longest list in related.
	relatedItems int
}

func (a *activation) ResolveName(name string) (any, bool) {
	switch name {
	case VarObject:
		return a.object, true
	case VarNamespaceObject:
		return a.namespace, true
	case VarRelated:
		return a.related, true
	}
	return nil, false
}

func (a *activation) Parent() interpreter.Activation { return nil }

func (p *program) eval(act *activation) (ref.Val, error) {
	val, _, err := p.pick(act).Eval(act)
	if err != nil {
		return nil, fmt.Errorf("evaluate: %w", err)
	}
	return val, nil
}

// evalBool evaluates a rule; an error or a non-bool result is returned as an
// error, which makes the duty Unknown.
func (p *program) evalBool(act *activation) (bool, error) {
	val, err := p.eval(act)
	if err != nil {
		return false, err
	}
	b, ok := val.(types.Bool)
	if !ok {
		return false, fmt.Errorf("rule returned %s, not bool", val.Type().TypeName())
	}
	return bool(b), nil
}

func (p *program) evalString(act *activation) (string, error) {
	val, err := p.eval(act)
	if err != nil {
		return "", err
	}
	s, ok := val.(types.String)
	if !ok {
		return "", fmt.Errorf("messageExpression returned %s, not string", val.Type().TypeName())
	}
	return string(s), nil
}

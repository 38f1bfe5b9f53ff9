package evaluate

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/google/cel-go/cel"
	celast "github.com/google/cel-go/common/ast"
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
	VarParams          = "params"
	VarNow             = "now"
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
					cel.Variable(VarNow, cel.TimestampType),
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
// fields are exactly the declared related lists, and `params`, one whose
// fields are the model's parameters (strings), so that a misspelt name is a
// compile error rather than a run-time Unknown.
func ruleEnv(relatedNames, paramNames []string) (ruleEnvs, error) {
	base, err := baseEnv()
	if err != nil {
		return ruleEnvs{}, fmt.Errorf("build CEL environment: %w", err)
	}
	untrackedBase, err := untrackedEnv()
	if err != nil {
		return ruleEnvs{}, err
	}
	relatedType := objectDeclType("responsibility.Related", relatedNames, apiservercel.NewListType(apiservercel.DynType, -1))
	paramsType := objectDeclType("responsibility.Params", paramNames, apiservercel.StringType)
	vars := []cel.EnvOption{cel.Variable(VarRelated, relatedType.CelType()), cel.Variable(VarParams, paramsType.CelType())}
	set, err := base.Extend(environment.VersionedOptions{
		IntroducedVersion: version.MajorMinor(1, 0),
		EnvOptions:        vars,
		DeclTypes:         []*apiservercel.DeclType{relatedType, paramsType},
	})
	if err != nil {
		return ruleEnvs{}, fmt.Errorf("declare related lists %v and parameters %v: %w", relatedNames, paramNames, err)
	}
	checked, err := set.Env(environment.StoredExpressions)
	if err != nil {
		return ruleEnvs{}, fmt.Errorf("build CEL environment: %w", err)
	}
	// The same declarations, made the way EnvSet.Extend makes them.
	provider := apiservercel.NewDeclTypeProvider(relatedType, paramsType)
	provider.SetRecognizeKeywordAsFieldName(true)
	providerOpts, err := provider.EnvOptions(untrackedBase.CELTypeProvider())
	if err != nil {
		return ruleEnvs{}, fmt.Errorf("declare related lists %v and parameters %v: %w", relatedNames, paramNames, err)
	}
	untracked, err := untrackedBase.Extend(append(providerOpts, vars...)...)
	if err != nil {
		return ruleEnvs{}, fmt.Errorf("declare related lists %v and parameters %v: %w", relatedNames, paramNames, err)
	}
	return ruleEnvs{checked: checked, untracked: untracked}, nil
}

// objectDeclType is an object type with one field of type t per name.
func objectDeclType(typeName string, names []string, t *apiservercel.DeclType) *apiservercel.DeclType {
	names = slices.Sorted(slices.Values(names))
	fields := make(map[string]*apiservercel.DeclField, len(names))
	for _, n := range names {
		fields[n] = apiservercel.NewDeclField(n, t, true, nil, nil)
	}
	return apiservercel.NewObjectType(typeName, fields)
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
			cel.Variable(VarNow, cel.TimestampType),
		)
	})
	if untrackedEnvErr != nil {
		return nil, fmt.Errorf("build the untracked CEL environment: %w", untrackedEnvErr)
	}
	return untrackedEnvVal, nil
}

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
	// are at most untrackedUpTo long and, if untrackedObjectItems is set,
	// whose object has no string, list or map the expression reads longer
	// than that; nil if its cost is never known bounded.
	untracked            cel.Program
	untrackedUpTo        int
	untrackedObjectItems int
	// object and related are what the expression reads of its variables
	// (see readFields).
	object, related *Fields
	// readsNow is whether the expression reads `now`: its result can change
	// with time alone.
	readsNow bool
	// conversions are the parameters the expression converts, with the
	// conversion functions (duration, int, ...) applied to each.
	conversions map[string][]string
	// joins are the related lists it reads, each with the field it joins
	// on the workload's name or nil (see relatedJoins); relatedWhole is
	// whether it uses related as a whole.
	joins        map[string][]string
	relatedWhole bool
}

// pick returns the program to run on act.
func (p *program) pick(act *activation) cel.Program {
	if p.untracked != nil && act.relatedItems <= p.untrackedUpTo &&
		(p.untrackedObjectItems == 0 || fitsObject(act.object, p.object, p.untrackedObjectItems)) {
		return p.untracked
	}
	return p.tracked
}

// compileProgram compiles an expression and refuses one whose type cannot be
// the wanted result or whose cheapest evaluation already exceeds the cost limit.
//
// An expression whose most expensive evaluation is within the limit whatever
// the input cannot exceed it at run time, so it is planned without cel-go's
// run-time cost tracker, which is about a third of an evaluation's time (more
// than half for one that walks a list).
// One whose cost grows with the length of the related lists, or with the
// length of the strings and lists it reads of the object (a loop over
// spec.postgresql.pg_hba, say), gets both: the untracked program runs when
// the inputs are small enough for the estimate to stay within the limit (see
// untrackedBounds), the tracked one otherwise. Every other expression keeps
// the tracker and is stopped when it exceeds the limit.
func compileProgram(envs ruleEnvs, expr string, kind resultKind) (p *program, err error) {
	// cel-go panics on some malformed input (its homogeneous-literal
	// validator on an optional list element that is not optional, in
	// v0.29.2): a model is input from whoever may write one, so a panic is
	// that expression's error, not the webhook's or the controller's crash.
	defer func() {
		if r := recover(); r != nil {
			p, err = nil, fmt.Errorf("compile: the CEL library failed on this expression (%v): check its syntax and types", r)
		}
	}()
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
	p = &program{kind: kind}
	var paths map[int64][]string
	p.object, p.related, paths, p.readsNow = readFields(ast.NativeRep())
	p.conversions = paramConversions(ast.NativeRep().Expr())
	p.joins, p.relatedWhole = relatedJoins(ast.NativeRep().Expr())
	if p.tracked, err = env.Program(ast, cel.CostLimit(RuleCostLimit)); err != nil {
		return nil, fmt.Errorf("build program: %w", err)
	}
	var ok bool
	if p.untrackedUpTo, p.untrackedObjectItems, ok = untrackedBounds(env, ast, p.object, paths); !ok {
		return p, nil
	}
	if p.untracked, err = envs.untracked.PlanProgram(ast.NativeRep(), cel.EvalOptions(cel.OptOptimize)); err != nil {
		return nil, fmt.Errorf("build program: %w", err)
	}
	return p, nil
}

// paramConversions finds the parameters an expression passes straight to a
// conversion function, such as duration(params.backupMaxAge): their values
// can be checked when the model is compiled, not only when a rule fails.
func paramConversions(e celast.Expr) map[string][]string {
	var out map[string][]string
	celast.PreOrderVisit(e, celast.NewExprVisitor(func(e celast.Expr) {
		if e.Kind() != celast.CallKind {
			return
		}
		call := e.AsCall()
		if _, ok := paramConverters[call.FunctionName()]; !ok || call.IsMemberFunction() || len(call.Args()) != 1 {
			return
		}
		arg := call.Args()[0]
		if arg.Kind() != celast.SelectKind || arg.AsSelect().IsTestOnly() {
			return
		}
		sel := arg.AsSelect()
		if op := sel.Operand(); op.Kind() != celast.IdentKind || op.AsIdent() != VarParams {
			return
		}
		if out == nil {
			out = map[string][]string{}
		}
		if !slices.Contains(out[sel.FieldName()], call.FunctionName()) {
			out[sel.FieldName()] = append(out[sel.FieldName()], call.FunctionName())
		}
	}))
	return out
}

// paramConverters check a parameter's value the way a CEL conversion
// function of that name parses it.
var paramConverters = map[string]func(string) error{
	"duration": func(v string) error { _, err := time.ParseDuration(v); return wrapParse(err) },
	"timestamp": func(v string) error {
		_, err := time.Parse(time.RFC3339, v)
		return wrapParse(err)
	},
	"int":    func(v string) error { _, err := strconv.ParseInt(v, 10, 64); return wrapParse(err) },
	"uint":   func(v string) error { _, err := strconv.ParseUint(v, 10, 64); return wrapParse(err) },
	"double": func(v string) error { _, err := strconv.ParseFloat(v, 64); return wrapParse(err) },
}

func wrapParse(err error) error {
	if err != nil {
		return fmt.Errorf("parse: %w", err)
	}
	return nil
}

// untrackedBounds finds the inputs on which an expression's cost is known
// within the limit: related lists at most relatedItems long (math.MaxInt for
// any) and no value read of the object longer than objectItems (0 for any).
// It prefers any object to a small one, then the longest related lists. ok is
// false if no bound it tries is enough. An expression that reads the whole
// object is tried with any object only: pick would have to measure all of it
// on every evaluation.
func untrackedBounds(env *cel.Env, ast *cel.Ast, object *Fields, paths map[int64][]string) (relatedItems, objectItems int, ok bool) {
	objects := []uint64{0}
	if !object.IsAll() && object.Each == nil {
		objects = append(objects, objectBounds...)
	}
	related := append([]uint64{0}, relatedBounds...)
	for _, o := range objects {
		for _, r := range related {
			est, err := env.EstimateCost(ast, newCostEstimator(sizeBounds{relatedItems: r, objectItems: o, paths: paths}))
			if err != nil || est.Max > RuleCostLimit {
				continue
			}
			relatedItems = math.MaxInt
			if r != 0 {
				relatedItems = int(r)
			}
			return relatedItems, int(o), true
		}
	}
	return 0, 0, false
}

// activation holds the variables of one evaluation.
type activation struct {
	object    any
	namespace any
	now       types.Timestamp
	params    map[string]any
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
	case VarParams:
		return a.params, true
	case VarNow:
		return a.now, true
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

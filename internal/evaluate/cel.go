package evaluate

import (
	"fmt"
	"sort"
	"sync"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
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

// ruleEnv extends the base environment with `related`, an object whose fields
// are exactly the declared related lists, so that a misspelt name is a
// compile error rather than a run-time Unknown.
func ruleEnv(relatedNames []string) (*cel.Env, error) {
	base, err := baseEnv()
	if err != nil {
		return nil, fmt.Errorf("build CEL environment: %w", err)
	}
	names := append([]string(nil), relatedNames...)
	sort.Strings(names)
	fields := make(map[string]*apiservercel.DeclField, len(names))
	for _, n := range names {
		fields[n] = apiservercel.NewDeclField(n, apiservercel.NewListType(apiservercel.DynType, -1), true, nil, nil)
	}
	relatedType := apiservercel.NewObjectType("responsibility.Related", fields)
	set, err := base.Extend(environment.VersionedOptions{
		IntroducedVersion: version.MajorMinor(1, 0),
		EnvOptions:        []cel.EnvOption{cel.Variable(VarRelated, relatedType.CelType())},
		DeclTypes:         []*apiservercel.DeclType{relatedType},
	})
	if err != nil {
		return nil, fmt.Errorf("declare related lists %v: %w", names, err)
	}
	env, err := set.Env(environment.StoredExpressions)
	if err != nil {
		return nil, fmt.Errorf("build CEL environment: %w", err)
	}
	return env, nil
}

type resultKind int

const (
	boolResult resultKind = iota
	stringResult
)

// program is one compiled expression.
type program struct {
	prg  cel.Program
	kind resultKind
}

// compileProgram compiles an expression and refuses one whose type cannot be
// the wanted result or whose cheapest evaluation already exceeds the cost limit.
func compileProgram(env *cel.Env, expr string, kind resultKind) (*program, error) {
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
	est, err := env.EstimateCost(ast, &library.CostEstimator{})
	if err != nil {
		return nil, fmt.Errorf("estimate cost: %w", err)
	}
	if est.Min > RuleCostLimit {
		return nil, fmt.Errorf("estimated cost is at least %d, over the limit of %d: simplify the expression", est.Min, RuleCostLimit)
	}
	prg, err := env.Program(ast,
		cel.CostLimit(RuleCostLimit),
		cel.InterruptCheckFrequency(100),
	)
	if err != nil {
		return nil, fmt.Errorf("build program: %w", err)
	}
	return &program{prg: prg, kind: kind}, nil
}

// activation holds the variables of one evaluation.
type activation struct {
	object    any
	namespace any
	related   map[string]any
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
	val, _, err := p.prg.Eval(act)
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

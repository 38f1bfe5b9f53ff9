package evaluate

import (
	"fmt"
	"sync"

	"github.com/google/cel-go/cel"
	celast "github.com/google/cel-go/common/ast"
	"github.com/google/cel-go/common/types"
	"k8s.io/apiserver/pkg/cel/environment"

	"github.com/responsibility-operator/responsibility-operator/api/v1alpha1"
)

// AdmissionDuty is a duty as a ValidatingAdmissionPolicy evaluates it: the
// API server runs Rule with the variables object and namespaceObject, as the
// operator does, and answers with Message or MessageExpression.
type AdmissionDuty struct {
	Name string
	Area string
	// Action is the duty's admission action: Warn, Deny or Audit.
	Action v1alpha1.AdmissionAction
	// Rule and MessageExpression are the duty's expressions with the model's
	// parameters written in as string literals (a policy has no `params` of
	// its own); MessageExpression is empty when the duty has a static
	// Message. OldRule is Rule on the object before an update (oldObject).
	Rule, OldRule, MessageExpression, Message string
	// NotEvaluable says why the API server cannot evaluate the duty (its
	// rule or message reads related objects or `now`); the operator still
	// does, after the fact. Rule and MessageExpression are then empty.
	NotEvaluable string
}

// Admission returns the duties whose admission action is Warn, Deny or
// Audit, in the model's order.
func (m *Model) Admission() []AdmissionDuty {
	var out []AdmissionDuty
	for _, d := range m.Duties {
		if d.admission != nil {
			out = append(out, *d.admission)
		}
	}
	return out
}

// admissionDuty translates a compiled duty for the API server. It returns
// nil for action None, and an error only for action Deny on a duty the API
// server cannot evaluate (a Deny that could never deny must not pass as
// one) or an expression that does not translate.
func admissionDuty(d *Duty, action v1alpha1.AdmissionAction, rule, messageExpr string, params map[string]any) (*AdmissionDuty, error) {
	if action == "" || action == v1alpha1.AdmissionNone {
		return nil, nil
	}
	ad := &AdmissionDuty{Name: d.Name, Area: d.Area, Action: action, Message: d.Message}
	var err error
	var why string
	if ad.Rule, ad.OldRule, why, err = admissionExpr(rule, params); err != nil {
		return nil, fmt.Errorf("rule: %w", err)
	}
	if why == "" && messageExpr != "" {
		if ad.MessageExpression, _, why, err = admissionExpr(messageExpr, params); err != nil {
			return nil, fmt.Errorf("messageExpression: %w", err)
		}
		if why != "" {
			why = "its messageExpression " + why
		}
	} else if why != "" {
		why = "its rule " + why
	}
	if why != "" {
		if action == v1alpha1.AdmissionDeny {
			return nil, fmt.Errorf("admission Deny needs a duty the API server can evaluate, and %s, which only the operator can: use Warn or Audit, or None", why)
		}
		return &AdmissionDuty{Name: d.Name, Area: d.Area, Action: action, Message: d.Message, NotEvaluable: why}, nil
	}
	return ad, nil
}

var (
	admissionEnvOnce sync.Once
	admissionParse   *cel.Env
	admissionCheck   *cel.Env
	admissionEnvErr  error
)

// admissionEnvs are a parser that keeps macro calls (so that the rewritten
// expression prints back as written), and the environment of a
// ValidatingAdmissionPolicy's validations: the Kubernetes libraries with
// object, oldObject and namespaceObject, and neither related, params nor now.
func admissionEnvs() (*cel.Env, *cel.Env, error) {
	admissionEnvOnce.Do(func() {
		set := environment.MustBaseEnvSet(celCompatibilityVersion)
		base, err := set.Extend(environment.VersionedOptions{
			IntroducedVersion: celCompatibilityVersion,
			EnvOptions: []cel.EnvOption{
				cel.Variable(VarObject, cel.DynType), cel.Variable(varOldObject, cel.DynType), cel.Variable(VarNamespaceObject, cel.DynType),
			},
		})
		if err != nil {
			admissionEnvErr = err
			return
		}
		if admissionCheck, err = base.Env(environment.StoredExpressions); err != nil {
			admissionEnvErr = err
			return
		}
		admissionParse, admissionEnvErr = admissionCheck.Extend(cel.EnableMacroCallTracking())
	})
	if admissionEnvErr != nil {
		return nil, nil, fmt.Errorf("build the admission CEL environment: %w", admissionEnvErr)
	}
	return admissionParse, admissionCheck, nil
}

// varOldObject is a ValidatingAdmissionPolicy's object before an update.
const varOldObject = "oldObject"

// admissionExpr rewrites an expression for a ValidatingAdmissionPolicy:
// every params.<name> becomes the parameter's value as a string literal. It
// returns the expression, the same on oldObject, or why the API server
// cannot evaluate it when it reads `related` or `now`, or `params` other
// than as params.<name>.
func admissionExpr(expr string, params map[string]any) (out, old, why string, err error) {
	parse, check, err := admissionEnvs()
	if err != nil {
		return "", "", "", err
	}
	ast, iss := parse.Parse(expr)
	if iss.Err() != nil {
		return "", "", "", fmt.Errorf("parse: %w", iss.Err())
	}
	native := ast.NativeRep()
	fac := celast.NewExprFactory()
	// Parameters first: the select params.x becomes a literal, so that the
	// identifiers left afterwards are the ones the policy cannot have.
	visitAll(native, func(e celast.Expr) {
		if e.Kind() != celast.SelectKind {
			return
		}
		sel := e.AsSelect()
		if sel.IsTestOnly() || sel.Operand().Kind() != celast.IdentKind || sel.Operand().AsIdent() != VarParams {
			return
		}
		if v, ok := params[sel.FieldName()].(string); ok {
			e.SetKindCase(fac.NewLiteral(e.ID(), types.String(v)))
		}
	})
	visitAll(native, func(e celast.Expr) {
		if why != "" {
			return
		}
		if readsStatus(e) {
			why = "reads status, which the object's controller writes after it is admitted"
			return
		}
		if e.Kind() != celast.IdentKind {
			return
		}
		switch e.AsIdent() {
		case VarRelated:
			why = "reads related objects"
		case VarNow:
			why = "reads now"
		case VarParams:
			why = "reads params other than as params.<name>"
		}
	})
	if why != "" {
		return "", "", why, nil
	}
	if out, err = printChecked(check, ast); err != nil {
		return "", "", "", err
	}
	visitAll(native, func(e celast.Expr) {
		if e.Kind() == celast.IdentKind && e.AsIdent() == VarObject {
			e.SetKindCase(fac.NewIdent(e.ID(), varOldObject))
		}
	})
	if old, err = printChecked(check, ast); err != nil {
		return "", "", "", err
	}
	return out, old, "", nil
}

// printChecked prints an AST as CEL and compiles the result as the API
// server will: a rewrite that does not compile is this code's error, caught
// here rather than in a policy's status.
func printChecked(check *cel.Env, ast *cel.Ast) (string, error) {
	out, err := cel.AstToString(ast)
	if err != nil {
		return "", fmt.Errorf("print the rewritten expression: %w", err)
	}
	if _, iss := check.Compile(out); iss.Err() != nil {
		return "", fmt.Errorf("the expression for the API server (%s) does not compile: %w", out, iss.Err())
	}
	return out, nil
}

// readsStatus reports whether e is object.status, object.?status or
// has(object.status): a tenant applies spec, and on a create the status is
// empty, so a duty on it would answer every create.
func readsStatus(e celast.Expr) bool {
	isObject := func(x celast.Expr) bool { return x.Kind() == celast.IdentKind && x.AsIdent() == VarObject }
	switch e.Kind() {
	case celast.SelectKind:
		sel := e.AsSelect()
		return sel.FieldName() == "status" && isObject(sel.Operand())
	case celast.CallKind:
		call := e.AsCall()
		if call.FunctionName() != "_?._" || len(call.Args()) != 2 || !isObject(call.Args()[0]) {
			return false
		}
		field := call.Args()[1]
		return field.Kind() == celast.LiteralKind && field.AsLiteral() == types.String("status")
	}
	return false
}

// visitAll visits every expression of an AST, the expanded macros and the
// macro calls kept for printing alike.
func visitAll(a *celast.AST, f func(celast.Expr)) {
	v := celast.NewExprVisitor(f)
	celast.PreOrderVisit(a.Expr(), v)
	for _, call := range a.SourceInfo().MacroCalls() {
		celast.PreOrderVisit(call, v)
	}
}

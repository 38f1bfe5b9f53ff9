package evaluate

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/responsibility-operator/responsibility-operator/api/v1alpha1"
)

// Model is a compiled ResponsibilityModel: selectors parsed, rules compiled,
// the matrix encoded once. It is immutable after Compile and shared by every
// worker.
type Model struct {
	Name       string
	Generation int64
	Service    string
	Provider   string
	Targets    []Target
	// Duties of every area, in the order of the spec.
	Duties []*Duty
	// AnnotationWaivers and DutyWaivers say which waivers the model accepts
	// (spec.waivers).
	AnnotationWaivers, DutyWaivers bool
	// WaiverExpiryRequired and WaiverMaxDuration (0: any) constrain the
	// expiry of waivers.
	WaiverExpiryRequired bool
	WaiverMaxDuration    time.Duration
	// Recheck is how often an object the model matches is evaluated again
	// when a duty reads `now`; 0 when none does.
	Recheck time.Duration

	// params are the parameters as the rules read them.
	params map[string]any

	// matrixJSON is this model's entry of the matrix annotation, and
	// matrix the whole annotation when it is the only model matched.
	matrixJSON, matrix string
	// relatedSources are the distinct kind and namespace pairs the duties read.
	relatedSources []RelatedSource
	// joins are the fields the related sources are joined on (RelatedJoin).
	joins map[RelatedSource][]string
	// joinIndex indexes the long lists of joined sources by their join
	// field; nil when no source is joined.
	joinIndex *joinIndex
	// fields are what the rules and messages read of the objects of each
	// target and related kind.
	fields map[schema.GroupVersionKind]*Fields
}

// RelatedSource is where a duty's related objects come from: a kind, in the
// workload's own namespace (Namespace "") or in one fixed namespace.
type RelatedSource struct {
	GVK       schema.GroupVersionKind
	Namespace string
}

// Target selects objects of one kind.
type Target struct {
	GVK               schema.GroupVersionKind
	Selector          labels.Selector
	NamespaceSelector labels.Selector
}

// Duty is a compiled customer duty.
type Duty struct {
	Name        string
	Area        string
	Description string
	Message     string
	Severity    v1alpha1.Severity
	Related     []Related

	rule        *program
	messageExpr *program
	// admission is the duty for a ValidatingAdmissionPolicy; nil for
	// admission None.
	admission *AdmissionDuty
	// namespaceWide is NamespaceWide, derived once at compilation.
	namespaceWide bool
}

// NamespaceWide reports whether the duty's verdict and message depend on the
// target's namespace alone: neither its rule nor its message expression reads
// anything of `object` but object.metadata.namespace (they may read
// namespaceObject, related lists, parameters and `now`). Related lists are
// read from the target's namespace or from a fixed one, so every target of
// the model in one namespace gets the same state and message: the operator
// reports such a duty once per namespace (see docs/reference.md, "What is
// reported where"). A rule that reads the object's name, labels or spec (a
// join on the workload's name, a Velero label selector) is per object.
func (d *Duty) NamespaceWide() bool { return d.namespaceWide }

// readsNamespaceOnly reports whether f, what an expression reads of object,
// is at most object.metadata.namespace.
func readsNamespaceOnly(f *Fields) bool {
	if f == nil {
		return true
	}
	if f.All || f.Each != nil {
		return false
	}
	for name, c := range f.Named {
		if name != fieldMetadata || c.All || c.Each != nil {
			return false
		}
		for field, leaf := range c.Named {
			if field != "namespace" || leaf.Each != nil || len(leaf.Named) > 0 {
				return false
			}
		}
	}
	return true
}

// ReadsNow reports whether the duty's rule or message reads `now`.
func (d *Duty) ReadsNow() bool {
	return d.rule.readsNow || (d.messageExpr != nil && d.messageExpr.readsNow)
}

// Related is a declared list of related objects.
type Related struct {
	Name     string
	GVK      schema.GroupVersionKind
	Selector labels.Selector
	// Namespace is the fixed namespace to read from; "" is the workload's.
	Namespace string
}

// Source is where the list's objects come from.
func (r Related) Source() RelatedSource { return RelatedSource{GVK: r.GVK, Namespace: r.Namespace} }

type matrixEntry struct {
	Provider string `json:"provider"`
	Customer string `json:"customer"`
}

// FieldError is one problem in a model, with the path of the field.
type FieldError struct {
	Path    string
	Message string
}

func (e FieldError) Error() string { return e.Path + ": " + e.Message }

// Compile checks and compiles a model. It returns every problem it finds, as
// FieldErrors joined with errors.Join, so that a user fixes them in one go.
func Compile(rm *v1alpha1.ResponsibilityModel) (*Model, error) {
	m := &Model{
		Name:              rm.Name,
		Generation:        rm.Generation,
		Service:           rm.Spec.Service,
		Provider:          rm.Spec.Provider,
		AnnotationWaivers: rm.Spec.Waivers.AcceptsAnnotations(),
		DutyWaivers:       rm.Spec.Waivers.AcceptsDutyWaivers(),
	}
	var errs []error
	fail := func(path, format string, args ...any) {
		errs = append(errs, FieldError{Path: path, Message: fmt.Sprintf(format, args...)})
	}
	if we := rm.Spec.WaiverExpiry; we != nil {
		m.WaiverExpiryRequired = we.Required
		if we.MaxDuration != nil {
			if we.MaxDuration.Duration <= 0 {
				fail("spec.waiverExpiry.maxDuration", "must be positive, got %s", we.MaxDuration.Duration)
			}
			m.WaiverMaxDuration = we.MaxDuration.Duration
		}
	}
	m.params = make(map[string]any, len(rm.Spec.Parameters))
	paramNames := make([]string, 0, len(rm.Spec.Parameters))
	for i, p := range rm.Spec.Parameters {
		if _, dup := m.params[p.Name]; dup {
			fail(fmt.Sprintf("spec.parameters[%d].name", i), "duplicate parameter %q", p.Name)
		}
		m.params[p.Name] = p.Value
		paramNames = append(paramNames, p.Name)
	}
	recheck := DefaultRecheckInterval
	if rm.Spec.RecheckInterval != nil {
		recheck = rm.Spec.RecheckInterval.Duration
		if recheck < MinRecheckInterval {
			fail("spec.recheckInterval", "must be at least %s, got %s", MinRecheckInterval, recheck)
		}
	}

	if len(rm.Spec.Targets) == 0 {
		fail("spec.targets", "at least one target is required")
	}
	for i, t := range rm.Spec.Targets {
		path := fmt.Sprintf("spec.targets[%d]", i)
		gvk, err := parseGVK(t.APIVersion, t.Kind)
		if err != nil {
			fail(path, "%v", err)
			continue
		}
		sel, err := selector(t.Selector)
		if err != nil {
			fail(path+".selector", "%v", err)
			continue
		}
		nsSel, err := selector(t.NamespaceSelector)
		if err != nil {
			fail(path+".namespaceSelector", "%v", err)
			continue
		}
		m.Targets = append(m.Targets, Target{GVK: gvk, Selector: sel, NamespaceSelector: nsSel})
	}

	matrix := make(map[string]matrixEntry, len(rm.Spec.Areas))
	dutyNames := map[string]string{}
	sourceSeen := map[RelatedSource]bool{}
	for i, area := range rm.Spec.Areas {
		areaPath := fmt.Sprintf("spec.areas[%d]", i)
		if _, dup := matrix[area.Name]; dup {
			fail(areaPath+".name", "duplicate area %q", area.Name)
		}
		matrix[area.Name] = matrixEntry{Provider: area.Provider, Customer: area.Customer}
		for j, d := range area.Duties {
			path := fmt.Sprintf("%s.duties[%d]", areaPath, j)
			if other, dup := dutyNames[d.Name]; dup {
				fail(path+".name", "duplicate duty %q (also in area %q)", d.Name, other)
			}
			dutyNames[d.Name] = area.Name
			duty, derrs := compileDuty(path, area.Name, d, paramNames)
			errs = append(errs, derrs...)
			if duty == nil {
				continue
			}
			action := d.Admission
			if action == "" {
				action = rm.Spec.Admission
			}
			var err error
			if duty.admission, err = admissionDuty(duty, action, d.Rule, d.MessageExpression, m.params); err != nil {
				fail(path+".admission", "%v", err)
			}
			for _, r := range duty.Related {
				if src := r.Source(); !sourceSeen[src] {
					sourceSeen[src] = true
					m.relatedSources = append(m.relatedSources, src)
				}
			}
			m.Duties = append(m.Duties, duty)
			if duty.ReadsNow() {
				m.Recheck = recheck
			}
		}
	}
	m.joins = relatedJoinsOf(m.Duties)
	if len(m.joins) > 0 {
		m.joinIndex = &joinIndex{}
	}
	errs = append(errs, checkParams(rm.Spec.Parameters, m.Duties)...)
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	m.matrixJSON = encodeJSON(matrix)
	m.matrix = matrixAnnotation([]*Model{m})
	m.fields = m.readFields()
	return m, nil
}

// readFields gathers what the duties read of each kind: of every target
// kind what any rule or message reads of object, of a related kind what it
// reads of the elements of the lists declared with that kind.
func (m *Model) readFields() map[schema.GroupVersionKind]*Fields {
	var object *Fields
	fields := map[schema.GroupVersionKind]*Fields{}
	for _, d := range m.Duties {
		for _, p := range []*program{d.rule, d.messageExpr} {
			if p == nil {
				continue
			}
			object = object.Union(p.object)
			for _, r := range d.Related {
				fields[r.GVK] = fields[r.GVK].Union(relatedElements(p.related, r.Name))
			}
		}
	}
	for _, t := range m.Targets {
		fields[t.GVK] = fields[t.GVK].Union(object)
	}
	return fields
}

// Fields returns what the model's rules and messages read of the objects of
// a kind it targets or reads as related; nil is the metadata only.
func (m *Model) Fields(gvk schema.GroupVersionKind) *Fields { return m.fields[gvk] }

// checkParams refuses a parameter value that a rule or message converts
// (duration(params.x), int(params.x), ...) and that would not convert: the
// duty would otherwise be Unknown on every object.
func checkParams(params []v1alpha1.Parameter, duties []*Duty) []error {
	var errs []error
	for i, p := range params {
		seen := map[string]bool{}
		for _, d := range duties {
			for _, prog := range []*program{d.rule, d.messageExpr} {
				if prog == nil {
					continue
				}
				for _, fn := range prog.conversions[p.Name] {
					if seen[fn] {
						continue
					}
					seen[fn] = true
					if err := paramConverters[fn](p.Value); err != nil {
						errs = append(errs, FieldError{Path: fmt.Sprintf("spec.parameters[%d].value", i),
							Message: fmt.Sprintf("%q is not a valid %s, as duty %s reads it with %s(params.%s): %v", p.Value, fn, d.Name, fn, p.Name, err)})
					}
				}
			}
		}
	}
	return errs
}

// Re-check intervals of models whose rules read `now`.
const (
	DefaultRecheckInterval = 5 * time.Minute
	MinRecheckInterval     = 10 * time.Second
)

func compileDuty(path, area string, d v1alpha1.Duty, paramNames []string) (*Duty, []error) {
	var errs []error
	duty := &Duty{
		Name:        d.Name,
		Area:        area,
		Description: d.Description,
		Message:     d.Message,
		Severity:    d.Severity,
	}
	if duty.Severity == "" {
		duty.Severity = v1alpha1.SeverityWarning
	}
	relatedNames := make([]string, 0, len(d.Related))
	for k, r := range d.Related {
		rpath := fmt.Sprintf("%s.related[%d]", path, k)
		gvk, err := parseGVK(r.APIVersion, r.Kind)
		if err != nil {
			errs = append(errs, FieldError{Path: rpath, Message: err.Error()})
			continue
		}
		sel, err := selector(r.Selector)
		if err != nil {
			errs = append(errs, FieldError{Path: rpath + ".selector", Message: err.Error()})
			continue
		}
		duty.Related = append(duty.Related, Related{Name: r.Name, GVK: gvk, Selector: sel, Namespace: r.Namespace})
		relatedNames = append(relatedNames, r.Name)
	}
	env, err := ruleEnv(relatedNames, paramNames)
	if err != nil {
		return nil, append(errs, FieldError{Path: path + ".related", Message: err.Error()})
	}
	duty.rule, err = compileProgram(env, d.Rule, boolResult)
	if err != nil {
		errs = append(errs, FieldError{Path: path + ".rule", Message: fmt.Sprintf("duty %s: %v", d.Name, err)})
	}
	if d.MessageExpression != "" {
		duty.messageExpr, err = compileProgram(env, d.MessageExpression, stringResult)
		if err != nil {
			errs = append(errs, FieldError{Path: path + ".messageExpression", Message: fmt.Sprintf("duty %s: %v", d.Name, err)})
		}
	}
	if len(errs) > 0 {
		return nil, errs
	}
	duty.namespaceWide = readsNamespaceOnly(duty.rule.object) && (duty.messageExpr == nil || readsNamespaceOnly(duty.messageExpr.object))
	return duty, nil
}

func parseGVK(apiVersion, kind string) (schema.GroupVersionKind, error) {
	gv, err := schema.ParseGroupVersion(apiVersion)
	if err != nil {
		return schema.GroupVersionKind{}, fmt.Errorf("apiVersion %q: %w", apiVersion, err)
	}
	if gv.Version == "" || kind == "" {
		return schema.GroupVersionKind{}, fmt.Errorf("apiVersion and kind are required, got %q %q", apiVersion, kind)
	}
	return gv.WithKind(kind), nil
}

func selector(ls *metav1.LabelSelector) (labels.Selector, error) {
	if ls == nil {
		return labels.Everything(), nil
	}
	sel, err := metav1.LabelSelectorAsSelector(ls)
	if err != nil {
		return nil, fmt.Errorf("label selector: %w", err)
	}
	return sel, nil
}

// TargetKinds returns the distinct kinds this model targets.
func (m *Model) TargetKinds() []schema.GroupVersionKind {
	seen := map[schema.GroupVersionKind]bool{}
	var out []schema.GroupVersionKind
	for _, t := range m.Targets {
		if !seen[t.GVK] {
			seen[t.GVK] = true
			out = append(out, t.GVK)
		}
	}
	return out
}

// RelatedSources returns the distinct kind and namespace pairs the rules of
// this model read.
func (m *Model) RelatedSources() []RelatedSource { return m.relatedSources }

// RelatedJoin is the path of the field of a related source's objects on
// which every rule and message that reads them joins the workload's name
// (see relatedJoins): a change of such an object concerns only the
// workloads of its namespace it names. nil when a read is not a join, or
// the source is read from a fixed namespace.
func (m *Model) RelatedJoin(src RelatedSource) []string {
	return m.joins[src]
}

// relatedJoinsOf combines what the duties' expressions join each source on.
func relatedJoinsOf(duties []*Duty) map[RelatedSource][]string {
	out := map[RelatedSource][]string{}
	unjoined := map[RelatedSource]bool{}
	for _, d := range duties {
		for _, r := range d.Related {
			src := r.Source()
			for _, p := range []*program{d.rule, d.messageExpr} {
				if p == nil {
					continue
				}
				path, read := p.joins[r.Name]
				switch {
				case !read && !p.relatedWhole:
					continue
				case path == nil || src.Namespace != "" || p.relatedWhole:
					unjoined[src] = true
				case out[src] != nil && !slices.Equal(out[src], path):
					unjoined[src] = true
				default:
					out[src] = path
				}
			}
		}
	}
	for src := range unjoined {
		delete(out, src)
	}
	return out
}

// Matches reports whether the model applies to an object of kind gvk with the
// given labels, in a namespace with the given labels. namespaced is false for
// cluster-scoped objects, which match only targets without a namespace selector.
func (m *Model) Matches(gvk schema.GroupVersionKind, objectLabels, namespaceLabels labels.Labels, namespaced bool) bool {
	for _, t := range m.Targets {
		if t.GVK != gvk || !t.Selector.Matches(objectLabels) {
			continue
		}
		if !namespaced {
			if t.NamespaceSelector.Empty() {
				return true
			}
			continue
		}
		if t.NamespaceSelector.Matches(namespaceLabels) {
			return true
		}
	}
	return false
}

// SortModels orders models by name: the order of every multi-model annotation.
func SortModels(models []*Model) {
	sort.Slice(models, func(i, j int) bool { return models[i].Name < models[j].Name })
}

// FieldErrors returns the FieldErrors inside an error returned by Compile.
func FieldErrors(err error) []FieldError {
	var out []FieldError
	var walk func(error)
	walk = func(e error) {
		if fe, ok := e.(FieldError); ok { //nolint:errorlint // walks the tree of errors.Join itself
			out = append(out, fe)
			return
		}
		if j, ok := e.(interface{ Unwrap() []error }); ok {
			for _, inner := range j.Unwrap() {
				walk(inner)
			}
		}
	}
	walk(err)
	return out
}

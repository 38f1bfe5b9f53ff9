package evaluate

import (
	"encoding/json"
	"fmt"
	"hash/fnv"
	"slices"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/cel-go/common/types"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/responsibility-operator/responsibility-operator/api/v1alpha1"
)

// Input is everything the evaluation of one object reads.
type Input struct {
	// GVK is the kind of the object.
	GVK schema.GroupVersionKind
	// Object is the object's content, as unstructured JSON values.
	Object map[string]any
	// Namespace is the content of the object's Namespace; nil for a
	// cluster-scoped object.
	Namespace map[string]any
	// Related holds, per source (see Model.RelatedSources), the objects the
	// matching models declared as related: of the object's namespace for a
	// source without a namespace, of the named namespace otherwise.
	Related map[RelatedSource][]map[string]any
	// Now is the time of the evaluation: the rules' `now`, and the instant
	// waivers' expiries are compared with.
	Now time.Time
	// Waivers are the DutyWaivers of the object's namespace, sorted by name
	// (SortWaivers); those that select the object apply to it.
	Waivers []*Waiver
}

// DutyResult is the state of one duty of one model on one object.
type DutyResult struct {
	Model   string
	Duty    *Duty
	State   v1alpha1.DutyState
	Message string
	// Waiver names the DutyWaiver that turned the duty Waived; empty
	// otherwise (a waiver annotation, or no waiver).
	Waiver string
	// NamespaceWide is whether the finding is the namespace's rather than
	// the object's: the duty is NamespaceWide and the object namespaced.
	NamespaceWide bool
}

// Result is what the operator wants on an object.
type Result struct {
	// Models are the matching models, sorted by name.
	Models []*Model
	// Duties are the duty states, by model then by duty name.
	Duties []DutyResult
	// Annotations are the desired operator-owned annotations; empty when no
	// model matches, which means "remove every operator-owned annotation".
	Annotations map[string]string
	// Labels are the desired operator-owned labels.
	Labels map[string]string
	// IgnoredWaivers are waiver annotations that had no effect, with the reason.
	IgnoredWaivers []IgnoredWaiver
	// Recheck is how often the object is to be evaluated again with nothing
	// changed, because a duty of a matching model reads `now` (the
	// shortest of those models' intervals); 0 when no duty does.
	Recheck time.Duration
	// NextChange is the next instant at which the result changes with time
	// alone, for a reason known now: a waiver that expires, or one that
	// comes within its model's maximum duration. Zero when there is none.
	NextChange time.Time
}

// IgnoredWaiver is a waiver annotation that did not apply.
type IgnoredWaiver struct {
	// Duty is the duty name the waiver annotation names.
	Duty   string
	Reason string
}

// Match returns the models, sorted by name, that apply to an object.
func Match(models []*Model, gvk schema.GroupVersionKind, objectLabels map[string]string, namespace map[string]any, namespaced bool) []*Model {
	var nsLabels labels.Set
	if namespace != nil {
		nsLabels = stringMap(namespace, "metadata", "labels")
	}
	var out []*Model
	for _, m := range models {
		if m.Matches(gvk, labels.Set(objectLabels), nsLabels, namespaced) {
			out = append(out, m)
		}
	}
	SortModels(out)
	return out
}

// Evaluate computes the duty states and desired annotations of an object for
// the models that match it (as returned by Match). It is pure: same input,
// same result, byte for byte, whatever the order of the models.
func Evaluate(matched []*Model, in Input) Result {
	res := Result{Annotations: make(map[string]string, 8), Labels: make(map[string]string, 1)}
	if len(matched) == 0 {
		return res
	}
	matched = append([]*Model(nil), matched...)
	SortModels(matched)
	res.Models = matched
	objAnnotations := stringMap(in.Object, "metadata", "annotations")
	waivers := waiversOf(objAnnotations)
	usedWaivers := map[string]bool{}

	act := &activation{object: in.Object, now: types.Timestamp{Time: in.Now}}
	if in.Namespace != nil {
		act.namespace = in.Namespace
	}
	names := make([]string, 0, len(matched))
	providers := make([]string, 0, len(matched))
	services := make([]string, 0, len(matched))
	duties := 0
	for _, m := range matched {
		duties += len(m.Duties)
	}
	if duties > 0 {
		res.Duties = make([]DutyResult, 0, duties)
	}
	name, _, _ := unstructured.NestedString(in.Object, "metadata", "name")
	namespace, _, _ := unstructured.NestedString(in.Object, "metadata", "namespace")
	var objLabels labels.Set
	if len(in.Waivers) > 0 {
		objLabels = stringMap(in.Object, "metadata", "labels")
	}
	for _, m := range matched {
		names = append(names, m.Name)
		providers = appendUnique(providers, m.Provider)
		services = append(services, m.Service)
		if m.Recheck > 0 && (res.Recheck == 0 || m.Recheck < res.Recheck) {
			res.Recheck = m.Recheck
		}
		act.params = m.params

		for _, d := range m.Duties {
			act.related, act.relatedItems = m.relatedFor(d, in.Related, namespace, name)
			dr := evaluateDuty(m, d, act)
			dr.NamespaceWide = namespace != "" && d.NamespaceWide()
			raw, waived := waivers[d.Name]
			if waived {
				usedWaivers[d.Name] = true
			}
			if dr.State == v1alpha1.DutyUnmet && len(in.Waivers) > 0 {
				w, next := dutyWaiverFor(in.Waivers, m, d.Name, name, objLabels, in.Now)
				res.noteChange(next)
				if w != nil {
					dr.State, dr.Message, dr.Waiver = v1alpha1.DutyWaived, w.message(), w.Name
				}
			}
			if dr.State == v1alpha1.DutyUnmet && waived {
				w := parseWaiver(raw)
				if why, next := m.refuses(w, in.Now); why != "" {
					res.IgnoredWaivers = append(res.IgnoredWaivers, IgnoredWaiver{Duty: d.Name, Reason: why})
					res.noteChange(next)
				} else {
					dr.State, dr.Message = v1alpha1.DutyWaived, w.message()
					res.noteChange(w.expires)
				}
			}
			res.Duties = append(res.Duties, dr)
		}
	}
	for _, name := range sortedKeys(waivers) {
		if !usedWaivers[name] && !hasDuty(matched, name) {
			res.IgnoredWaivers = append(res.IgnoredWaivers, IgnoredWaiver{
				Duty:   name,
				Reason: fmt.Sprintf("no matching model has a duty named %q", name),
			})
		}
	}
	slices.SortStableFunc(res.Duties, func(a, b DutyResult) int {
		if c := strings.Compare(a.Model, b.Model); c != 0 {
			return c
		}
		return strings.Compare(a.Duty.Name, b.Duty.Name)
	})

	res.Annotations[v1alpha1.AnnotationModels] = strings.Join(names, ",")
	res.Annotations[v1alpha1.AnnotationProvider] = strings.Join(providers, ", ")
	res.Annotations[v1alpha1.AnnotationService] = strings.Join(services, "; ")
	res.Annotations[v1alpha1.AnnotationMatrix] = matrixAnnotation(matched)
	res.Annotations[v1alpha1.AnnotationUnmet] = strings.Join(res.Unmet(), ",")
	if len(res.Duties) > 0 {
		res.Annotations[v1alpha1.AnnotationDuties] = encodeDuties(res.Duties)
	}
	if ignored := ignoredWaiverDuties(res.IgnoredWaivers); len(ignored) > 0 {
		res.Annotations[v1alpha1.AnnotationIgnoredWaivers] = strings.Join(ignored, ",")
	}
	res.Labels[v1alpha1.LabelStatus] = res.Status()
	return res
}

// matrixAnnotation is the value of the matrix annotation: each model's
// entry under its name.
func matrixAnnotation(matched []*Model) string {
	if len(matched) == 1 && matched[0].matrix != "" {
		return matched[0].matrix // most objects match one model: share its string
	}
	size := 2
	for _, m := range matched {
		size += len(m.Name) + len(m.matrixJSON) + 4
	}
	var b strings.Builder
	b.Grow(size)
	b.WriteByte('{')
	for i, m := range matched {
		if i > 0 {
			b.WriteByte(',')
		}
		writeJSONString(&b, m.Name)
		b.WriteByte(':')
		b.WriteString(m.matrixJSON)
	}
	b.WriteByte('}')
	return b.String()
}

func evaluateDuty(m *Model, d *Duty, act *activation) DutyResult {
	dr := DutyResult{Model: m.Name, Duty: d}
	met, err := d.rule.evalBool(act)
	switch {
	case err != nil:
		dr.State, dr.Message = v1alpha1.DutyUnknown, "rule could not be evaluated: "+err.Error()
	case met:
		dr.State = v1alpha1.DutyMet
	default:
		dr.State, dr.Message = v1alpha1.DutyUnmet, unmetMessage(d, act)
	}
	return dr
}

func unmetMessage(d *Duty, act *activation) string {
	if d.messageExpr != nil {
		msg, err := d.messageExpr.evalString(act)
		if err == nil && msg != "" {
			return msg
		}
	}
	if d.Message != "" {
		return d.Message
	}
	if d.Description != "" {
		return d.Description
	}
	return "duty " + d.Name + " is not met"
}

// noRelated is related for a duty that declares none. CEL does not
// modify the values it reads.
var noRelated = map[string]any{}

// relatedFor selects, for each related list of a duty, the objects of its
// kind that match its selector, and the length of the longest list. Of a
// source the model joins on the workload's name (joins, see relatedJoins)
// it keeps only the objects whose join field is name: the others cannot
// change any expression's result, and a rule then walks one or two objects
// rather than every one of the namespace. A long list is looked up in the
// model's index of it (joinIndex) rather than walked.
func (m *Model) relatedFor(d *Duty, all map[RelatedSource][]map[string]any, namespace, name string) (map[string]any, int) {
	if len(d.Related) == 0 {
		return noRelated, 0
	}
	out := make(map[string]any, len(d.Related))
	longest := 0
	for _, r := range d.Related {
		src := r.Source()
		objs, join := all[src], m.joins[src]
		var list []any
		switch {
		case join != nil && m.joinIndex != nil && len(objs) >= minJoinIndexed:
			list = m.joinIndex.joined(src, namespace, join, objs, name)
			if !r.Selector.Empty() {
				list = selected(r.Selector, list)
			}
		case join != nil:
			for _, o := range objs {
				if v, _, _ := unstructured.NestedString(o, join...); v == name && r.Selector.Matches(labels.Set(stringMap(o, "metadata", "labels"))) {
					list = append(list, o)
				}
			}
		default:
			list = make([]any, 0, len(objs))
			for _, o := range objs {
				if r.Selector.Empty() || r.Selector.Matches(labels.Set(stringMap(o, "metadata", "labels"))) {
					list = append(list, o)
				}
			}
		}
		if list == nil {
			list = []any{}
		}
		out[r.Name] = list
		longest = max(longest, len(list))
	}
	return out, longest
}

// selected returns the objects of list whose labels sel matches, in a new
// slice.
func selected(sel labels.Selector, list []any) []any {
	out := make([]any, 0, len(list))
	for _, o := range list {
		if sel.Matches(labels.Set(stringMap(o.(map[string]any), "metadata", "labels"))) {
			out = append(out, o)
		}
	}
	return out
}

// Unmet returns the unmet duties as model/duty, sorted.
func (r Result) Unmet() []string {
	var out []string
	for _, d := range r.Duties {
		if d.State == v1alpha1.DutyUnmet {
			out = append(out, d.Model+"/"+d.Duty.Name)
		}
	}
	return out
}

// Status is the value of the status label: unmet, else unknown, else met.
func (r Result) Status() string {
	status := v1alpha1.StatusMet
	for _, d := range r.Duties {
		switch d.State {
		case v1alpha1.DutyUnmet:
			return v1alpha1.StatusUnmet
		case v1alpha1.DutyUnknown:
			status = v1alpha1.StatusUnknown
		}
	}
	return status
}

// DutyAnnotation is the value of one duty in the duties annotation.
type DutyAnnotation struct {
	State   v1alpha1.DutyState `json:"state"`
	Message string             `json:"message,omitempty"`
	// Waiver names the DutyWaiver (of the object's namespace) that waives
	// the duty; absent otherwise.
	Waiver string `json:"waiver,omitempty"`
	// Scope is "Namespace" for a namespace-wide duty (DutyResult.
	// NamespaceWide): every object of the model in the namespace has the
	// same state, and the operator reports it once for the namespace.
	// Absent for a duty of the object.
	Scope string `json:"scope,omitempty"`
}

// ScopeNamespace is DutyAnnotation.Scope of a namespace-wide duty.
const ScopeNamespace = "Namespace"

// encodeDuties writes the duties annotation: a JSON object of models, each an
// object of duties, keys sorted, as encodeJSON would write the nested maps.
// duties must be sorted by model, then duty name; of two results for the same
// duty the later one is written.
func encodeDuties(duties []DutyResult) string {
	var b strings.Builder
	b.Grow(64 * len(duties))
	b.WriteByte('{')
	model := ""
	for i, d := range duties {
		if i+1 < len(duties) && duties[i+1].Model == d.Model && duties[i+1].Duty.Name == d.Duty.Name {
			continue
		}
		switch {
		case b.Len() == 1:
			writeJSONString(&b, d.Model)
			b.WriteString(":{")
		case d.Model != model:
			b.WriteString("},")
			writeJSONString(&b, d.Model)
			b.WriteString(":{")
		default:
			b.WriteByte(',')
		}
		model = d.Model
		writeJSONString(&b, d.Duty.Name)
		b.WriteString(`:{"state":`)
		writeJSONString(&b, string(d.State))
		if d.Message != "" {
			b.WriteString(`,"message":`)
			writeJSONString(&b, d.Message)
		}
		if d.Waiver != "" {
			b.WriteString(`,"waiver":`)
			writeJSONString(&b, d.Waiver)
		}
		if d.NamespaceWide {
			b.WriteString(`,"scope":"` + ScopeNamespace + `"`)
		}
		b.WriteByte('}')
	}
	if b.Len() > 1 {
		b.WriteByte('}')
	}
	b.WriteByte('}')
	return b.String()
}

// encodeJSON is compact JSON without HTML escaping, so that "&" in an area
// name reads as "&" in kubectl and jq. Maps encode with sorted keys.
func encodeJSON(v any) string {
	var b strings.Builder
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil { // maps and strings always encode
		panic(fmt.Sprintf("encode annotation: %v", err))
	}
	return strings.TrimSuffix(b.String(), "\n")
}

// ParseDuties reads a duties annotation. A missing or malformed value (a
// tenant may have edited it) reads as no previous states.
func ParseDuties(value string) map[string]map[string]DutyAnnotation {
	out := map[string]map[string]DutyAnnotation{}
	if value == "" {
		return out
	}
	if err := json.Unmarshal([]byte(value), &out); err != nil {
		return map[string]map[string]DutyAnnotation{}
	}
	return out
}

// Transition is a change of a duty's state that deserves an event.
type Transition struct {
	DutyResult
	// Previous is the state before, empty when the duty was not recorded.
	Previous v1alpha1.DutyState
	// Waivers is the duty's model's waiver policy, for the event to say
	// how the duty may be waived.
	Waivers v1alpha1.WaiverPolicy
}

// Transitions compares the recorded duty states (the object's current duties
// annotation) with a new result and returns the changes worth an event: a
// duty that turns Unmet (or is first found Unmet) and a duty that turns Met
// from Unmet.
func Transitions(previous map[string]map[string]DutyAnnotation, r Result) []Transition {
	var out []Transition
	for _, d := range r.Duties {
		prev := previous[d.Model][d.Duty.Name].State
		if IsTransition(prev, d.State) {
			t := Transition{DutyResult: d, Previous: prev}
			for _, m := range r.Models {
				if m.Name == d.Model {
					t.Waivers = m.WaiverPolicy()
				}
			}
			out = append(out, t)
		}
	}
	return out
}

// IsTransition says whether a duty's change of state deserves an event:
// turning Unmet (or first found Unmet), or turning Met from Unmet.
func IsTransition(previous, state v1alpha1.DutyState) bool {
	switch state {
	case v1alpha1.DutyUnmet:
		return previous != v1alpha1.DutyUnmet
	case v1alpha1.DutyMet:
		return previous == v1alpha1.DutyUnmet
	}
	return false
}

func ignoredWaiverDuties(ws []IgnoredWaiver) []string {
	var out []string
	for _, w := range ws {
		out = appendUnique(out, w.Duty)
	}
	sort.Strings(out)
	return out
}

// NewlyIgnoredWaivers returns the ignored waivers that the object's previous
// ignored-waivers annotation did not list yet: those deserve an event.
func NewlyIgnoredWaivers(previous string, r Result) []IgnoredWaiver {
	known := map[string]bool{}
	for _, d := range strings.Split(previous, ",") {
		known[d] = true
	}
	var out []IgnoredWaiver
	for _, w := range r.IgnoredWaivers {
		if !known[w.Duty] {
			out = append(out, w)
		}
	}
	return out
}

// OwnedDigest is a digest of an object's operator-owned annotations and
// label: equal digests mean, but for a 64-bit hash collision, equal
// metadata (OwnedMetadataEqual). A missing key differs from an empty one.
func OwnedDigest(annotations, objLabels map[string]string) uint64 {
	h := fnv.New64a()
	write := func(v string, ok bool) {
		if ok {
			_, _ = h.Write([]byte{1})
			_, _ = h.Write([]byte(v))
		}
		_, _ = h.Write([]byte{0})
	}
	for _, k := range v1alpha1.OwnedAnnotations {
		v, ok := annotations[k]
		write(v, ok)
	}
	v, ok := objLabels[v1alpha1.LabelStatus]
	write(v, ok)
	return h.Sum64()
}

// OwnedMetadataEqual reports whether an object's operator-owned annotations
// and labels are exactly the desired ones: nothing to write.
func OwnedMetadataEqual(annotations, objLabels map[string]string, r Result) bool {
	for _, k := range v1alpha1.OwnedAnnotations {
		want, wantOK := r.Annotations[k]
		have, haveOK := annotations[k]
		if wantOK != haveOK || want != have {
			return false
		}
	}
	want, wantOK := r.Labels[v1alpha1.LabelStatus]
	have, haveOK := objLabels[v1alpha1.LabelStatus]
	return wantOK == haveOK && want == have
}

// waiver is a parsed waiver annotation.
type waiver struct {
	reason string
	// expires is when the waiver stops applying; zero when it does not.
	expires time.Time
	// badExpiry is the expiry text that is not a time, if any.
	badExpiry string
}

// WaiverExpiry is the expiry of a waiver annotation's value ("expires <RFC
// 3339 time>: <reason>"); zero when it has none or it does not parse.
func WaiverExpiry(value string) time.Time {
	return parseWaiver(value).expires
}

// parseWaiver reads a waiver annotation's value: "<reason>", or
// "expires <RFC 3339 time>: <reason>".
func parseWaiver(v string) waiver {
	rest, ok := strings.CutPrefix(v, v1alpha1.WaiverExpiresPrefix)
	if !ok {
		return waiver{reason: v}
	}
	at, reason, _ := strings.Cut(rest, ": ")
	t, err := time.Parse(time.RFC3339, strings.TrimSpace(at))
	if err != nil {
		return waiver{reason: reason, badExpiry: at}
	}
	return waiver{reason: reason, expires: t.UTC()}
}

// message is the duty message of a duty the waiver applies to.
func (w waiver) message() string {
	if w.expires.IsZero() {
		return "waived: " + w.reason
	}
	return "waived until " + w.expires.Format(time.RFC3339) + ": " + w.reason
}

// refuses says why the model does not accept a waiver annotation at now
// ("" when it does), and when that may change with time alone (zero when it
// will not).
func (m *Model) refuses(w waiver, now time.Time) (why string, next time.Time) {
	switch {
	case !m.AnnotationWaivers && m.DutyWaivers:
		return fmt.Sprintf("model %s accepts DutyWaivers only, not waiver annotations", m.Name), time.Time{}
	case !m.AnnotationWaivers:
		return fmt.Sprintf("model %s forbids waivers", m.Name), time.Time{}
	case w.badExpiry != "":
		return fmt.Sprintf("its expiry %q is not an RFC 3339 time (%s2027-03-31T00:00:00Z: <reason>)", w.badExpiry, v1alpha1.WaiverExpiresPrefix), time.Time{}
	}
	return m.refusesExpiry(w.expires, now, v1alpha1.WaiverExpiresPrefix+"<RFC 3339 time>: <reason>")
}

// noteChange keeps the earliest instant at which the result changes.
func (r *Result) noteChange(t time.Time) {
	if !t.IsZero() && (r.NextChange.IsZero() || t.Before(r.NextChange)) {
		r.NextChange = t
	}
}

func waiversOf(annotations map[string]string) map[string]string {
	var out map[string]string
	for k, v := range annotations {
		if name, ok := strings.CutPrefix(k, v1alpha1.AnnotationWaivePrefix); ok {
			if out == nil {
				out = map[string]string{}
			}
			out[name] = v
		}
	}
	return out
}

func hasDuty(models []*Model, name string) bool {
	for _, m := range models {
		for _, d := range m.Duties {
			if d.Name == name {
				return true
			}
		}
	}
	return false
}

// stringMap reads a map of strings at a path of an unstructured object,
// skipping values that are not strings.
func stringMap(obj map[string]any, path ...string) map[string]string {
	cur := any(obj)
	for _, p := range path {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		cur = m[p]
	}
	m, ok := cur.(map[string]any)
	if !ok {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		if s, ok := v.(string); ok {
			out[k] = s
		}
	}
	return out
}

func appendUnique(list []string, s string) []string {
	for _, x := range list {
		if x == s {
			return list
		}
	}
	return append(list, s)
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// writeJSONString writes s as a JSON string exactly as encodeJSON does:
// without HTML escaping, with invalid UTF-8 replaced by U+FFFD and U+2028 and
// U+2029 escaped.
func writeJSONString(b *strings.Builder, s string) {
	const hex = "0123456789abcdef"
	b.WriteByte('"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b.WriteString(s[start:i])
			switch c {
			case '"', '\\':
				b.WriteByte('\\')
				b.WriteByte(c)
			case '\b':
				b.WriteString(`\b`)
			case '\f':
				b.WriteString(`\f`)
			case '\n':
				b.WriteString(`\n`)
			case '\r':
				b.WriteString(`\r`)
			case '\t':
				b.WriteString(`\t`)
			default:
				b.WriteString(`\u00`)
				b.WriteByte(hex[c>>4])
				b.WriteByte(hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b.WriteString(s[start:i])
			b.WriteString(`\ufffd`)
		case r == '\u2028' || r == '\u2029':
			b.WriteString(s[start:i])
			b.WriteString(`\u202`)
			b.WriteByte(hex[r&0xf])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	b.WriteString(s[start:])
	b.WriteByte('"')
}

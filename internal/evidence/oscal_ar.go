package evidence

import (
	"fmt"
	"io"
	"slices"
	"strings"
)

// The assessment results model (OSCAL 1.1.3 oscal-ar).

type assessmentResultsDocument struct {
	AssessmentResults assessmentResults `json:"assessment-results"`
}

type assessmentResults struct {
	UUID       string      `json:"uuid"`
	Metadata   metadata    `json:"metadata"`
	ImportAP   importAP    `json:"import-ap"`
	Results    []result    `json:"results"`
	BackMatter *backMatter `json:"back-matter,omitempty"`
}

type importAP struct {
	Href    string `json:"href"`
	Remarks string `json:"remarks,omitempty"`
}

type result struct {
	UUID             string           `json:"uuid"`
	Title            string           `json:"title"`
	Description      string           `json:"description"`
	Start            string           `json:"start"`
	End              string           `json:"end,omitempty"`
	Props            []prop           `json:"props,omitempty"`
	LocalDefinitions localDefinitions `json:"local-definitions"`
	ReviewedControls reviewedControls `json:"reviewed-controls"`
	Observations     []observation    `json:"observations,omitempty"`
	Risks            []risk           `json:"risks,omitempty"`
	Findings         []finding        `json:"findings,omitempty"`
	Remarks          string           `json:"remarks,omitempty"`
}

type localDefinitions struct {
	Components       []systemComponent `json:"components,omitempty"`
	InventoryItems   []inventoryItem   `json:"inventory-items,omitempty"`
	AssessmentAssets *assessmentAssets `json:"assessment-assets,omitempty"`
}

type systemComponent struct {
	UUID             string            `json:"uuid"`
	Type             string            `json:"type"`
	Title            string            `json:"title"`
	Description      string            `json:"description"`
	Props            []prop            `json:"props,omitempty"`
	Status           componentStatus   `json:"status"`
	ResponsibleRoles []responsibleRole `json:"responsible-roles,omitempty"`
}

type componentStatus struct {
	State string `json:"state"`
}

type inventoryItem struct {
	UUID                  string         `json:"uuid"`
	Description           string         `json:"description"`
	Props                 []prop         `json:"props,omitempty"`
	ImplementedComponents []componentRef `json:"implemented-components,omitempty"`
}

type componentRef struct {
	ComponentUUID string `json:"component-uuid"`
}

type assessmentAssets struct {
	Components          []systemComponent    `json:"components,omitempty"`
	AssessmentPlatforms []assessmentPlatform `json:"assessment-platforms"`
}

type assessmentPlatform struct {
	UUID           string         `json:"uuid"`
	Title          string         `json:"title,omitempty"`
	UsesComponents []componentRef `json:"uses-components,omitempty"`
}

type reviewedControls struct {
	ControlSelections []controlSelection `json:"control-selections"`
}

type controlSelection struct {
	Description     string          `json:"description,omitempty"`
	IncludeAll      *struct{}       `json:"include-all,omitempty"`
	IncludeControls []selectControl `json:"include-controls,omitempty"`
}

type selectControl struct {
	ControlID string `json:"control-id"`
}

type observation struct {
	UUID             string             `json:"uuid"`
	Title            string             `json:"title,omitempty"`
	Description      string             `json:"description"`
	Props            []prop             `json:"props,omitempty"`
	Methods          []string           `json:"methods"`
	Origins          []origin           `json:"origins,omitempty"`
	Subjects         []subjectReference `json:"subjects,omitempty"`
	RelevantEvidence []relevantEvidence `json:"relevant-evidence,omitempty"`
	Collected        string             `json:"collected"`
}

type origin struct {
	Actors []originActor `json:"actors"`
}

type originActor struct {
	Type      string `json:"type"`
	ActorUUID string `json:"actor-uuid"`
}

type subjectReference struct {
	SubjectUUID string `json:"subject-uuid"`
	Type        string `json:"type"`
	Title       string `json:"title,omitempty"`
}

type relevantEvidence struct {
	Description string `json:"description"`
}

type uuidRef struct {
	ObservationUUID string `json:"observation-uuid,omitempty"`
	RiskUUID        string `json:"risk-uuid,omitempty"`
}

type risk struct {
	UUID                string    `json:"uuid"`
	Title               string    `json:"title"`
	Description         string    `json:"description"`
	Statement           string    `json:"statement"`
	Props               []prop    `json:"props,omitempty"`
	Status              string    `json:"status"`
	Deadline            string    `json:"deadline,omitempty"`
	RelatedObservations []uuidRef `json:"related-observations,omitempty"`
}

type finding struct {
	UUID                string        `json:"uuid"`
	Title               string        `json:"title"`
	Description         string        `json:"description"`
	Props               []prop        `json:"props,omitempty"`
	Target              findingTarget `json:"target"`
	RelatedObservations []uuidRef     `json:"related-observations,omitempty"`
	RelatedRisks        []uuidRef     `json:"related-risks,omitempty"`
}

type findingTarget struct {
	Type        string          `json:"type"`
	TargetID    string          `json:"target-id"`
	Title       string          `json:"title,omitempty"`
	Description string          `json:"description,omitempty"`
	Status      objectiveStatus `json:"status"`
}

type objectiveStatus struct {
	State   string `json:"state"`
	Reason  string `json:"reason,omitempty"`
	Remarks string `json:"remarks,omitempty"`
}

// Duty states, as the duties annotation writes them.
const (
	stateMet     = "Met"
	stateUnmet   = "Unmet"
	stateUnknown = "Unknown"
	stateWaived  = "Waived"
)

// Values of the schema's enumerations.
const (
	statusNotSatisfied   = "not-satisfied"
	componentOperational = "operational"
)

// Waiver sources of Waiver.Source.
const (
	sourceDutyWaiver = "DutyWaiver"
	sourceAnnotation = "annotation"
)

// WriteAssessmentResults writes the duty states of the Snapshot as one OSCAL
// assessment results document (JSON) with one result, the collection: its
// start and end and every observation's collected time are CollectedAt. Each
// evaluated object is an inventory item (implementing the components of the
// models that match it, as in WriteComponentDefinition) and the subject of
// one observation per duty; each duty state is a finding whose target is the
// duty (objective-id model.duty): satisfied (pass) when Met, not-satisfied
// when Unmet (fail) or Unknown (other). A Waived duty is not satisfied
// (fail) and its waiver is a risk whose status is deviation-approved, with
// the waiver's reason, ticket, grantor and expiry (the risk's deadline).
// The responsibility-operator, which evaluated the duties, is the tool every
// observation originates from.
//
// There is no OSCAL assessment plan to import: import-ap points to a
// back-matter resource that says so. The document's UUID is the same for
// every collection of the same cluster and namespace; metadata.version is
// the time of collection.
func WriteAssessmentResults(w io.Writer, s Snapshot) error {
	return writeJSON(w, assessmentResultsDocument{AssessmentResults: newAssessmentResults(s)})
}

// Tools of the assessment assets.
var (
	operatorUUID = newUUID("tool", "responsibility-operator")
	pluginUUID   = newUUID("tool", "kubectl-responsibility")
)

// arBuilder collects a result's parts.
type arBuilder struct {
	s         Snapshot
	collected string
	models    map[string]Model
	// areas maps model and duty to the duty's area and definition.
	areas map[[2]string]areaDuty
	used  []string
	res   result
	// counts of duty states.
	counts map[string]int
}

type areaDuty struct {
	area Area
	duty Duty
}

func newAssessmentResults(s Snapshot) assessmentResults {
	b := &arBuilder{s: s, collected: oscalTime(s.CollectedAt), models: map[string]Model{}, areas: map[[2]string]areaDuty{}, counts: map[string]int{}}
	for _, m := range s.Models {
		b.models[m.Name] = m
		for _, a := range m.Areas {
			for _, d := range a.Duties {
				b.areas[[2]string{m.Name, d.Name}] = areaDuty{area: a, duty: d}
			}
		}
	}
	scope := "every namespace"
	if s.Namespace != "" {
		scope = "namespace " + s.Namespace
	}
	objects := 0
	for _, ns := range s.Namespaces {
		for _, o := range ns.Objects {
			b.object(ns, o)
			objects++
		}
	}
	b.res.UUID = newUUID("result", s.Cluster, s.Namespace, b.collected)
	b.res.Title = "Customer duties in " + scope + ", collected at " + b.collected
	b.res.Description = "The state of every customer duty on every object the responsibility-operator evaluated in " + scope +
		", as the operator recorded it in the object's responsibility.io/duties annotation, read at " + b.collected + ". " +
		"A met duty is satisfied by the object named in its observation's subject; an unmet or unknown one is not. " +
		"A waived duty is not satisfied, and its waiver is a risk whose deviation is approved, with its reason, ticket, grantor and expiry."
	b.res.Start, b.res.End = b.collected, b.collected
	b.res.Props = props(propCluster, s.Cluster, propNamespace, s.Namespace)
	b.res.Remarks = fmt.Sprintf("%d objects; duties: %d met, %d unmet, %d unknown, %d waived.",
		objects, b.counts[stateMet], b.counts[stateUnmet], b.counts[stateUnknown], b.counts[stateWaived])
	b.res.LocalDefinitions.Components = b.components()
	b.res.LocalDefinitions.AssessmentAssets = b.assets()
	b.res.ReviewedControls = b.reviewedControls()

	apUUID := newUUID("assessment-plan", s.Cluster, s.Namespace)
	title := "Customer duties in " + scope
	if s.Cluster != "" {
		title += " of cluster " + line(s.Cluster)
	}
	var usedModels []Model
	for _, name := range b.used {
		if m, ok := b.models[name]; ok {
			usedModels = append(usedModels, m)
		}
	}
	return assessmentResults{
		UUID: newUUID("assessment-results", s.Cluster, s.Namespace),
		Metadata: metadata{
			Title:        title,
			LastModified: b.collected,
			Version:      b.collected,
			OSCALVersion: OSCALVersion,
			Props:        props(propCluster, s.Cluster),
			Roles:        matrixRoles(),
			Parties:      providerParties(usedModels),
			Remarks:      "Written by kubectl responsibility export from the annotations the responsibility-operator keeps on the objects it evaluates.",
		},
		ImportAP: importAP{
			Href:    "#" + apUUID,
			Remarks: "There is no OSCAL assessment plan: see the back-matter resource this points to.",
		},
		Results: []result{b.res},
		BackMatter: &backMatter{Resources: []resource{{
			UUID:  apUUID,
			Title: "The customer duties of the ResponsibilityModels",
			Description: "The plan of this assessment is the customer duties of the cluster's ResponsibilityModels: the " +
				"responsibility-operator evaluates each duty's rule on every object the duty's model targets, whenever the " +
				"object changes and periodically. `kubectl responsibility export --format oscal-component` writes the models " +
				"as an OSCAL component definition, whose components are this document's components.",
		}}},
	}
}

// object adds an object: its inventory item, and the observation and
// finding of each of its duties.
func (b *arBuilder) object(ns Namespace, o Object) {
	title := objectTitle(ns.Name, o)
	item := inventoryItem{
		UUID:        newUUID("object", b.s.Cluster, apiGroup(o.APIVersion), o.Kind, ns.Name, o.Name),
		Description: title + ": an object the responsibility-operator evaluated" + matchedBy(o.Models) + ".",
		Props:       props(propAPIVersion, o.APIVersion, propKind, o.Kind, propNamespace, ns.Name, propName, o.Name, propUID, o.UID),
	}
	for _, m := range o.Models {
		item.ImplementedComponents = append(item.ImplementedComponents, componentRef{ComponentUUID: componentUUID(m)})
		if !slices.Contains(b.used, m) {
			b.used = append(b.used, m)
		}
	}
	b.res.LocalDefinitions.InventoryItems = append(b.res.LocalDefinitions.InventoryItems, item)
	subject := []subjectReference{{SubjectUUID: item.UUID, Type: "inventory-item", Title: title}}
	record := []relevantEvidence{{Description: "The annotation responsibility.io/duties the responsibility-operator wrote on " +
		title + ", read with the Kubernetes API at " + b.collected + "."}}
	if o.Problem != "" {
		b.counts[stateUnknown]++
		b.res.Observations = append(b.res.Observations, observation{
			UUID:             newUUID("observation", b.s.Cluster, ns.Name, apiGroup(o.APIVersion), o.Kind, o.Name, b.collected),
			Title:            title + ": the duties annotation cannot be read",
			Description:      o.Problem,
			Props:            props(propState, stateUnknown),
			Methods:          []string{"TEST"},
			Origins:          []origin{{Actors: []originActor{{Type: "tool", ActorUUID: pluginUUID}}}},
			Subjects:         subject,
			RelevantEvidence: record,
			Collected:        b.collected,
		})
	}
	for _, d := range o.Duties {
		b.duty(ns, o, title, d, subject, record)
	}
}

func (b *arBuilder) duty(ns Namespace, o Object, title string, d DutyState, subject []subjectReference, record []relevantEvidence) {
	b.counts[d.State]++
	ad := b.areas[[2]string{d.Model, d.Duty}]
	what := d.Model + " " + d.Duty + " on " + title + ": " + d.State
	text := dutyText(d)
	obs := observation{
		UUID:             newUUID("observation", b.s.Cluster, ns.Name, apiGroup(o.APIVersion), o.Kind, o.Name, d.Model, d.Duty, b.collected),
		Title:            what,
		Description:      text,
		Props:            props(propModel, d.Model, propArea, ad.area.Name, propDuty, d.Duty, propState, d.State, propWaiver, d.Waiver),
		Methods:          []string{"TEST"},
		Origins:          []origin{{Actors: []originActor{{Type: "tool", ActorUUID: operatorUUID}}}},
		Subjects:         subject,
		RelevantEvidence: record,
		Collected:        b.collected,
	}
	b.res.Observations = append(b.res.Observations, obs)
	f := finding{
		UUID:        newUUID("finding", b.s.Cluster, ns.Name, apiGroup(o.APIVersion), o.Kind, o.Name, d.Model, d.Duty, b.collected),
		Title:       what,
		Description: text,
		Props:       props(propModel, d.Model, propArea, ad.area.Name, propDuty, d.Duty, propState, d.State),
		Target: findingTarget{
			Type:        "objective-id",
			TargetID:    dutyToken(d.Model, d.Duty),
			Title:       "Customer duty " + d.Duty + " of " + d.Model,
			Description: ad.duty.Description,
			Status:      objectiveStatusOf(d.State),
		},
		RelatedObservations: []uuidRef{{ObservationUUID: obs.UUID}},
	}
	if d.State == stateWaived {
		r := b.waiverRisk(ns, o, title, d, obs.UUID)
		b.res.Risks = append(b.res.Risks, r)
		f.RelatedRisks = []uuidRef{{RiskUUID: r.UUID}}
	}
	b.res.Findings = append(b.res.Findings, f)
}

// matchedBy says which models match an object.
func matchedBy(models []string) string {
	switch len(models) {
	case 0:
		return ""
	case 1:
		return ", matched by the ResponsibilityModel " + models[0]
	}
	return ", matched by the ResponsibilityModels " + strings.Join(models, ", ")
}

// dutyText describes a duty's state.
func dutyText(d DutyState) string {
	var text string
	switch d.State {
	case stateMet:
		text = "Met: the duty's rule holds on the object."
	case stateUnmet:
		text = "Unmet: the duty's rule does not hold on the object."
	case stateUnknown:
		text = "Unknown: the duty's rule could not be evaluated on the object."
	case stateWaived:
		text = "Waived: the duty's rule does not hold on the object, and a waiver accepts that."
	default:
		text = d.State + "."
	}
	if d.Message != "" {
		text += " " + d.Message
	}
	return text
}

// objectiveStatusOf is the finding status of a duty state.
func objectiveStatusOf(state string) objectiveStatus {
	switch state {
	case stateMet:
		return objectiveStatus{State: "satisfied", Reason: "pass"}
	case stateUnmet:
		return objectiveStatus{State: statusNotSatisfied, Reason: "fail"}
	case stateWaived:
		return objectiveStatus{State: statusNotSatisfied, Reason: "fail", Remarks: "A waiver accepts the deviation: see the related risk."}
	}
	return objectiveStatus{State: statusNotSatisfied, Reason: "other", Remarks: "The duty's rule could not be evaluated on the object."}
}

// waiverRisk is the risk of a waived duty: the waiver that accepts it.
func (b *arBuilder) waiverRisk(ns Namespace, o Object, title string, d DutyState, obs string) risk {
	w, found := findWaiver(ns, o, d)
	name := d.Waiver
	if found {
		name = w.Name
	}
	r := risk{
		UUID:                newUUID("risk", b.s.Cluster, ns.Name, apiGroup(o.APIVersion), o.Kind, o.Name, d.Model, d.Duty, name),
		Title:               "Waived: " + d.Model + " " + d.Duty + " on " + title,
		Status:              "deviation-approved",
		RelatedObservations: []uuidRef{{ObservationUUID: obs}},
	}
	statement := "The customer duty " + d.Duty + " of " + d.Model + " is not met on " + title + ", and a waiver accepts that"
	if !found {
		r.Description = d.Message
		r.Statement = statement + ": " + d.Message
		r.Props = props(propWaiver, d.Waiver)
		return r
	}
	r.Description = w.Reason
	r.Props = props(propWaiver, w.Name, propWaiverSource, w.Source, propTicket, w.Ticket, propGrantedBy, w.GrantedBy)
	if w.Expires != nil {
		r.Deadline = oscalTime(*w.Expires)
		statement += " until " + r.Deadline
	}
	if w.GrantedBy != "" {
		statement += ", granted by " + w.GrantedBy
	}
	if w.Ticket != "" {
		statement += " (ticket " + w.Ticket + ")"
	}
	r.Statement = statement + ": " + w.Reason
	return r
}

// findWaiver finds the waiver of a waived duty: the DutyWaiver the duty
// names, else the object's waiver annotation of the duty.
func findWaiver(ns Namespace, o Object, d DutyState) (Waiver, bool) {
	for _, w := range ns.Waivers {
		switch {
		case d.Waiver != "" && w.Source == sourceDutyWaiver && w.Name == d.Waiver:
			return w, true
		case d.Waiver == "" && w.Source == sourceAnnotation && w.Name == objectArg(o) && slices.Contains(w.Duties, d.Duty):
			return w, true
		}
	}
	return Waiver{}, false
}

// components are the models the objects match, as system components with
// the UUIDs of their component in the component definition.
func (b *arBuilder) components() []systemComponent {
	used := slices.Clone(b.used)
	slices.Sort(used)
	out := make([]systemComponent, 0, len(used))
	for _, name := range used {
		c := systemComponent{
			UUID:        componentUUID(name),
			Type:        "service",
			Title:       name,
			Description: "The service of ResponsibilityModel " + name + ".",
			Props:       props(propModel, name),
			Status:      componentStatus{State: componentOperational},
		}
		if m, ok := b.models[name]; ok {
			if t := line(m.Service); t != "" {
				c.Title = t
			}
			if m.Description != "" {
				c.Description = m.Description
			}
			if line(m.Provider) != "" {
				c.ResponsibleRoles = []responsibleRole{{RoleID: roleProvider, PartyUUIDs: []string{providerUUID(m.Provider)}}}
			}
		}
		out = append(out, c)
	}
	return out
}

// assets are the tools of the assessment: the operator, which evaluated the
// duties, and the plugin, which read its annotations, on the cluster.
func (b *arBuilder) assets() *assessmentAssets {
	platform := "The Kubernetes cluster"
	if b.s.Cluster != "" {
		platform = "The Kubernetes cluster " + line(b.s.Cluster)
	}
	return &assessmentAssets{
		Components: []systemComponent{
			{
				UUID: operatorUUID, Type: "software", Title: "responsibility-operator",
				Description: "The Kubernetes operator that evaluates the customer duties of the ResponsibilityModels on every object they " +
					"target and records their state in the object's responsibility.io/duties annotation.",
				Status: componentStatus{State: componentOperational},
			},
			{
				UUID: pluginUUID, Type: "software", Title: "kubectl responsibility",
				Description: "The kubectl plugin that read the objects' annotations and the waivers, and wrote this document.",
				Status:      componentStatus{State: componentOperational},
			},
		},
		AssessmentPlatforms: []assessmentPlatform{{
			UUID:           newUUID("platform", b.s.Cluster),
			Title:          platform,
			UsesComponents: []componentRef{{ComponentUUID: operatorUUID}, {ComponentUUID: pluginUUID}},
		}},
	}
}

// reviewedControls are the controls whose duties were evaluated, as the
// component definition names them: the framework controls of the areas of
// the duties, and the areas without controls themselves. Without any (no
// object, or models that may not be read), all controls: whatever the
// duties of the models address.
func (b *arBuilder) reviewedControls() reviewedControls {
	sel := controlSelection{Description: "The areas of the ResponsibilityModels that have customer duties, " +
		"by the control-ids of the component definition: their framework controls, or the area itself when it names none."}
	seen := map[string]bool{}
	add := func(id string) {
		if !seen[id] {
			seen[id] = true
			sel.IncludeControls = append(sel.IncludeControls, selectControl{ControlID: id})
		}
	}
	used := slices.Clone(b.used)
	slices.Sort(used)
	for _, name := range used {
		m := b.models[name]
		areaIDs := areaControlIDs(m)
		for i, a := range m.Areas {
			if len(a.Duties) == 0 {
				continue
			}
			if len(a.Controls) == 0 {
				add(areaIDs[i])
			}
			for _, c := range a.Controls {
				add(controlToken(c.ID))
			}
		}
	}
	if len(sel.IncludeControls) == 0 {
		sel = controlSelection{Description: "The customer duties of the ResponsibilityModels: no evaluated object of a readable model was found.", IncludeAll: &struct{}{}}
	}
	return reviewedControls{ControlSelections: []controlSelection{sel}}
}

// dutyToken is the target id of a duty: model.duty, a token (prefixed with
// "_" when the model's name starts with a digit).
func dutyToken(model, duty string) string {
	t := model + "." + duty
	switch {
	case isToken(t):
		return t
	case isToken("_" + t):
		return "_" + t
	}
	return "_" + slug(t, "duty")
}

// apiGroup is the group of an apiVersion, "" for the core group.
func apiGroup(apiVersion string) string {
	group, _, found := strings.Cut(apiVersion, "/")
	if !found {
		return ""
	}
	return group
}

// objectTitle names an object as the plugin's commands do:
// "Cluster.postgresql.cnpg.io legacy/scratch-db".
func objectTitle(namespace string, o Object) string {
	kind := o.Kind
	if g := apiGroup(o.APIVersion); g != "" {
		kind += "." + g
	}
	name := o.Name
	if namespace != "" {
		name = namespace + "/" + name
	}
	return line(kind + " " + name)
}

// objectArg names an object as kubectl's arguments do and as Waiver.Name
// names the object of a waiver annotation: cluster.postgresql.cnpg.io/db.
func objectArg(o Object) string {
	kind := o.Kind
	if g := apiGroup(o.APIVersion); g != "" {
		kind += "." + g
	}
	return strings.ToLower(kind) + "/" + o.Name
}

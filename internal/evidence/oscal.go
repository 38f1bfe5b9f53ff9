package evidence

// OSCAL renderings of a Snapshot: the models as a component definition
// (WriteComponentDefinition), the duty states as assessment results
// (WriteAssessmentResults, oscal_ar.go), and back: a component definition
// read into models (ReadComponentDefinition, oscal_import.go).
//
// The documents follow the NIST OSCAL JSON schemas of release 1.1.3
// (https://pages.nist.gov/OSCAL-Reference/models/v1.1.3/) and validate
// against those of 1.2.1 as well: testdata/oscal-schema holds both, and
// oscaltest.Validate checks every document the tests write. The schemas
// close every object (additionalProperties: false), so the types below carry
// only fields of the schema.

import (
	"bytes"
	"crypto/sha1" // UUIDv5 is defined on SHA-1 (RFC 9562 section 5.5); nothing here is a secret
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// OSCALVersion is the OSCAL release the documents are written against: their
// metadata.oscal-version.
const OSCALVersion = "1.1.3"

// PropNamespace is the namespace of the props this project defines. OSCAL
// reserves props without a namespace to the names it lists
// (http://csrc.nist.gov/ns/oscal); every prop written here names this one.
const PropNamespace = "https://responsibility.io/ns/oscal"

// Names of the props in PropNamespace.
const (
	propModel        = "responsibility-model"
	propArea         = "area"
	propWaiverPolicy = "waiver-policy"
	propCustomerDuty = "customer-duty"
	propFramework    = "framework"
	propMatrixOf     = "matrix-of"
	propControlID    = "control-id"
	propDuty         = "duty"
	propState        = "duty-state"
	propWaiver       = "waiver"
	propWaiverSource = "waiver-source"
	propTicket       = "ticket"
	propGrantedBy    = "granted-by"
	propAPIVersion   = "api-version"
	propKind         = "kind"
	propNamespace    = "namespace"
	propName         = "name"
	propUID          = "uid"
	propCluster      = "cluster"
)

// Role ids: "provider" is one of OSCAL's values for a component's
// responsible-role ("Organization responsible for providing the
// component", src/metaschema/shared-constraints/
// allowed-values-responsible-roles-component-production.ent of OSCAL
// v1.1.3); "customer" is this project's, for whoever uses the service.
const (
	roleProvider = "provider"
	roleCustomer = "customer"
)

// Common values.
const (
	partyOrganization = "organization"
	linkReference     = "reference"
	timeFormat        = time.RFC3339
)

// uuidRoot is the UUIDv5 namespace of every UUID the documents carry: the
// UUIDv5 of PropNamespace in the URL namespace of RFC 9562.
var uuidRoot = uuidV5([16]byte{0x6b, 0xa7, 0xb8, 0x11, 0x9d, 0xad, 0x11, 0xd1, 0x80, 0xb4, 0x00, 0xc0, 0x4f, 0xd4, 0x30, 0xc8}, PropNamespace)

// uuidV5 is the name-based UUID of RFC 9562 section 5.5.
func uuidV5(space [16]byte, name string) [16]byte {
	h := sha1.New()
	h.Write(space[:])
	h.Write([]byte(name))
	var u [16]byte
	copy(u[:], h.Sum(nil))
	u[6] = u[6]&0x0f | 0x50
	u[8] = u[8]&0x3f | 0x80
	return u
}

func formatUUID(u [16]byte) string {
	s := hex.EncodeToString(u[:])
	return s[0:8] + "-" + s[8:12] + "-" + s[12:16] + "-" + s[16:20] + "-" + s[20:]
}

// newUUID is the UUIDv5 of a kind of object and the names that identify it:
// the same names give the same UUID in every document, as OSCAL asks of
// UUIDs "assigned per-subject". Each part is length-prefixed, so that no two
// lists of names meet.
func newUUID(kind string, names ...string) string {
	var b strings.Builder
	b.WriteString(kind)
	for _, n := range names {
		b.WriteString("|")
		b.WriteString(strconv.Itoa(len(n)))
		b.WriteString(":")
		b.WriteString(n)
	}
	return formatUUID(uuidV5(uuidRoot, b.String()))
}

// tokenPattern is OSCAL's TokenDatatype (an XML NCName), which control ids,
// role ids and prop names must match.
var tokenPattern = regexp.MustCompile(`^(\p{L}|_)(\p{L}|\p{N}|[.\-_])*$`)

func isToken(s string) bool { return tokenPattern.MatchString(s) }

// line is text for a field that holds one line (a title, a prop's value:
// OSCAL's markup-line and StringDatatype): its whitespace runs collapsed to
// one space, none at either end.
func line(s string) string { return strings.Join(strings.Fields(s), " ") }

// slug is a token made of s: its letters and digits lowercased, every other
// run of characters one '-', prefixed with prefix when it would not start
// with a letter.
func slug(s, prefix string) string {
	var b strings.Builder
	dash := false
	for _, r := range strings.ToLower(s) {
		if unicode.IsLetter(r) || unicode.IsDigit(r) {
			if dash && b.Len() > 0 {
				b.WriteByte('-')
			}
			b.WriteRune(r)
			dash = false
			continue
		}
		dash = true
	}
	out := b.String()
	if first, _ := firstRune(out); !unicode.IsLetter(first) {
		out = strings.TrimSuffix(prefix+"-"+out, "-")
	}
	return out
}

func firstRune(s string) (rune, bool) {
	for _, r := range s {
		return r, true
	}
	return 0, false
}

// oscalTime is a time as OSCAL's DateTimeWithTimezoneDatatype: RFC 3339 in
// UTC, to the second.
func oscalTime(t time.Time) string { return t.UTC().Format(timeFormat) }

// Types shared by the models.

type prop struct {
	Name    string `json:"name"`
	NS      string `json:"ns,omitempty"`
	Value   string `json:"value"`
	Class   string `json:"class,omitempty"`
	Remarks string `json:"remarks,omitempty"`
}

// props builds props of PropNamespace from pairs of name and value,
// leaving out empty values (OSCAL's StringDatatype is never empty).
func props(pairs ...string) []prop {
	var out []prop
	for i := 0; i+1 < len(pairs); i += 2 {
		if v := line(pairs[i+1]); v != "" {
			out = append(out, prop{Name: pairs[i], NS: PropNamespace, Value: v})
		}
	}
	return out
}

type link struct {
	Href string `json:"href"`
	Rel  string `json:"rel,omitempty"`
	Text string `json:"text,omitempty"`
}

type role struct {
	ID          string `json:"id"`
	Title       string `json:"title"`
	Description string `json:"description,omitempty"`
}

type party struct {
	UUID  string `json:"uuid"`
	Type  string `json:"type"`
	Name  string `json:"name,omitempty"`
	Props []prop `json:"props,omitempty"`
}

type responsibleRole struct {
	RoleID     string   `json:"role-id"`
	Props      []prop   `json:"props,omitempty"`
	PartyUUIDs []string `json:"party-uuids,omitempty"`
	Remarks    string   `json:"remarks,omitempty"`
}

type responsibleParty struct {
	RoleID     string   `json:"role-id"`
	PartyUUIDs []string `json:"party-uuids"`
}

type metadata struct {
	Title              string             `json:"title"`
	LastModified       string             `json:"last-modified"`
	Version            string             `json:"version"`
	OSCALVersion       string             `json:"oscal-version"`
	Props              []prop             `json:"props,omitempty"`
	Roles              []role             `json:"roles,omitempty"`
	Parties            []party            `json:"parties,omitempty"`
	ResponsibleParties []responsibleParty `json:"responsible-parties,omitempty"`
	Remarks            string             `json:"remarks,omitempty"`
}

type resource struct {
	UUID        string `json:"uuid"`
	Title       string `json:"title,omitempty"`
	Description string `json:"description,omitempty"`
	Props       []prop `json:"props,omitempty"`
	Rlinks      []struct {
		Href string `json:"href"`
	} `json:"rlinks,omitempty"`
	Remarks string `json:"remarks,omitempty"`
}

type backMatter struct {
	Resources []resource `json:"resources,omitempty"`
}

// The component definition model.

type componentDefinitionDocument struct {
	ComponentDefinition componentDefinition `json:"component-definition"`
}

type componentDefinition struct {
	UUID       string             `json:"uuid"`
	Metadata   metadata           `json:"metadata"`
	Components []definedComponent `json:"components,omitempty"`
	BackMatter *backMatter        `json:"back-matter,omitempty"`
}

type definedComponent struct {
	UUID                   string                  `json:"uuid"`
	Type                   string                  `json:"type"`
	Title                  string                  `json:"title"`
	Description            string                  `json:"description"`
	Props                  []prop                  `json:"props,omitempty"`
	Links                  []link                  `json:"links,omitempty"`
	ResponsibleRoles       []responsibleRole       `json:"responsible-roles,omitempty"`
	ControlImplementations []controlImplementation `json:"control-implementations,omitempty"`
	Remarks                string                  `json:"remarks,omitempty"`
}

type controlImplementation struct {
	UUID                    string                   `json:"uuid"`
	Source                  string                   `json:"source"`
	Description             string                   `json:"description"`
	Props                   []prop                   `json:"props,omitempty"`
	ImplementedRequirements []implementedRequirement `json:"implemented-requirements"`
}

type implementedRequirement struct {
	UUID             string            `json:"uuid"`
	ControlID        string            `json:"control-id"`
	Description      string            `json:"description"`
	Props            []prop            `json:"props,omitempty"`
	Links            []link            `json:"links,omitempty"`
	ResponsibleRoles []responsibleRole `json:"responsible-roles,omitempty"`
	Statements       []statement       `json:"statements,omitempty"`
	Remarks          string            `json:"remarks,omitempty"`
	// Export is never written: a component definition has none in OSCAL
	// 1.1.3 or 1.2.1 (usnistgov/OSCAL#1028). ReadComponentDefinition reads
	// it from documents that follow the SSP's by-component export, as
	// drafts of a shared responsibility model do.
	Export *export `json:"export,omitempty"`
}

type statement struct {
	StatementID      string            `json:"statement-id"`
	UUID             string            `json:"uuid"`
	Description      string            `json:"description"`
	Props            []prop            `json:"props,omitempty"`
	ResponsibleRoles []responsibleRole `json:"responsible-roles,omitempty"`
	Remarks          string            `json:"remarks,omitempty"`
	// Export: see implementedRequirement.Export.
	Export *export `json:"export,omitempty"`
}

// export is the SSP's by-component export (OSCAL 1.1.3
// system-security-plan/control-implementation/implemented-requirements/
// by-components/export): what the provider provides and what the customer
// is responsible for. Read only.
type export struct {
	Description      string       `json:"description,omitempty"`
	Provided         []exportText `json:"provided,omitempty"`
	Responsibilities []exportText `json:"responsibilities,omitempty"`
}

type exportText struct {
	Description string `json:"description"`
}

// WriteComponentDefinition writes the Snapshot's models as one OSCAL
// component definition (JSON): each model a component of type "service"
// whose provider is the party of its "provider" responsible-role, and each
// area a control implementation. An area that names framework controls has
// one control implementation per framework (its source a back-matter
// resource titled with the framework's name) with an implemented
// requirement per control; an area without controls has one whose source is
// the model's matrix (a back-matter resource) and whose control-id is the
// area's name made a token. Either way each implemented requirement carries
// the area's name (prop area), the provider's part as its description, the
// provider as the party of its "provider" responsible-role, and the
// customer's part as the remarks of its "customer" responsible-role, with
// the area's checkable duties as customer-duty props.
//
// Every UUID is a UUIDv5 of the names of what it identifies, so the same
// models give the same document but for metadata.last-modified (the
// Snapshot's CollectedAt); metadata.version is a digest of the rest.
func WriteComponentDefinition(w io.Writer, s Snapshot) error {
	return writeJSON(w, componentDefinitionDocument{ComponentDefinition: newComponentDefinition(s)})
}

func newComponentDefinition(s Snapshot) componentDefinition {
	b := &componentBuilder{frameworks: map[string]string{}}
	for _, m := range s.Models {
		b.components = append(b.components, b.component(m))
	}
	names := make([]string, 0, len(s.Models))
	for _, m := range s.Models {
		names = append(names, m.Name)
	}
	cd := componentDefinition{
		UUID: newUUID("component-definition", names...),
		Metadata: metadata{
			Title:        componentDefinitionTitle(s),
			LastModified: oscalTime(s.CollectedAt),
			OSCALVersion: OSCALVersion,
			Roles:        matrixRoles(),
			Parties:      providerParties(s.Models),
			Remarks: "Written by kubectl responsibility export from the ResponsibilityModels of the cluster. " +
				"OSCAL's component definition has no place for the customer's part of a shared responsibility " +
				"(usnistgov/OSCAL#1028): each implemented requirement states the provider's part as its description " +
				"and the customer's part as the remarks of its customer responsible-role.",
		},
		Components: b.components,
	}
	if len(b.resources) > 0 {
		cd.BackMatter = &backMatter{Resources: b.resources}
	}
	cd.Metadata.Version = contentVersion(cd)
	return cd
}

// contentVersion is a digest of the document without its metadata's times
// and version: the same matrices give the same version.
func contentVersion(cd componentDefinition) string {
	cd.Metadata.LastModified, cd.Metadata.Version = "", ""
	raw, err := json.Marshal(cd)
	if err != nil {
		// json.Marshal of these types fails only on a bug.
		panic(fmt.Sprintf("encode the component definition: %v", err))
	}
	sum := sha256.Sum256(raw)
	return "sha256-" + hex.EncodeToString(sum[:8])
}

func componentDefinitionTitle(s Snapshot) string {
	title := "Shared responsibility matrices"
	if len(s.Models) == 1 {
		title = "Shared responsibility matrix of " + line(s.Models[0].Service)
	}
	if s.Cluster != "" {
		title += " (cluster " + line(s.Cluster) + ")"
	}
	return title
}

func matrixRoles() []role {
	return []role{
		{ID: roleProvider, Title: "Provider", Description: "The organization that provides the service and is responsible for the provider's part of each area."},
		{ID: roleCustomer, Title: "Customer", Description: "Whoever uses the service, responsible for the customer's part of each area."},
	}
}

func providerUUID(provider string) string { return newUUID("party", line(provider)) }

// providerParties are the models' providers as organizations, sorted by
// name.
func providerParties(models []Model) []party {
	seen := map[string]bool{}
	var out []party
	for _, m := range models {
		name := line(m.Provider)
		if name == "" || seen[name] {
			continue
		}
		seen[name] = true
		out = append(out, party{UUID: providerUUID(name), Type: partyOrganization, Name: name})
	}
	slices.SortFunc(out, func(a, b party) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// componentUUID is the UUID of a model's component, the same in the
// component definition and in the assessment results.
func componentUUID(model string) string { return newUUID("component", model) }

type componentBuilder struct {
	components []definedComponent
	resources  []resource
	// frameworks maps a framework's name to its resource's UUID.
	frameworks map[string]string
}

func (b *componentBuilder) component(m Model) definedComponent {
	c := definedComponent{
		UUID:        componentUUID(m.Name),
		Type:        "service",
		Title:       line(m.Service),
		Description: m.Description,
		Props:       props(propModel, m.Name, propWaiverPolicy, m.Waivers),
	}
	if c.Title == "" {
		c.Title = m.Name
	}
	if c.Description == "" {
		c.Description = "The shared responsibility matrix of " + c.Title + "."
	}
	if line(m.Provider) != "" {
		c.ResponsibleRoles = []responsibleRole{{RoleID: roleProvider, PartyUUIDs: []string{providerUUID(m.Provider)}}}
	}
	matrix := ""
	areaIDs := areaControlIDs(m)
	for i, a := range m.Areas {
		if len(a.Controls) == 0 {
			if matrix == "" {
				matrix = b.matrixResource(m)
			}
			id := areaIDs[i]
			c.ControlImplementations = append(c.ControlImplementations, controlImplementation{
				UUID:        newUUID("control-implementation", m.Name, a.Name),
				Source:      "#" + matrix,
				Description: line(a.Name) + ": an area of the shared responsibility matrix, which names no framework control.",
				Props:       props(propArea, a.Name),
				ImplementedRequirements: []implementedRequirement{
					requirement(m, a, id, "", newUUID("implemented-requirement", m.Name, a.Name)),
				},
			})
			continue
		}
		for _, fw := range frameworksOf(a.Controls) {
			ci := controlImplementation{
				UUID:        newUUID("control-implementation", m.Name, a.Name, fw),
				Source:      "#" + b.frameworkResource(fw),
				Description: line(a.Name) + ": the controls of " + line(fw) + " this area of the shared responsibility matrix addresses.",
				Props:       props(propArea, a.Name),
			}
			seen := map[string]bool{}
			for _, ctl := range a.Controls {
				if ctl.Framework != fw || seen[ctl.ID] {
					continue
				}
				seen[ctl.ID] = true
				r := requirement(m, a, controlToken(ctl.ID), ctl.URL, newUUID("implemented-requirement", m.Name, a.Name, fw, ctl.ID))
				if r.ControlID != ctl.ID {
					r.Props = append(props(propControlID, ctl.ID), r.Props...)
				}
				ci.ImplementedRequirements = append(ci.ImplementedRequirements, r)
			}
			c.ControlImplementations = append(c.ControlImplementations, ci)
		}
	}
	return c
}

// areaControlIDs are the control-ids the component definition gives the
// model's areas without controls, by area index: the area's name made a
// token, unique in the model.
func areaControlIDs(m Model) map[int]string {
	out := map[int]string{}
	taken := map[string]bool{}
	for i, a := range m.Areas {
		if len(a.Controls) == 0 {
			out[i] = uniqueID(slug(a.Name, "area"), taken)
		}
	}
	return out
}

// requirement is the implemented requirement of one control (or of the area
// itself) for an area.
func requirement(m Model, a Area, controlID, url, id string) implementedRequirement {
	r := implementedRequirement{
		UUID:        id,
		ControlID:   controlID,
		Description: a.Provider,
		Props:       props(propArea, a.Name),
	}
	for _, d := range a.Duties {
		if v := line(d.Name); v != "" {
			p := prop{Name: propCustomerDuty, NS: PropNamespace, Value: v, Remarks: d.Description}
			if isToken(d.Severity) {
				p.Class = d.Severity
			}
			r.Props = append(r.Props, p)
		}
	}
	if url != "" {
		r.Links = []link{{Href: url, Rel: linkReference}}
	}
	if line(m.Provider) != "" {
		r.ResponsibleRoles = append(r.ResponsibleRoles, responsibleRole{RoleID: roleProvider, PartyUUIDs: []string{providerUUID(m.Provider)}})
	}
	r.ResponsibleRoles = append(r.ResponsibleRoles, responsibleRole{RoleID: roleCustomer, Remarks: a.Customer})
	return r
}

// matrixResource adds the back-matter resource that stands for a model's
// matrix, the source of its areas without controls, and returns its UUID.
func (b *componentBuilder) matrixResource(m Model) string {
	r := resource{
		UUID:  newUUID("matrix", m.Name),
		Title: "Shared responsibility matrix of " + line(m.Service) + " (ResponsibilityModel " + m.Name + ")",
		Description: "The areas of the matrix. The control-id of an implemented requirement whose source is this resource " +
			"is the name of an area made an identifier; it is not a control of a published framework.",
		Props: props(propMatrixOf, m.Name),
	}
	b.resources = append(b.resources, r)
	return r.UUID
}

// frameworkResource adds, once, the back-matter resource that stands for a
// framework's catalog, and returns its UUID.
func (b *componentBuilder) frameworkResource(framework string) string {
	if id, ok := b.frameworks[framework]; ok {
		return id
	}
	r := resource{
		UUID:        newUUID("framework", framework),
		Title:       line(framework),
		Description: "The catalog of the framework the controls belong to, as the ResponsibilityModels name it.",
		Props:       props(propFramework, framework),
	}
	b.frameworks[framework] = r.UUID
	b.resources = append(b.resources, r)
	return r.UUID
}

// frameworksOf lists the frameworks of controls in their order of first
// appearance.
func frameworksOf(controls []Control) []string {
	var out []string
	for _, c := range controls {
		if !slices.Contains(out, c.Framework) {
			out = append(out, c.Framework)
		}
	}
	return out
}

// controlToken is a control's id as OSCAL's control-id, a token: the id
// itself when it is one ("sc-8", "A.8.24"), else prefixed with "_" ("_5.1"),
// else made one. The requirement then carries the id in a control-id prop.
func controlToken(id string) string {
	switch {
	case isToken(id):
		return id
	case isToken("_" + id):
		return "_" + id
	}
	return "_" + slug(id, "control")
}

// uniqueID returns id, or id-2, id-3... when taken.
func uniqueID(id string, taken map[string]bool) string {
	out := id
	for n := 2; taken[out]; n++ {
		out = id + "-" + strconv.Itoa(n)
	}
	taken[out] = true
	return out
}

// writeJSON writes v as indented JSON without HTML escaping; w receives the
// whole document or, on an error, nothing.
func writeJSON(w io.Writer, v any) error {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return fmt.Errorf("encode the OSCAL document: %w", err)
	}
	if _, err := w.Write(buf.Bytes()); err != nil {
		return fmt.Errorf("write the OSCAL document: %w", err)
	}
	return nil
}

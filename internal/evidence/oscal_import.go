package evidence

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Placeholder starts the text of what an imported model needs and the
// component definition does not state: the author replaces it.
const Placeholder = "TODO: "

// ImportedModel is one component of a component definition, read as a
// model: its name, service, provider, description and areas with their
// provider and customer text and controls. Duties and targets are not in a
// component definition.
type ImportedModel struct {
	Model
	// ComponentUUID and ComponentTitle identify the component.
	ComponentUUID  string
	ComponentTitle string
	// Placeholders lists the fields that hold a Placeholder text.
	Placeholders []string
}

// ErrNotComponentDefinition is returned (wrapped) by ReadComponentDefinition
// for a document without a component-definition at its root.
var ErrNotComponentDefinition = errors.New("not an OSCAL component definition")

// ReadComponentDefinition reads an OSCAL component definition (JSON) into
// one model per component, the reverse of WriteComponentDefinition:
//
//   - name: the component's responsibility-model prop, else its title made a
//     DNS name; service: its title; description: its description;
//   - provider: the parties of the component's "provider" (else
//     "maintainer") responsible-role, else of the document's
//     responsible-parties, else the document's only party;
//   - areas, in the order they first appear: one per area prop of the
//     implemented requirements, else one per control-id. The provider's text
//     is the requirement's description (or the provided texts of an SSP-like
//     export, which drafts of OSCAL's shared responsibility model place
//     there); the customer's text the remarks of its "customer"
//     responsible-role (or the export's responsibilities);
//   - controls: each requirement whose source is not a model's matrix, with
//     the framework its source names (the title of the back-matter resource
//     it points to, else the source itself) and the first reference link.
//
// What the document does not state reads as a Placeholder.
func ReadComponentDefinition(raw []byte) ([]ImportedModel, error) {
	var probe map[string]json.RawMessage
	if err := json.Unmarshal(raw, &probe); err != nil {
		return nil, fmt.Errorf("read the component definition: %w", err)
	}
	if _, ok := probe["component-definition"]; !ok {
		return nil, fmt.Errorf("%w: the document has no component-definition at its root", ErrNotComponentDefinition)
	}
	var doc componentDefinitionDocument
	if err := json.Unmarshal(raw, &doc); err != nil {
		return nil, fmt.Errorf("read the component definition: %w", err)
	}
	r := newReader(doc.ComponentDefinition)
	names := map[string]bool{}
	out := make([]ImportedModel, 0, len(doc.ComponentDefinition.Components))
	for _, c := range doc.ComponentDefinition.Components {
		out = append(out, r.model(c, names))
	}
	return out, nil
}

type reader struct {
	cd        componentDefinition
	parties   map[string]string
	resources map[string]resource
}

func newReader(cd componentDefinition) *reader {
	r := &reader{cd: cd, parties: map[string]string{}, resources: map[string]resource{}}
	for _, p := range cd.Metadata.Parties {
		r.parties[p.UUID] = p.Name
	}
	if cd.BackMatter != nil {
		for _, res := range cd.BackMatter.Resources {
			r.resources["#"+res.UUID] = res
		}
	}
	return r
}

func (r *reader) model(c definedComponent, names map[string]bool) ImportedModel {
	im := ImportedModel{ComponentUUID: c.UUID, ComponentTitle: line(c.Title)}
	m := &im.Model
	m.Name = propValue(c.Props, propModel)
	if m.Name == "" {
		m.Name = dnsName(c.Title)
	}
	m.Name = uniqueID(m.Name, names)
	m.Service = line(c.Title)
	m.Description = c.Description
	if m.Description == "The shared responsibility matrix of "+m.Service+"." {
		// WriteComponentDefinition's text for a model without a description.
		m.Description = ""
	}
	m.Waivers = propValue(c.Props, propWaiverPolicy)
	m.Provider = r.provider(c)
	if m.Service == "" {
		m.Service = Placeholder + "the service's name"
		im.Placeholders = append(im.Placeholders, "service")
	}
	if m.Provider == "" {
		m.Provider = Placeholder + "the provider's name"
		im.Placeholders = append(im.Placeholders, "provider")
	}
	index := map[string]int{}
	for _, ci := range c.ControlImplementations {
		source, known := r.resources[ci.Source]
		matrix := known && propValue(source.Props, propMatrixOf) != ""
		framework := ""
		if !matrix {
			framework = frameworkOf(ci.Source, source, known)
		}
		for _, req := range ci.ImplementedRequirements {
			name := line(propValue(req.Props, propArea))
			if name == "" {
				name = line(propValue(ci.Props, propArea))
			}
			controlID := propValue(req.Props, propControlID)
			if controlID == "" {
				controlID = req.ControlID
			}
			if name == "" {
				name = controlID
			}
			i, ok := index[name]
			if !ok {
				i = len(m.Areas)
				index[name] = i
				m.Areas = append(m.Areas, Area{Name: name})
			}
			a := &m.Areas[i]
			a.Provider = merge(a.Provider, providedText(req))
			a.Customer = merge(a.Customer, customerText(req))
			if !matrix {
				a.Controls = append(a.Controls, Control{Framework: framework, ID: controlID, URL: referenceLink(req.Links)})
			}
		}
	}
	for i := range m.Areas {
		a := &m.Areas[i]
		if strings.TrimSpace(a.Provider) == "" {
			a.Provider = Placeholder + "the provider's part: the component definition does not state it"
			im.Placeholders = append(im.Placeholders, "spec.areas["+strconv.Itoa(i)+"].provider")
		}
		if strings.TrimSpace(a.Customer) == "" {
			a.Customer = Placeholder + "the customer's part: the component definition does not state it"
			im.Placeholders = append(im.Placeholders, "spec.areas["+strconv.Itoa(i)+"].customer")
		}
	}
	return im
}

// provider is the name of the component's provider.
func (r *reader) provider(c definedComponent) string {
	for _, id := range []string{roleProvider, "maintainer"} {
		for _, rr := range c.ResponsibleRoles {
			if rr.RoleID == id {
				if names := r.partyNames(rr.PartyUUIDs); names != "" {
					return names
				}
			}
		}
	}
	for _, id := range []string{roleProvider, "maintainer", "creator", "author"} {
		for _, rp := range r.cd.Metadata.ResponsibleParties {
			if rp.RoleID == id {
				if names := r.partyNames(rp.PartyUUIDs); names != "" {
					return names
				}
			}
		}
	}
	if len(r.cd.Metadata.Parties) == 1 {
		return line(r.cd.Metadata.Parties[0].Name)
	}
	return ""
}

func (r *reader) partyNames(uuids []string) string {
	var names []string
	for _, u := range uuids {
		if n := line(r.parties[u]); n != "" {
			names = append(names, n)
		}
	}
	return strings.Join(names, ", ")
}

// frameworkOf names the framework of a control implementation's source.
func frameworkOf(source string, res resource, known bool) string {
	if !known {
		return source
	}
	if fw := propValue(res.Props, propFramework); fw != "" {
		return fw
	}
	if t := line(res.Title); t != "" {
		return t
	}
	return source
}

// providedText is the provider's part of a requirement.
func providedText(req implementedRequirement) string {
	var texts []string
	for _, e := range exportsOf(req) {
		for _, p := range e.Provided {
			texts = append(texts, p.Description)
		}
	}
	if t := joinTexts(texts); t != "" {
		return t
	}
	if strings.TrimSpace(req.Description) != "" {
		return req.Description
	}
	texts = texts[:0]
	for _, st := range req.Statements {
		texts = append(texts, st.Description)
	}
	return joinTexts(texts)
}

// customerText is the customer's part of a requirement.
func customerText(req implementedRequirement) string {
	var texts []string
	roles := req.ResponsibleRoles
	for _, st := range req.Statements {
		roles = append(roles, st.ResponsibleRoles...)
	}
	for _, rr := range roles {
		if rr.RoleID == roleCustomer {
			texts = append(texts, rr.Remarks)
		}
	}
	if t := joinTexts(texts); t != "" {
		return t
	}
	for _, e := range exportsOf(req) {
		for _, p := range e.Responsibilities {
			texts = append(texts, p.Description)
		}
	}
	return joinTexts(texts)
}

func exportsOf(req implementedRequirement) []export {
	var out []export
	if req.Export != nil {
		out = append(out, *req.Export)
	}
	for _, st := range req.Statements {
		if st.Export != nil {
			out = append(out, *st.Export)
		}
	}
	return out
}

// joinTexts joins the non-blank texts with a blank line, each once.
func joinTexts(texts []string) string {
	out := ""
	for _, t := range texts {
		out = merge(out, t)
	}
	return out
}

// merge adds text to what an area has, unless it is blank or already there.
func merge(have, text string) string {
	switch {
	case strings.TrimSpace(text) == "" || slices.Contains(strings.Split(have, "\n\n"), text):
		return have
	case have == "":
		return text
	}
	return have + "\n\n" + text
}

func referenceLink(links []link) string {
	for _, l := range links {
		if l.Rel == linkReference {
			return l.Href
		}
	}
	return ""
}

// propValue is the value of the first prop of PropNamespace with name.
func propValue(ps []prop, name string) string {
	for _, p := range ps {
		if p.NS == PropNamespace && p.Name == name {
			return p.Value
		}
	}
	return ""
}

// dnsName makes a title a DNS subdomain name, as a model's name must be:
// lowercase ASCII letters and digits, other runs one '-', at most 63
// characters.
func dnsName(title string) string {
	var b strings.Builder
	dash := false
	for _, r := range strings.ToLower(title) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
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
	if len(out) > 63 {
		out = strings.TrimRight(out[:63], "-")
	}
	if out == "" {
		out = "imported-model"
	}
	return out
}

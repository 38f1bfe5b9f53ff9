package plugin

import (
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"

	"github.com/responsibility-operator/responsibility-operator/api/v1alpha1"
	"github.com/responsibility-operator/responsibility-operator/internal/evidence"
)

// importTargetsTODO is the comment above the empty targets of an imported
// model: a component definition does not say which objects a service's
// instances are.
const importTargetsTODO = "# TODO: targets: the kinds (apiVersion, kind, optional selectors) this model applies to. " +
	"The component definition does not say, and the API server refuses a model without targets."

// importAreasTODO is the comment above the empty areas of an imported model
// whose component implements no control.
const importAreasTODO = "# TODO: areas: the component definition states no control implementation; " +
	"write the matrix's areas (name, provider, customer)."

func newImportCommand(o *Options) *cobra.Command {
	return &cobra.Command{
		Use:   "import FILE",
		Short: "Turn an OSCAL component definition into ResponsibilityModel YAML for an author to complete",
		Long: `Read an OSCAL component definition (JSON or YAML; FILE - reads standard input), such as
a provider's published one or what export --format oscal-component wrote, and print a
ResponsibilityModel per component: its service, provider and description, and its
areas in order, each with the provider's part, the customer's part and the framework
controls it addresses.

The areas come from the control implementations: the implemented requirements of one
area (their responsibility-operator area prop), else one area per control. The
provider's part is a requirement's description, the customer's part the remarks of its
"customer" responsible-role (or an SSP-style export's provided and responsibilities).
What the document does not state reads "TODO: ...", and so do the targets, which no
component definition holds: fill them in, add the duties a cluster can check, and run
kubectl responsibility lint on the file. -o json prints the models as a v1 List instead,
without the comments. Nothing is sent to a cluster.`,
		Example: `  kubectl responsibility import vendor-component-definition.json > models.yaml
  kubectl responsibility export --format oscal-component | kubectl responsibility import -`,
		Args: cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error { return o.importModels(args[0]) },
	}
}

// importedModel is a ResponsibilityModel as import prints it: no status, no
// server-set metadata.
type importedModel struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name string `json:"name"`
	} `json:"metadata"`
	Spec v1alpha1.ResponsibilityModelSpec `json:"spec"`
}

func (o *Options) importModels(path string) error {
	var raw []byte
	var err error
	if path == "-" {
		raw, err = io.ReadAll(o.Streams.In)
	} else {
		raw, err = os.ReadFile(path)
	}
	if err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	doc, err := yaml.YAMLToJSON(raw)
	if err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	imported, err := evidence.ReadComponentDefinition(doc)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if len(imported) == 0 {
		return fmt.Errorf("%s: the component definition has no components", path)
	}
	models := make([]importedModel, 0, len(imported))
	for _, im := range imported {
		models = append(models, toImportedModel(im))
	}
	switch o.Output {
	case outputJSON:
		err = printData(o.Streams.Out, outputJSON, map[string]any{"apiVersion": "v1", "kind": "List", "items": models})
	default:
		err = writeImportedYAML(o.Streams.Out, path, imported, models)
	}
	if err != nil {
		return err
	}
	o.importNotes(imported, models)
	return nil
}

func toImportedModel(im evidence.ImportedModel) importedModel {
	m := importedModel{APIVersion: v1alpha1.GroupVersion.String(), Kind: "ResponsibilityModel"}
	m.Metadata.Name = im.Name
	m.Spec = v1alpha1.ResponsibilityModelSpec{
		Service: im.Service, Provider: im.Provider, Description: im.Description,
		Waivers: v1alpha1.WaiverPolicy(im.Waivers), Targets: []v1alpha1.Target{}, Areas: []v1alpha1.Area{},
	}
	for _, a := range im.Areas {
		area := v1alpha1.Area{Name: a.Name, Provider: a.Provider, Customer: a.Customer}
		for _, c := range a.Controls {
			area.Controls = append(area.Controls, v1alpha1.ControlReference{Framework: c.Framework, ID: c.ID, URL: c.URL})
		}
		m.Spec.Areas = append(m.Spec.Areas, area)
	}
	return m
}

// importNotes says what the author must complete, and what lint will find
// besides the targets.
func (o *Options) importNotes(imported []evidence.ImportedModel, models []importedModel) {
	for i, im := range imported {
		if len(im.Placeholders) > 0 {
			o.errorf("Note: model %s: the component definition states no %s: replace the TODO text.\n",
				im.Name, summarize(im.Placeholders, 5))
		}
		rm := v1alpha1.ResponsibilityModel{Spec: models[i].Spec}
		rm.Name = models[i].Metadata.Name
		for _, p := range checkShape(&rm) {
			if p.Path != "spec.targets" {
				o.errorf("Note: model %s: %s: %s.\n", im.Name, p.Path, sanitize(p.Message))
			}
		}
	}
	o.errorf("Imported %s. Fill in spec.targets, add the duties a cluster can check (a CEL rule each), "+
		"then run kubectl responsibility lint on the file.\n", plural(len(imported), "model"))
}

// writeImportedYAML writes the models as YAML documents in the order an
// author reads a model (the catalog's), each under a comment naming its
// component, with the TODO of its targets.
func writeImportedYAML(w io.Writer, path string, imported []evidence.ImportedModel, models []importedModel) error {
	var b strings.Builder
	for i, m := range models {
		if i > 0 {
			b.WriteString("---\n")
		}
		from := path
		if from == "-" {
			from = "standard input"
		}
		fmt.Fprintf(&b, "# Imported by kubectl responsibility import from %s: component %q (%s).\n",
			sanitize(from), sanitize(imported[i].ComponentTitle), sanitize(imported[i].ComponentUUID))
		b.WriteString("# Complete it: targets, and duties (a CEL rule each) for what a cluster can check; replace any TODO text.\n")
		b.WriteString("apiVersion: " + m.APIVersion + "\nkind: " + m.Kind + "\nmetadata:\n")
		field(&b, 2, "name", m.Metadata.Name)
		b.WriteString("spec:\n")
		field(&b, 2, "service", m.Spec.Service)
		field(&b, 2, "provider", m.Spec.Provider)
		if m.Spec.Description != "" {
			field(&b, 2, "description", m.Spec.Description)
		}
		if m.Spec.Waivers != "" {
			field(&b, 2, "waivers", string(m.Spec.Waivers))
		}
		b.WriteString("  " + importTargetsTODO + "\n  targets: []\n")
		if len(m.Spec.Areas) == 0 {
			b.WriteString("  " + importAreasTODO + "\n  areas: []\n")
		} else {
			b.WriteString("  areas:\n")
		}
		for _, a := range m.Spec.Areas {
			b.WriteString("  -")
			field(&b, 1, "name", a.Name)
			field(&b, 4, "provider", a.Provider)
			field(&b, 4, "customer", a.Customer)
			if len(a.Controls) > 0 {
				b.WriteString("    controls:\n")
			}
			for _, c := range a.Controls {
				b.WriteString("    -")
				field(&b, 1, "framework", c.Framework)
				field(&b, 6, "id", c.ID)
				if c.URL != "" {
					field(&b, 6, "url", c.URL)
				}
			}
		}
	}
	if _, err := io.WriteString(w, b.String()); err != nil {
		return fmt.Errorf("write the models: %w", err)
	}
	return nil
}

// field writes "key: value" indented by indent spaces, the value a YAML
// scalar as sigs.k8s.io/yaml writes it at the top level; a value that takes
// several lines (a block scalar, a folded long string) has its further
// lines, which the encoder indents by two, indented by two under the key
// instead, where a block scalar's indentation indicator ("|2-", for text
// that starts with spaces) expects them.
func field(b *strings.Builder, indent int, key, value string) {
	out, err := yaml.Marshal(value)
	if err != nil {
		// Marshalling a string cannot fail.
		panic(fmt.Sprintf("encode %q: %v", value, err))
	}
	lines := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
	b.WriteString(strings.Repeat(" ", indent) + key + ": " + lines[0] + "\n")
	pad := strings.Repeat(" ", keyColumn(b)+2)
	for _, l := range lines[1:] {
		if l == "" {
			b.WriteString("\n")
			continue
		}
		b.WriteString(pad + strings.TrimPrefix(l, "  ") + "\n")
	}
}

// keyColumn is the column of the key of the last line written.
func keyColumn(b *strings.Builder) int {
	s := strings.TrimSuffix(b.String(), "\n")
	last := s[strings.LastIndex(s, "\n")+1:]
	return len(last) - len(strings.TrimLeft(last, " -"))
}

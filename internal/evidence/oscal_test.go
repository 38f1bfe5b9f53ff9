package evidence

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/responsibility-operator/responsibility-operator/internal/evidence/oscaltest"
)

var testNow = time.Date(2026, time.August, 1, 12, 0, 0, 0, time.UTC)

// testModels have areas with and without controls, controls of two
// frameworks (one id not an OSCAL token), and duties.
func testModels() []Model {
	return []Model{
		{
			Name: "acme-postgres", Service: "Managed PostgreSQL", Provider: "ACME Cloud", Waivers: "Allowed",
			Description: "ACME runs the engine; the customer schedules backups.",
			Areas: []Area{
				{Name: "Physical Infrastructure", Provider: "Data centres, power, hardware", Customer: "N/A"},
				{
					Name: "Backups", Provider: "Backup storage and retention", Customer: "Backup schedule,\nrestore tests",
					Controls: []Control{
						{Framework: "NIST SP 800-53 Rev. 5", ID: "cp-9", URL: "https://csrc.nist.gov/pubs/sp/800/53/r5/upd1/final"},
						{Framework: "ISO/IEC 27001:2022", ID: "A.8.13"},
						{Framework: "NIST SP 800-53 Rev. 5", ID: "cp-10"},
						{Framework: "ISO/IEC 27001:2022", ID: "5.30"},
						{Framework: "NIST SP 800-53 Rev. 5", ID: "cp-9"},
					},
					Duties: []Duty{{Name: "backup-scheduled", Description: "An active ScheduledBackup names the cluster.", Severity: "Warning"}},
				},
				{
					Name: "Connection Security", Provider: "TLS certificates", Customer: "Enforcing TLS in clients",
					Duties: []Duty{{Name: "tls-enforced", Severity: "Warning"}},
				},
			},
		},
		{
			Name: "acme-buckets", Service: "Object Storage", Provider: "ACME Cloud", Waivers: "DutyWaivers",
			Areas: []Area{{
				Name: "Data Protection", Provider: "Durability", Customer: "Versioning and access policy",
				Duties: []Duty{{Name: "versioning-enabled", Severity: "Warning"}, {Name: "public-access-blocked", Severity: "Info"}},
			}},
		},
	}
}

func testSnapshot() Snapshot {
	expires := time.Date(2026, time.August, 13, 0, 0, 0, 0, time.UTC)
	return Snapshot{
		CollectedAt: testNow, Cluster: "prod-eu", Models: testModels(),
		Namespaces: []Namespace{
			{
				Name: "legacy",
				Objects: []Object{
					{
						APIVersion: "postgresql.cnpg.io/v1", Kind: "Cluster", Name: "forged-db", Models: []string{"acme-postgres"},
						Duties: []DutyState{}, Problem: "the annotation responsibility.io/duties is not the operator's JSON",
					},
					{
						APIVersion: "postgresql.cnpg.io/v1", Kind: "Cluster", Name: "scratch-db", UID: "6f7c1c52-0001-4000-8000-000000000002",
						Models: []string{"acme-postgres"},
						Duties: []DutyState{
							{Model: "acme-postgres", Duty: "backup-scheduled", State: "Unmet", Message: "No active ScheduledBackup names cluster scratch-db"},
							{Model: "acme-postgres", Duty: "tls-enforced", State: "Waived", Message: "waived: only reachable inside the namespace"},
						},
					},
				},
				Waivers: []Waiver{{
					Source: "annotation", Name: "cluster.postgresql.cnpg.io/scratch-db", Model: "acme-postgres",
					Duties: []string{"tls-enforced"}, Reason: "only reachable inside the namespace", Active: "True",
				}},
			},
			{
				Name: "media",
				Objects: []Object{
					{
						APIVersion: "storage.acme.io/v1", Kind: "Bucket", Name: "assets", Models: []string{"acme-buckets"},
						Duties: []DutyState{
							{Model: "acme-buckets", Duty: "public-access-blocked", State: "Waived", Waiver: "public-assets",
								Message: "waived by DutyWaiver public-assets until 2026-08-13T00:00:00Z"},
							{Model: "acme-buckets", Duty: "versioning-enabled", State: "Unknown", Message: "no such key: versioning"},
						},
					},
					{
						APIVersion: "postgresql.cnpg.io/v1", Kind: "Cluster", Name: "media-db", Models: []string{"acme-postgres"},
						Duties: []DutyState{{Model: "acme-postgres", Duty: "backup-scheduled", State: "Met"}},
					},
				},
				Waivers: []Waiver{{
					Source: "DutyWaiver", Name: "public-assets", Model: "acme-buckets", Duties: []string{"public-access-blocked"},
					Reason: "The bucket serves the public website's static assets.", Ticket: "SEC-1234",
					GrantedBy: "security-lead@acme.io", Expires: &expires, Active: "True",
				}},
			},
		},
	}
}

func render(t *testing.T, write func(*bytes.Buffer, Snapshot) error, s Snapshot) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := write(&buf, s); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func writeCD(b *bytes.Buffer, s Snapshot) error { return WriteComponentDefinition(b, s) }
func writeAR(b *bytes.Buffer, s Snapshot) error { return WriteAssessmentResults(b, s) }

func TestUUIDv5(t *testing.T) {
	// RFC 9562's example: the UUIDv5 of "www.example.com" in the DNS
	// namespace (Appendix A.4).
	dns := [16]byte{0x6b, 0xa7, 0xb8, 0x10, 0x9d, 0xad, 0x11, 0xd1, 0x80, 0xb4, 0x00, 0xc0, 0x4f, 0xd4, 0x30, 0xc8}
	if got, want := formatUUID(uuidV5(dns, "www.example.com")), "2ed6657d-e927-568b-95e1-2665a8aea6a2"; got != want {
		t.Errorf("uuidV5 = %s, want %s", got, want)
	}
	if newUUID("a", "b/c") == newUUID("a", "b", "c") || newUUID("a", "bc") == newUUID("ab", "c") {
		t.Error("newUUID: different names give the same UUID")
	}
	if a, b := newUUID("component", "x"), newUUID("component", "x"); a != b {
		t.Error("newUUID is not deterministic")
	}
}

func TestTokens(t *testing.T) {
	tests := []struct {
		name string
		got  string
		want string
	}{
		{"slug", slug("Physical Infrastructure", "area"), "physical-infrastructure"},
		{"slug punctuation", slug("Access / Identity (IAM)", "area"), "access-identity-iam"},
		{"slug digit", slug("2FA", "area"), "area-2fa"},
		{"slug empty", slug("—", "area"), "area"},
		{"slug unicode", slug("Sécurité réseau", "area"), "sécurité-réseau"},
		{"control token", controlToken("sc-8"), "sc-8"},
		{"control token annex", controlToken("A.8.24"), "A.8.24"},
		{"control token digit", controlToken("5.30"), "_5.30"},
		{"control token space", controlToken("CC 6.1"), "_cc-6-1"},
		{"duty token", dutyToken("acme-postgres", "tls-enforced"), "acme-postgres.tls-enforced"},
		{"duty token digit", dutyToken("1password", "mfa"), "_1password.mfa"},
		{"line", line("  a\n\tb  c "), "a b c"},
		{"dns name", dnsName("Amazon Connect Service"), "amazon-connect-service"},
		{"dns name accents", dnsName("Sécurité (v2)"), "s-curit-v2"},
		{"dns name empty", dnsName("???"), "imported-model"},
		{"dns name long", dnsName(strings.Repeat("ab ", 40)), strings.TrimRight(strings.Repeat("ab-", 21), "-")},
		{"api group", apiGroup("postgresql.cnpg.io/v1"), "postgresql.cnpg.io"},
		{"api group core", apiGroup("v1"), ""},
		{"object arg", objectArg(Object{APIVersion: "postgresql.cnpg.io/v1", Kind: "Cluster", Name: "db"}), "cluster.postgresql.cnpg.io/db"},
		{"object title", objectTitle("shop", Object{APIVersion: "v1", Kind: "ConfigMap", Name: "c"}), "ConfigMap shop/c"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.got != tt.want {
				t.Errorf("got %q, want %q", tt.got, tt.want)
			}
			if strings.Contains(tt.name, "token") && !isToken(tt.got) {
				t.Errorf("%q is not an OSCAL token", tt.got)
			}
		})
	}
}

func TestComponentDefinitionValidates(t *testing.T) {
	tests := []struct {
		name string
		s    Snapshot
	}{
		{"models", testSnapshot()},
		{"no models", Snapshot{CollectedAt: testNow}},
		{"one model without description", Snapshot{CollectedAt: testNow, Models: []Model{{
			Name: "m", Service: "Svc\nwith a line break ", Provider: " P ", Waivers: "Allowed",
			Areas: []Area{{Name: "2 Area", Provider: "p", Customer: "c"}, {Name: "2 area", Provider: "p", Customer: "c"}},
		}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			doc := render(t, writeCD, tt.s)
			if err := oscaltest.Validate(doc, oscaltest.ComponentDefinition); err != nil {
				t.Fatalf("%v\n%s", err, doc)
			}
		})
	}
}

func TestComponentDefinitionShape(t *testing.T) {
	s := testSnapshot()
	var doc componentDefinitionDocument
	if err := json.Unmarshal(render(t, writeCD, s), &doc); err != nil {
		t.Fatal(err)
	}
	cd := doc.ComponentDefinition
	if len(cd.Components) != 2 || cd.Components[0].Type != "service" || cd.Components[0].Title != "Managed PostgreSQL" {
		t.Fatalf("components: %+v", cd.Components)
	}
	pg := cd.Components[0]
	// Physical Infrastructure; Backups per framework (NIST, ISO); Connection Security.
	var sources, controls []string
	for _, ci := range pg.ControlImplementations {
		sources = append(sources, ci.Source)
		for _, r := range ci.ImplementedRequirements {
			controls = append(controls, r.ControlID)
		}
	}
	if want := []string{"physical-infrastructure", "cp-9", "cp-10", "A.8.13", "_5.30", "connection-security"}; !reflect.DeepEqual(controls, want) {
		t.Errorf("control ids = %q, want %q", controls, want)
	}
	if sources[0] != sources[3] || sources[1] == sources[2] || sources[1] == sources[0] {
		t.Errorf("sources = %q: the matrix's areas share one, each framework has its own", sources)
	}
	backups := pg.ControlImplementations[1].ImplementedRequirements[0]
	if backups.Description != "Backup storage and retention" || len(backups.ResponsibleRoles) != 2 ||
		backups.ResponsibleRoles[0].RoleID != roleProvider || backups.ResponsibleRoles[0].PartyUUIDs[0] != cd.Metadata.Parties[0].UUID ||
		backups.ResponsibleRoles[1].RoleID != roleCustomer || backups.ResponsibleRoles[1].Remarks != "Backup schedule,\nrestore tests" {
		t.Errorf("the Backups requirement: %+v", backups)
	}
	if propValue(backups.Props, propArea) != "Backups" || propValue(backups.Props, propCustomerDuty) != "backup-scheduled" {
		t.Errorf("the Backups requirement's props: %+v", backups.Props)
	}
	if len(backups.Links) != 1 || backups.Links[0].Href != "https://csrc.nist.gov/pubs/sp/800/53/r5/upd1/final" {
		t.Errorf("the Backups requirement's links: %+v", backups.Links)
	}
	iso := pg.ControlImplementations[2].ImplementedRequirements[1]
	if propValue(iso.Props, propControlID) != "5.30" {
		t.Errorf("the requirement of control 5.30 keeps its id in a prop: %+v", iso.Props)
	}
	if len(cd.Metadata.Parties) != 1 || cd.Metadata.Parties[0].Name != "ACME Cloud" {
		t.Errorf("parties: %+v", cd.Metadata.Parties)
	}
	if !regexp.MustCompile(`^sha256-[0-9a-f]{16}$`).MatchString(cd.Metadata.Version) {
		t.Errorf("version %q", cd.Metadata.Version)
	}
}

// TestComponentDefinitionDeterministic: the same models give the same
// document but for last-modified; a change of the matrix changes the
// version, not the UUIDs of what did not change.
func TestComponentDefinitionDeterministic(t *testing.T) {
	s := testSnapshot()
	first := render(t, writeCD, s)
	s.CollectedAt = testNow.Add(time.Hour)
	s.Namespaces = nil
	second := render(t, writeCD, s)
	stamp := regexp.MustCompile(`"last-modified": "[^"]*"`)
	if a, b := stamp.ReplaceAll(first, nil), stamp.ReplaceAll(second, nil); !bytes.Equal(a, b) {
		t.Errorf("the documents differ beyond last-modified:\n%s\n%s", first, second)
	}
	if bytes.Equal(first, second) {
		t.Error("last-modified did not follow the time of collection")
	}
	s.Models[1].Areas[0].Customer = "Versioning"
	var a, b componentDefinitionDocument
	if err := json.Unmarshal(first, &a); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(render(t, writeCD, s), &b); err != nil {
		t.Fatal(err)
	}
	if a.ComponentDefinition.Metadata.Version == b.ComponentDefinition.Metadata.Version {
		t.Error("a change of a customer's part kept the version")
	}
	if a.ComponentDefinition.UUID != b.ComponentDefinition.UUID || a.ComponentDefinition.Components[1].UUID != b.ComponentDefinition.Components[1].UUID {
		t.Error("a change of a customer's part changed UUIDs")
	}
}

func TestComponentDefinitionRoundTrip(t *testing.T) {
	s := testSnapshot()
	s.Models = append(s.Models, Model{Name: "bare", Service: "Bare", Provider: "Other Org", Waivers: "Forbidden",
		Areas: []Area{{Name: "Only", Provider: "  leading spaces\nand lines", Customer: "N/A"}}})
	got, err := ReadComponentDefinition(render(t, writeCD, s))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(s.Models) {
		t.Fatalf("%d models, want %d", len(got), len(s.Models))
	}
	for i, want := range s.Models {
		m := got[i].Model
		// Duties are not imported; duplicated controls are written once.
		for j := range want.Areas {
			want.Areas[j].Duties = nil
		}
		if want.Name == "acme-postgres" {
			want.Areas[1].Controls = want.Areas[1].Controls[:4]
			// Grouped by framework, in the order of first appearance.
			c := want.Areas[1].Controls
			want.Areas[1].Controls = []Control{c[0], c[2], c[1], c[3]}
		}
		if !reflect.DeepEqual(m, want) {
			t.Errorf("model %d:\n got %+v\nwant %+v", i, m, want)
		}
		if len(got[i].Placeholders) != 0 {
			t.Errorf("model %s: placeholders %v", m.Name, got[i].Placeholders)
		}
	}
}

// TestReadComponentDefinitionForeign reads a component definition that
// another tool wrote: no area props, responsible-parties instead of a
// provider role, an SSP-style export, texts in statements, no customer text.
func TestReadComponentDefinitionForeign(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("testdata", "component-definition-foreign.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := oscaltest.Validate(raw, oscaltest.ComponentDefinition); err == nil {
		t.Error("the fixture's export is not in OSCAL 1.1.3's component definition, yet it validates")
	}
	got, err := ReadComponentDefinition(raw)
	if err != nil {
		t.Fatal(err)
	}
	want := []ImportedModel{
		{
			Model: Model{
				Name: "example-queue-service", Service: "Example Queue Service", Provider: "Example Cloud Inc.",
				Description: "A managed message queue.",
				Areas: []Area{
					{
						Name: "sc-8", Provider: "The service encrypts every connection with TLS 1.2 or later.",
						Customer: "Clients verify the server certificate.",
						Controls: []Control{{Framework: "NIST SP 800-53 Rev 5 catalog", ID: "sc-8", URL: "https://example.com/controls/sc-8"}},
					},
					{
						Name: "sc-28", Provider: "Messages are encrypted at rest.\n\nKeys rotate yearly.",
						Customer: Placeholder + "the customer's part: the component definition does not state it",
						Controls: []Control{
							{Framework: "NIST SP 800-53 Rev 5 catalog", ID: "sc-28"},
							{Framework: "https://example.com/other-profile.json", ID: "sc-28"},
						},
					},
					{
						Name: "SQS.1", Provider: Placeholder + "the provider's part: the component definition does not state it",
						Customer: "Enable the Security Hub control.",
						Controls: []Control{{Framework: "NIST SP 800-53 Rev 5 catalog", ID: "SQS.1"}},
					},
				},
			},
			ComponentUUID: "d0a3c0d6-8a36-4c59-9d3b-4f0c8f9a2b11", ComponentTitle: "Example Queue Service",
			Placeholders: []string{"spec.areas[1].customer", "spec.areas[2].provider"},
		},
		{
			Model: Model{
				Name: "example-queue-service-2", Service: "Example Queue Service", Provider: "Example Cloud Inc.",
				Description: "The same title again.",
			},
			ComponentUUID: "d0a3c0d6-8a36-4c59-9d3b-4f0c8f9a2b12", ComponentTitle: "Example Queue Service",
		},
	}
	if !reflect.DeepEqual(got, want) {
		g, _ := json.MarshalIndent(got, "", "  ")
		w, _ := json.MarshalIndent(want, "", "  ")
		t.Errorf("got\n%s\nwant\n%s", g, w)
	}
}

func TestReadComponentDefinitionErrors(t *testing.T) {
	tests := []struct {
		name string
		doc  string
		want error
	}{
		{"not json", "{", nil},
		{"another model", `{"catalog": {"uuid": "x"}}`, ErrNotComponentDefinition},
		{"wrong type", `{"component-definition": {"components": 3}}`, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ReadComponentDefinition([]byte(tt.doc))
			if err == nil || (tt.want != nil && !errors.Is(err, tt.want)) {
				t.Errorf("err = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestAssessmentResultsValidates(t *testing.T) {
	empty := Snapshot{CollectedAt: testNow, Namespace: "shop", Models: testModels(), Namespaces: []Namespace{}}
	unreadable := testSnapshot()
	unreadable.Models = nil
	for name, s := range map[string]Snapshot{"cluster": testSnapshot(), "empty namespace": empty, "models not readable": unreadable} {
		t.Run(name, func(t *testing.T) {
			doc := render(t, writeAR, s)
			if err := oscaltest.Validate(doc, oscaltest.AssessmentResults); err != nil {
				t.Fatalf("%v\n%s", err, doc)
			}
		})
	}
}

func TestAssessmentResultsShape(t *testing.T) {
	var doc assessmentResultsDocument
	if err := json.Unmarshal(render(t, writeAR, testSnapshot()), &doc); err != nil {
		t.Fatal(err)
	}
	ar := doc.AssessmentResults
	if len(ar.Results) != 1 {
		t.Fatalf("%d results, want 1", len(ar.Results))
	}
	res := ar.Results[0]
	if res.Start != "2026-08-01T12:00:00Z" || ar.Metadata.Version != res.Start {
		t.Errorf("start %s, version %s", res.Start, ar.Metadata.Version)
	}
	items := map[string]string{}
	for _, it := range res.LocalDefinitions.InventoryItems {
		items[it.UUID] = propValue(it.Props, propName)
	}
	if len(items) != 4 {
		t.Errorf("inventory items: %v", items)
	}
	observations := map[string]observation{}
	for _, o := range res.Observations {
		observations[o.UUID] = o
		if o.Collected != res.Start || len(o.Subjects) != 1 || items[o.Subjects[0].SubjectUUID] == "" {
			t.Errorf("observation %q: collected %s, subjects %+v", o.Title, o.Collected, o.Subjects)
		}
	}
	// One observation for the unreadable object, one per duty.
	if len(res.Observations) != 6 || len(res.Findings) != 5 {
		t.Errorf("%d observations, %d findings", len(res.Observations), len(res.Findings))
	}
	checkFindings(t, res, items, observations)
	checkRisks(t, res)
	if res.Remarks != "4 objects; duties: 1 met, 1 unmet, 2 unknown, 2 waived." {
		t.Errorf("remarks %q", res.Remarks)
	}
	var comps []string
	for _, c := range res.LocalDefinitions.Components {
		comps = append(comps, c.UUID)
	}
	if want := []string{componentUUID("acme-buckets"), componentUUID("acme-postgres")}; !reflect.DeepEqual(comps, want) {
		t.Errorf("components %v, want the component definition's %v", comps, want)
	}
}

// checkFindings checks the finding of each duty state: its status, its
// observation's subject and its risk.
func checkFindings(t *testing.T, res result, items map[string]string, observations map[string]observation) {
	t.Helper()
	risks := map[string]risk{}
	for _, r := range res.Risks {
		risks[r.UUID] = r
	}
	// By target and subject: the finding's status, and its risk's
	// description when a waiver accepts it.
	type want struct{ state, reason, risk string }
	wants := map[string]want{
		"acme-postgres.backup-scheduled/scratch-db": {"not-satisfied", "fail", ""},
		"acme-postgres.tls-enforced/scratch-db":     {"not-satisfied", "fail", "only reachable inside the namespace"},
		"acme-buckets.public-access-blocked/assets": {"not-satisfied", "fail", "The bucket serves the public website's static assets."},
		"acme-buckets.versioning-enabled/assets":    {"not-satisfied", "other", ""},
		"acme-postgres.backup-scheduled/media-db":   {"satisfied", "pass", ""},
	}
	for _, f := range res.Findings {
		obs := observations[f.RelatedObservations[0].ObservationUUID]
		key := f.Target.TargetID + "/" + items[obs.Subjects[0].SubjectUUID]
		w, ok := wants[key]
		if !ok {
			t.Errorf("unexpected finding %s", key)
			continue
		}
		if f.Target.Status.State != w.state || f.Target.Status.Reason != w.reason {
			t.Errorf("%s: status %+v, want %s/%s", key, f.Target.Status, w.state, w.reason)
		}
		if (w.risk == "") != (len(f.RelatedRisks) == 0) {
			t.Errorf("%s: related risks %+v", key, f.RelatedRisks)
			continue
		}
		if w.risk != "" {
			r := risks[f.RelatedRisks[0].RiskUUID]
			if r.Status != "deviation-approved" || r.Description != w.risk {
				t.Errorf("%s: risk %+v", key, r)
			}
		}
	}
}

// checkRisks checks the risks of the waivers.
func checkRisks(t *testing.T, res result) {
	t.Helper()
	for _, r := range res.Risks {
		if propValue(r.Props, propWaiver) == "public-assets" {
			if r.Deadline != "2026-08-13T00:00:00Z" || propValue(r.Props, propTicket) != "SEC-1234" ||
				propValue(r.Props, propGrantedBy) != "security-lead@acme.io" || propValue(r.Props, propWaiverSource) != "DutyWaiver" {
				t.Errorf("the DutyWaiver's risk: %+v", r)
			}
		} else if propValue(r.Props, propWaiverSource) != "annotation" || r.Deadline != "" {
			t.Errorf("the annotation's risk: %+v", r)
		}
	}
}

// TestSchemaRejects makes sure the validator validates: documents that
// break the schema in the ways the writers must avoid fail.
func TestSchemaRejects(t *testing.T) {
	valid := render(t, writeCD, testSnapshot())
	tests := []struct {
		name  string
		model string
		edit  func(map[string]any)
	}{
		{"export in a statement", oscaltest.ComponentDefinition, func(d map[string]any) {
			req := path(d, "component-definition", "components", 0, "control-implementations", 0, "implemented-requirements", 0).(map[string]any)
			req["statements"] = []any{map[string]any{"statement-id": "x_smt", "uuid": newUUID("x"), "description": "d",
				"export": map[string]any{"provided": []any{map[string]any{"uuid": newUUID("y"), "description": "p"}}}}}
		}},
		{"control-id not a token", oscaltest.ComponentDefinition, func(d map[string]any) {
			path(d, "component-definition", "components", 0, "control-implementations", 0, "implemented-requirements", 0).(map[string]any)["control-id"] = "5.30"
		}},
		{"uuid version 1", oscaltest.ComponentDefinition, func(d map[string]any) {
			path(d, "component-definition").(map[string]any)["uuid"] = "6ba7b810-9dad-11d1-80b4-00c04fd430c8"
		}},
		{"prop value with a line break", oscaltest.ComponentDefinition, func(d map[string]any) {
			path(d, "component-definition", "components", 0, "props", 0).(map[string]any)["value"] = "a\nb"
		}},
		{"time without zone", oscaltest.ComponentDefinition, func(d map[string]any) {
			path(d, "component-definition", "metadata").(map[string]any)["last-modified"] = "2026-08-01T12:00:00"
		}},
		{"unknown field", oscaltest.ComponentDefinition, func(d map[string]any) {
			path(d, "component-definition", "components", 0).(map[string]any)["customer"] = "x"
		}},
		{"a component definition as assessment results", oscaltest.AssessmentResults, func(map[string]any) {}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var d map[string]any
			if err := json.Unmarshal(valid, &d); err != nil {
				t.Fatal(err)
			}
			tt.edit(d)
			doc, err := json.Marshal(d)
			if err != nil {
				t.Fatal(err)
			}
			if err := oscaltest.Validate(doc, tt.model); err == nil {
				t.Error("the document validates")
			}
		})
	}
}

func path(v any, keys ...any) any {
	for _, k := range keys {
		switch k := k.(type) {
		case string:
			v = v.(map[string]any)[k]
		case int:
			v = v.([]any)[k]
		}
	}
	return v
}

// TestVendoredSchemas checks the vendored schemas against the sha256 their
// README records.
func TestVendoredSchemas(t *testing.T) {
	f, err := os.Open(filepath.Join(oscaltest.Dir(), "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	row := regexp.MustCompile("^\\| `([^`]+\\.json)` \\|.*\\| `([0-9a-f]{64})` \\|$")
	checked := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		m := row.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		raw, err := os.ReadFile(filepath.Join(oscaltest.Dir(), m[1]))
		if err != nil {
			t.Error(err)
			continue
		}
		sum := sha256.Sum256(raw)
		if got := hex.EncodeToString(sum[:]); got != m[2] {
			t.Errorf("%s: sha256 %s, the README says %s", m[1], got, m[2])
		}
		checked++
	}
	if want := 2 * len(oscaltest.Versions); checked != want {
		t.Errorf("the README lists %d schemas, want %d", checked, want)
	}
}

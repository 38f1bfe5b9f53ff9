package plugin

import (
	"strings"
	"testing"

	"github.com/responsibility-operator/responsibility-operator/api/v1alpha1"
)

// TestExplainAdmission: explain says which duties the API server answers
// at kubectl apply, and which it cannot and the operator alone evaluates.
func TestExplainAdmission(t *testing.T) {
	c := loadFakeCluster(t)
	var rm *v1alpha1.ResponsibilityModel
	for i := range c.models {
		if c.models[i].Name == "acme-postgres" {
			rm = &c.models[i]
		}
	}
	if rm == nil {
		t.Fatal("testdata/models.yaml has no acme-postgres")
	}
	rm.Spec.Admission = v1alpha1.AdmissionWarn
	got := runCommand(t, c, false, "explain", "acme-postgres")
	var apiServer, operatorOnly int
	for line := range strings.SplitSeq(got, "\n") {
		switch {
		case strings.HasPrefix(line, "  Admission: Warn (the API server answers at kubectl apply"):
			apiServer++
		case strings.HasPrefix(line, "  Admission: Warn, but not at kubectl apply: its rule reads related objects"):
			operatorOnly++
		}
	}
	if apiServer == 0 || operatorOnly == 0 {
		t.Errorf("explain of a model with admission Warn shows %d duties answered by the API server and %d by the operator only; want both:\n%s", apiServer, operatorOnly, got)
	}
	if !strings.Contains(runCommand(t, c, false, "explain", "acme-postgres", "-o", "json"), `"admissionOperatorOnly": "its rule reads related objects"`) {
		t.Error("explain -o json does not say which duties only the operator evaluates")
	}
}

package plugin

import (
	"fmt"
	"path/filepath"
	"time"

	"github.com/responsibility-operator/responsibility-operator/internal/evaluate"
	"github.com/responsibility-operator/responsibility-operator/internal/modeltest"
	"github.com/responsibility-operator/responsibility-operator/internal/samples"
)

// Evaluation is the result of the models on one sample object.
type Evaluation struct {
	File string `json:"file"`
	ObjectRef
	Status         string    `json:"status"`
	Models         []string  `json:"models"`
	Duties         []DutyRow `json:"duties"`
	IgnoredWaivers []string  `json:"ignoredWaivers,omitempty"`
}

// evaluateSamples evaluates the models on every object of the sample files
// the way the operator would (modeltest.Scenario): the object's Namespace
// from the files (a bare one when the files have none) and the related
// objects from the files, at now. matchedNone is true when no model
// targets any object.
func evaluateSamples(models []*evaluate.Model, files []string, now time.Time) (out []Evaluation, matchedNone bool, err error) {
	scenario := &modeltest.Scenario{Models: models, Now: now}
	var fileOf []string
	for _, f := range files {
		docs, err := samples.ReadFile(f)
		if err != nil {
			return nil, false, fmt.Errorf("--against: %w", err)
		}
		for _, u := range docs {
			scenario.Objects = append(scenario.Objects, u)
			fileOf = append(fileOf, f)
		}
	}
	results := scenario.Evaluate()
	for i, o := range scenario.Objects {
		res, ok := results[modeltest.RefOf(o)]
		if !ok {
			continue
		}
		e := Evaluation{
			File: filepath.Base(fileOf[i]), ObjectRef: refOf(o), Status: res.Status(), Duties: []DutyRow{},
		}
		for _, m := range res.Models {
			e.Models = append(e.Models, m.Name)
		}
		for _, d := range res.Duties {
			e.Duties = append(e.Duties, DutyRow{Model: d.Model, Duty: d.Duty.Name, State: d.State, Message: d.Message})
		}
		for _, w := range res.IgnoredWaivers {
			e.IgnoredWaivers = append(e.IgnoredWaivers, w.Duty+": "+w.Reason)
		}
		out = append(out, e)
	}
	return out, len(out) == 0, nil
}

func (o *Options) printEvaluation(w *printer, e Evaluation) error {
	w.printf("%s (%s): %s\n", e.String(), sanitize(e.File), e.Status)
	for _, iw := range e.IgnoredWaivers {
		w.printf("  ignored waiver %s\n", sanitize(iw))
	}
	if len(e.Duties) == 0 {
		w.println("  no duties")
		return nil
	}
	t := newTable("MODEL", "DUTY", "STATE", "MESSAGE")
	t.stateColumn = 2
	t.indent = "  "
	for _, d := range e.Duties {
		t.add(d.Model, d.Duty, string(d.State), d.Message)
	}
	return t.print(w, o.Color)
}

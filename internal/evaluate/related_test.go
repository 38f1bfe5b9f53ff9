package evaluate

import (
	"errors"
	"fmt"
	"testing"

	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/responsibility-operator/responsibility-operator/api/v1alpha1"
)

func TestRelatedInput(t *testing.T) {
	// Two models reading ScheduledBackups: one in the workload's namespace
	// (twice, deduplicated), one in the fixed namespace "backups".
	own := mustCompile(t, model("own"))
	fixed := mustCompile(t, model("fixed", func(rm *v1alpha1.ResponsibilityModel) {
		rm.Spec.Areas[1].Duties[0].Related[0].Namespace = "backups"
	}))
	lister := func(calls *[]string, ok bool, err error) RelatedLister {
		return func(gvk schema.GroupVersionKind, ns string) ([]map[string]any, bool, error) {
			*calls = append(*calls, gvk.Kind+"/"+ns)
			return []map[string]any{schedule(ns)}, ok, err
		}
	}
	cases := []struct {
		name      string
		models    []*Model
		namespace string
		ok        bool
		err       error
		wantCalls string
		want      map[string]string // source namespace → the related list's only object's name
		complete  bool
	}{
		{"own namespace", []*Model{own, own}, "team-a", true, nil, "[ScheduledBackup/team-a]", map[string]string{"": "team-a-daily"}, true},
		{"fixed namespace", []*Model{own, fixed}, "team-a", true, nil, "[ScheduledBackup/team-a ScheduledBackup/backups]", map[string]string{"": "team-a-daily", "backups": "backups-daily"}, true},
		{"cluster-scoped workload reads only fixed namespaces", []*Model{own, fixed}, "", true, nil, "[ScheduledBackup/backups]", map[string]string{"": "", "backups": "backups-daily"}, true},
		{"incomplete", []*Model{own, fixed}, "team-a", false, nil, "[ScheduledBackup/team-a]", nil, false},
		{"error", []*Model{own}, "team-a", true, errors.New("boom"), "[ScheduledBackup/team-a]", nil, false},
		{"no model", nil, "team-a", true, nil, "[]", nil, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var calls []string
			related, complete, err := RelatedInput(c.models, c.namespace, lister(&calls, c.ok, c.err))
			if (err != nil) != (c.err != nil) || complete != c.complete {
				t.Fatalf("complete %v, error %v; want %v, %v", complete, err, c.complete, c.err)
			}
			if got := fmt.Sprint(calls); got != c.wantCalls {
				t.Errorf("listed %s, want %s", got, c.wantCalls)
			}
			if len(related) != len(c.want) {
				t.Fatalf("%d related sources, want %d: %v", len(related), len(c.want), related)
			}
			for ns, name := range c.want {
				objs := related[RelatedSource{GVK: backupGVK, Namespace: ns}]
				got := ""
				if len(objs) == 1 {
					got = objs[0]["metadata"].(map[string]any)["name"].(string)
				}
				if got != name {
					t.Errorf("source %q: %v, want one object named %q", ns, objs, name)
				}
			}
		})
	}
}

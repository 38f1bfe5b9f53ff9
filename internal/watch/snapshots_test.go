package watch

import (
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

func TestRelatedSnapshots(t *testing.T) {
	backup := schema.GroupVersionKind{Group: "postgresql.cnpg.io", Version: "v1", Kind: "ScheduledBackup"}
	object := func(name, field string) *unstructured.Unstructured {
		return &unstructured.Unstructured{Object: map[string]any{"metadata": map[string]any{"name": name}, "spec": map[string]any{field: true}}}
	}
	narrow := []*unstructured.Unstructured{object("b", "narrow"), object("a", "narrow")}
	wide := []*unstructured.Unstructured{object("b", "wide"), object("a", "wide")}
	spec := func(objs []map[string]any) map[string]any { return objs[0]["spec"].(map[string]any) }

	s := newRelatedSnapshots()
	loads := 0
	load := func(items []*unstructured.Unstructured) func() ([]*unstructured.Unstructured, error) {
		return func() ([]*unstructured.Unstructured, error) { loads++; return items, nil }
	}

	got, err := s.list(backup, "team-a", load(narrow))
	if err != nil {
		t.Fatal(err)
	}
	if got[0]["metadata"].(map[string]any)["name"] != "a" {
		t.Errorf("not sorted by name: %v", got)
	}
	if _, err := s.list(backup, "team-a", load(narrow)); err != nil || loads != 1 {
		t.Errorf("an unchanged namespace was loaded again (%d loads, err %v)", loads, err)
	}
	s.changed(backup, "team-a")
	if _, err := s.list(backup, "team-a", load(narrow)); err != nil || loads != 2 {
		t.Errorf("a changed namespace was not loaded again (%d loads, err %v)", loads, err)
	}

	// A reader loads the old informer's narrow objects of a namespace that
	// has no version yet; the kind is stopped and watched again, wider,
	// before the reader saves them. The next reader must not reuse them.
	_, err = s.list(backup, "team-b", func() ([]*unstructured.Unstructured, error) {
		s.forget(backup)
		return narrow, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	got, err = s.list(backup, "team-b", load(wide))
	if err != nil {
		t.Fatal(err)
	}
	if spec(got)["wide"] != true {
		t.Errorf("a snapshot loaded before the kind was watched again is still used: %v", got)
	}
	// Other namespaces' snapshots of the kind are out of date too.
	got, err = s.list(backup, "team-a", load(wide))
	if err != nil || spec(got)["wide"] != true {
		t.Errorf("team-a still reads the narrow snapshot after forget: %v, %v", got, err)
	}
}

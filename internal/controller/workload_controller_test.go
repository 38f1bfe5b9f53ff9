package controller

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/responsibility-operator/responsibility-operator/api/v1alpha1"
)

const cnpg = "postgresql.cnpg.io/v1"

// dbModel is a model for CNPG Clusters in the namespaces labelled for one test.
func dbModel(name, testLabel string) *v1alpha1.ResponsibilityModel {
	return &v1alpha1.ResponsibilityModel{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: v1alpha1.ResponsibilityModelSpec{
			Service:  "Managed Databases",
			Provider: "DanubeData",
			Targets: []v1alpha1.Target{{
				APIVersion: cnpg, Kind: "Cluster",
				NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"test": testLabel}},
			}},
			Areas: []v1alpha1.Area{
				{Name: "Connection Security", Provider: "TLS certificate provisioning", Customer: "Enforcing TLS in client connections",
					Duties: []v1alpha1.Duty{{
						Name: "tls-enforced", Message: "Set spec.postgresql.parameters.ssl_min_protocol_version",
						Rule: `object.spec.?postgresql.?parameters.?ssl_min_protocol_version.hasValue()`,
					}}},
				{Name: "Backups", Provider: "Backup storage", Customer: "Backup schedule preferences",
					Duties: []v1alpha1.Duty{{
						Name: "backup-scheduled", Message: "Create a ScheduledBackup for the cluster",
						Rule:    `related.schedules.exists(s, s.spec.cluster.name == object.metadata.name)`,
						Related: []v1alpha1.RelatedResource{{Name: "schedules", APIVersion: cnpg, Kind: "ScheduledBackup"}},
					}}},
			},
		},
	}
}

func tlsSpec() map[string]any {
	return map[string]any{"instances": int64(1), "postgresql": map[string]any{"parameters": map[string]any{"ssl_min_protocol_version": "TLSv1.3"}}}
}

func TestAnnotatesMatchingObjects(t *testing.T) {
	startManager(t)
	ns := newNamespace(t, map[string]string{"test": "annotate"})
	other := newNamespace(t, map[string]string{"test": "elsewhere"})
	applyModel(t, dbModel("annotate-db", "annotate"))

	db := createObject(t, cnpg, "Cluster", ns, "orders", nil, tlsSpec())
	outside := createObject(t, cnpg, "Cluster", other, "orders", nil, tlsSpec())

	waitAnnotation(t, db, v1alpha1.AnnotationModels, "annotate-db", true)
	got := getObject(t, db)
	ann := got.GetAnnotations()
	if ann[v1alpha1.AnnotationProvider] != "DanubeData" || ann[v1alpha1.AnnotationService] != "Managed Databases" {
		t.Errorf("provider/service = %q/%q", ann[v1alpha1.AnnotationProvider], ann[v1alpha1.AnnotationService])
	}
	var matrix map[string]map[string]map[string]string
	if err := json.Unmarshal([]byte(ann[v1alpha1.AnnotationMatrix]), &matrix); err != nil {
		t.Fatalf("matrix annotation is not JSON: %v", err)
	}
	if matrix["annotate-db"]["Backups"]["customer"] != "Backup schedule preferences" {
		t.Errorf("matrix = %v", matrix)
	}
	if ann[v1alpha1.AnnotationUnmet] != "annotate-db/backup-scheduled" {
		t.Errorf("unmet = %q", ann[v1alpha1.AnnotationUnmet])
	}
	if got.GetLabels()[v1alpha1.LabelStatus] != v1alpha1.StatusUnmet {
		t.Errorf("status label = %q", got.GetLabels()[v1alpha1.LabelStatus])
	}

	// The object in a namespace the model does not select is never written.
	consistently(t, time.Second, func() error {
		if keys := ownedKeys(getObject(t, outside)); len(keys) > 0 {
			return fmt.Errorf("object outside the namespace selector got %v", keys)
		}
		return nil
	})

	// Status counts and printer-column fields.
	eventually(t, 10*time.Second, func() error {
		rm := &v1alpha1.ResponsibilityModel{}
		if err := k8s.Get(context.Background(), client.ObjectKey{Name: "annotate-db"}, rm); err != nil {
			return err
		}
		ready := meta.FindStatusCondition(rm.Status.Conditions, v1alpha1.ConditionReady)
		if ready == nil || ready.Status != metav1.ConditionTrue || rm.Status.ObservedGeneration != rm.Generation {
			return fmt.Errorf("ready = %+v", ready)
		}
		if rm.Status.MatchedObjects != 1 || rm.Status.UnmetObjects != 1 {
			return fmt.Errorf("matched/unmet = %d/%d, want 1/1", rm.Status.MatchedObjects, rm.Status.UnmetObjects)
		}
		if rm.Status.TargetKinds != "Cluster" {
			return fmt.Errorf("targetKinds = %q, want Cluster", rm.Status.TargetKinds)
		}
		return nil
	})
}

// TestStatusCountsSpaced checks that while objects keep changing a model's
// counts, its status is written at most once per statusCountsInterval, and
// the last counts still arrive.
func TestStatusCountsSpaced(t *testing.T) {
	startManager(t)
	ns := newNamespace(t, map[string]string{"test": "spaced"})
	applyModel(t, dbModel("spaced-db", "spaced"))
	get := func() *v1alpha1.ResponsibilityModel {
		rm := &v1alpha1.ResponsibilityModel{}
		if err := k8s.Get(context.Background(), client.ObjectKey{Name: "spaced-db"}, rm); err != nil {
			t.Fatalf("get model: %v", err)
		}
		return rm
	}
	eventually(t, 10*time.Second, func() error { return isReady(get()) })

	// A new object every 250 ms for 12 s, while the model is read every
	// 50 ms: every counts-only status write seen is timed.
	const objects = 48
	var (
		last    = get().Status
		lastAt  time.Time
		writes  []time.Duration
		created = 0
	)
	next := time.Now()
	for created < objects {
		if time.Now().After(next) {
			createObject(t, cnpg, "Cluster", ns, fmt.Sprintf("db-%02d", created), nil, tlsSpec())
			created++
			next = next.Add(250 * time.Millisecond)
		}
		st := get().Status
		if !equality.Semantic.DeepEqual(last, st) {
			if !countsOnly(&last, &st) {
				t.Fatalf("status changed more than its counts: %+v -> %+v", last, st)
			}
			now := time.Now()
			if !lastAt.IsZero() {
				writes = append(writes, now.Sub(lastAt))
			}
			last, lastAt = st, now
		}
		time.Sleep(50 * time.Millisecond)
	}
	if len(writes) == 0 {
		t.Fatal("no two counts-only status writes seen while the counts changed for 12 s")
	}
	for _, d := range writes {
		// The interval runs from just before a write is sent; the poll sees
		// each write up to 50 ms late, and a busy API server stores it late.
		// Without the hold the writes come about a second apart.
		if d < statusCountsInterval-time.Second {
			t.Errorf("counts-only status writes %s apart, want at least %s (all: %v)", d, statusCountsInterval, writes)
		}
	}
	eventually(t, 2*statusCountsInterval, func() error {
		if rm := get(); rm.Status.MatchedObjects != objects {
			return fmt.Errorf("matchedObjects = %d, want %d", rm.Status.MatchedObjects, objects)
		}
		return nil
	})
}

func TestModelEditUpdatesAndUnmatchRemoves(t *testing.T) {
	startManager(t)
	ns := newNamespace(t, map[string]string{"test": "edit"})
	rm := dbModel("edit-db", "edit")
	rm.Spec.Targets[0].Selector = &metav1.LabelSelector{MatchLabels: map[string]string{"tier": "prod"}}
	applyModel(t, rm)
	db := createObject(t, cnpg, "Cluster", ns, "orders", map[string]string{"tier": "prod"}, tlsSpec())
	waitAnnotation(t, db, v1alpha1.AnnotationService, "Managed Databases", true)

	// Editing the model rewrites the annotations.
	rm.Spec.Service = "Managed PostgreSQL"
	applyModel(t, rm)
	waitAnnotation(t, db, v1alpha1.AnnotationService, "Managed PostgreSQL", true)

	// A tenant's own annotations and labels survive everything below.
	cur := getObject(t, db)
	ann := cur.GetAnnotations()
	ann["team"] = "payments"
	cur.SetAnnotations(ann)
	if err := k8s.Update(context.Background(), cur); err != nil {
		t.Fatalf("tenant update: %v", err)
	}

	// The object stops matching: every owned key goes, the tenant's stay.
	cur = getObject(t, db)
	labels := cur.GetLabels()
	labels["tier"] = "dev"
	cur.SetLabels(labels)
	if err := k8s.Update(context.Background(), cur); err != nil {
		t.Fatalf("relabel: %v", err)
	}
	eventually(t, 20*time.Second, func() error {
		got := getObject(t, db)
		if keys := ownedKeys(got); len(keys) > 0 {
			return fmt.Errorf("owned keys left after unmatch: %v", keys)
		}
		if got.GetAnnotations()["team"] != "payments" || got.GetLabels()["tier"] != "dev" {
			return fmt.Errorf("tenant metadata changed: %v %v", got.GetAnnotations(), got.GetLabels())
		}
		return nil
	})
}

func TestModelDeleteRemovesAnnotations(t *testing.T) {
	startManager(t)
	ns := newNamespace(t, map[string]string{"test": "delete"})
	applyModel(t, dbModel("delete-db", "delete"))
	db := createObject(t, cnpg, "Cluster", ns, "orders", nil, tlsSpec())
	waitAnnotation(t, db, v1alpha1.AnnotationModels, "delete-db", true)

	rm := &v1alpha1.ResponsibilityModel{}
	if err := k8s.Get(context.Background(), client.ObjectKey{Name: "delete-db"}, rm); err != nil {
		t.Fatal(err)
	}
	if len(rm.Finalizers) != 1 || rm.Finalizers[0] != v1alpha1.Finalizer {
		t.Fatalf("finalizers = %v, want [%s]", rm.Finalizers, v1alpha1.Finalizer)
	}
	deleteModel(t, "delete-db")
	if keys := ownedKeys(getObject(t, db)); len(keys) > 0 {
		t.Fatalf("model is gone but owned keys are left: %v", keys)
	}
}

func TestTwoModelsOnOneObject(t *testing.T) {
	startManager(t)
	ns := newNamespace(t, map[string]string{"test": "two"})
	applyModel(t, dbModel("two-b-db", "two"))
	cross := dbModel("two-a-cross", "two")
	cross.Spec.Service = "Cross-cutting"
	cross.Spec.Areas = []v1alpha1.Area{{Name: "Identity", Provider: "Account security", Customer: "Strong passwords"}}
	applyModel(t, cross)

	db := createObject(t, cnpg, "Cluster", ns, "orders", nil, tlsSpec())
	waitAnnotation(t, db, v1alpha1.AnnotationModels, "two-a-cross,two-b-db", true)
	ann := getObject(t, db).GetAnnotations()
	if ann[v1alpha1.AnnotationService] != "Cross-cutting; Managed Databases" {
		t.Errorf("service = %q", ann[v1alpha1.AnnotationService])
	}

	// Deleting one model leaves the other's annotations.
	deleteModel(t, "two-a-cross")
	waitAnnotation(t, db, v1alpha1.AnnotationModels, "two-b-db", true)
}

func TestNoWriteWhenNothingChanges(t *testing.T) {
	stop := startManager(t)
	ns := newNamespace(t, map[string]string{"test": "nowrite"})
	rm := dbModel("nowrite-db", "nowrite")
	applyModel(t, rm)
	db := createObject(t, cnpg, "Cluster", ns, "orders", nil, tlsSpec())
	waitAnnotation(t, db, v1alpha1.AnnotationModels, "nowrite-db", true)
	eventually(t, 10*time.Second, func() error { // the status label comes in the same write
		if getObject(t, db).GetLabels()[v1alpha1.LabelStatus] == "" {
			return errNotYet
		}
		return nil
	})
	rv := getObject(t, db).GetResourceVersion()
	unchanged := func() error {
		if got := getObject(t, db).GetResourceVersion(); got != rv {
			return fmt.Errorf("object was written again: resourceVersion %s -> %s", rv, got)
		}
		return nil
	}

	// A model edit that changes nothing on the object (description is not
	// annotated) re-evaluates it and writes nothing.
	rm.Spec.Description = "edited"
	applyModel(t, rm)
	consistently(t, 2*time.Second, unchanged)

	// A restart re-evaluates every object and writes nothing.
	stop()
	startManager(t)
	consistently(t, 3*time.Second, unchanged)
}

func TestKindInstalledAfterStart(t *testing.T) {
	startManager(t)
	ns := newNamespace(t, map[string]string{"test": "late"})
	rm := &v1alpha1.ResponsibilityModel{
		ObjectMeta: metav1.ObjectMeta{Name: "late-widgets"},
		Spec: v1alpha1.ResponsibilityModelSpec{
			Service: "Widgets", Provider: "Example",
			Targets: []v1alpha1.Target{{APIVersion: "late.example.com/v1", Kind: "Widget"}},
			Areas:   []v1alpha1.Area{{Name: "Operations", Provider: "Runs widgets", Customer: "Configures widgets"}},
		},
	}
	applyModel(t, rm)
	eventually(t, 10*time.Second, func() error {
		cur := &v1alpha1.ResponsibilityModel{}
		if err := k8s.Get(context.Background(), client.ObjectKey{Name: rm.Name}, cur); err != nil {
			return err
		}
		c := meta.FindStatusCondition(cur.Status.Conditions, v1alpha1.ConditionTargetsResolved)
		if c == nil || c.Status != metav1.ConditionFalse || c.Reason != v1alpha1.ReasonTargetNotInstalled {
			return fmt.Errorf("TargetsResolved = %+v, want False/TargetNotInstalled", c)
		}
		if want := "Widget (late.example.com/v1)"; !strings.Contains(c.Message, want) {
			return fmt.Errorf("message %q does not name %q", c.Message, want)
		}
		return nil
	})

	crd := widgetCRD()
	if err := k8s.Create(context.Background(), crd); err != nil {
		t.Fatalf("create CRD: %v", err)
	}
	t.Cleanup(func() { _ = k8s.Delete(context.Background(), crd) })
	var w = widgetObject(ns)
	eventually(t, 20*time.Second, func() error { // the CRD takes a moment to be served
		err := k8s.Create(context.Background(), w)
		if err != nil && !apierrors.IsAlreadyExists(err) {
			return err
		}
		return nil
	})
	start := time.Now()
	waitAnnotation(t, w, v1alpha1.AnnotationModels, "late-widgets", true)
	t.Logf("object of a kind installed after start annotated %s after its creation", time.Since(start).Round(time.Millisecond))
	eventually(t, 10*time.Second, func() error {
		cur := &v1alpha1.ResponsibilityModel{}
		if err := k8s.Get(context.Background(), client.ObjectKey{Name: rm.Name}, cur); err != nil {
			return err
		}
		if !meta.IsStatusConditionTrue(cur.Status.Conditions, v1alpha1.ConditionTargetsResolved) {
			return fmt.Errorf("TargetsResolved not True: %+v", cur.Status.Conditions)
		}
		return nil
	})
}

func widgetCRD() *apiextensionsv1.CustomResourceDefinition {
	return &apiextensionsv1.CustomResourceDefinition{
		ObjectMeta: metav1.ObjectMeta{Name: "widgets.late.example.com"},
		Spec: apiextensionsv1.CustomResourceDefinitionSpec{
			Group: "late.example.com",
			Names: apiextensionsv1.CustomResourceDefinitionNames{Plural: "widgets", Singular: "widget", Kind: "Widget", ListKind: "WidgetList"},
			Scope: apiextensionsv1.NamespaceScoped,
			Versions: []apiextensionsv1.CustomResourceDefinitionVersion{{
				Name: "v1", Served: true, Storage: true,
				Schema: &apiextensionsv1.CustomResourceValidation{OpenAPIV3Schema: &apiextensionsv1.JSONSchemaProps{
					Type: "object", XPreserveUnknownFields: ptr.To(true),
				}},
			}},
		},
	}
}

func widgetObject(ns string) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "late.example.com/v1", "kind": "Widget", "spec": map[string]any{"size": int64(1)}}}
	u.SetNamespace(ns)
	u.SetName("gizmo")
	return u
}

package e2e

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/responsibility-operator/responsibility-operator/internal/devcluster"
	"github.com/responsibility-operator/responsibility-operator/internal/modeltest"
)

// TestUpstreamCorpusOnCRDs runs the upstream corpus (test/upstream) and the
// catalog's own tests on a real API server with the full upstream CRDs
// (test/crds): each test's objects are created, so a manifest the upstream
// CRD refuses fails here, and the models are evaluated on the objects as the
// API server stored them — defaulted and pruned by the CRD schemas, which is
// what the operator sees.
func TestUpstreamCorpusOnCRDs(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a control plane")
	}
	root, _, cfg := startControlPlane(t)
	c, err := client.New(cfg, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	store := &apiStore{ctx: context.Background(), c: c, mapper: c.RESTMapper()}

	tests, err := modeltest.Load([]string{filepath.Join(root, "test", "upstream"), filepath.Join(root, "config", "catalog", "tests")})
	if err != nil {
		t.Fatal(err)
	}
	r := modeltest.Run(tests, modeltest.Options{Namespaced: store.namespaced, Store: store.store})
	store.cleanup()
	for _, p := range r.Problems(true) {
		t.Error(p)
	}
	t.Logf("%d tests, %d results on objects stored by the API server", r.Tests, len(r.Verdicts))

	// devcluster.Create writes a stated status whether or not the kind has a
	// status subresource (a Velero Schedule has none).
	for _, o := range []struct {
		gvk  schema.GroupVersionKind
		spec map[string]any
	}{
		{schema.GroupVersionKind{Group: "velero.io", Version: "v1", Kind: "Schedule"}, map[string]any{"schedule": "0 3 * * *", "template": map[string]any{}}},
		{schema.GroupVersionKind{Group: "snapshot.storage.k8s.io", Version: "v1", Kind: "VolumeSnapshot"}, map[string]any{"source": map[string]any{"persistentVolumeClaimName": "data"}}},
	} {
		gvk := o.gvk
		obj := &unstructured.Unstructured{Object: map[string]any{"spec": o.spec, "status": map[string]any{"phase": "Enabled", "readyToUse": true}}}
		obj.SetGroupVersionKind(gvk)
		obj.SetNamespace("status-written")
		obj.SetName("with-status")
		if err := store.ensureNamespace("status-written"); err != nil {
			t.Fatal(err)
		}
		if err := devcluster.Create(store.ctx, c, obj); err != nil {
			t.Fatalf("create %s with a status: %v", gvk.Kind, err)
		}
		got := &unstructured.Unstructured{}
		got.SetGroupVersionKind(gvk)
		if err := c.Get(store.ctx, client.ObjectKeyFromObject(obj), got); err != nil {
			t.Fatal(err)
		}
		if got.Object["status"] == nil {
			t.Errorf("%s: the stated status was not written", gvk.Kind)
		}
	}
}

// apiStore creates a test's objects in the API server and reads them back.
type apiStore struct {
	ctx     context.Context
	c       client.Client
	mapper  meta.RESTMapper
	created []*unstructured.Unstructured
}

func (s *apiStore) namespaced(gvk schema.GroupVersionKind) bool {
	m, err := s.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	// A kind the server does not serve fails in store, with its cause.
	return err != nil || m.Scope.Name() == meta.RESTScopeNameNamespace
}

// store removes the previous test's objects, then creates these (and their
// Namespaces), writes their status as their controller would, and returns them as read back, without managedFields as the operator's
// cache keeps them.
func (s *apiStore) store(t *modeltest.Test, objects []*unstructured.Unstructured) ([]*unstructured.Unstructured, error) {
	s.cleanup()
	var out []*unstructured.Unstructured
	for _, o := range objects {
		gvk := o.GroupVersionKind()
		if _, err := s.mapper.RESTMapping(gvk.GroupKind(), gvk.Version); err != nil {
			return nil, fmt.Errorf("%s %s: the API server does not serve %s (vendor its CRD into test/crds): %w", gvk.Kind, o.GetName(), gvk, err)
		}
		if ns := o.GetNamespace(); ns != "" {
			if err := s.ensureNamespace(ns); err != nil {
				return nil, err
			}
		}
		obj := o.DeepCopy()
		if gvk.Group == "" && gvk.Kind == "Namespace" {
			if err := s.applyNamespace(obj); err != nil {
				return nil, err
			}
		} else {
			if err := devcluster.Create(s.ctx, s.c, obj); err != nil {
				return nil, fmt.Errorf("create %s %s/%s: the upstream CRD refuses it: %w", gvk.Kind, o.GetNamespace(), o.GetName(), err)
			}
			s.created = append(s.created, obj)
		}
		stored := &unstructured.Unstructured{}
		stored.SetGroupVersionKind(gvk)
		if err := s.c.Get(s.ctx, client.ObjectKeyFromObject(o), stored); err != nil {
			return nil, fmt.Errorf("read back %s %s/%s: %w", gvk.Kind, o.GetNamespace(), o.GetName(), err)
		}
		stored.SetManagedFields(nil)
		out = append(out, stored)
	}
	return out, nil
}

func (s *apiStore) ensureNamespace(name string) error {
	ns := &unstructured.Unstructured{}
	ns.SetAPIVersion("v1")
	ns.SetKind("Namespace")
	ns.SetName(name)
	if err := s.c.Create(s.ctx, ns); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create namespace %s: %w", name, err)
	}
	return nil
}

// applyNamespace gives a Namespace the labels the test's resource has. A
// namespace is never deleted (the test server runs no namespace
// controller), so a later test finds it with the labels of its own.
func (s *apiStore) applyNamespace(ns *unstructured.Unstructured) error {
	if err := s.ensureNamespace(ns.GetName()); err != nil {
		return err
	}
	current := &unstructured.Unstructured{}
	current.SetGroupVersionKind(ns.GroupVersionKind())
	if err := s.c.Get(s.ctx, client.ObjectKey{Name: ns.GetName()}, current); err != nil {
		return fmt.Errorf("read namespace %s: %w", ns.GetName(), err)
	}
	current.SetLabels(ns.GetLabels())
	current.SetAnnotations(ns.GetAnnotations())
	if err := s.c.Update(s.ctx, current); err != nil {
		return fmt.Errorf("label namespace %s: %w", ns.GetName(), err)
	}
	return nil
}

// cleanup deletes the objects of the last test. Finalizers that the API
// server adds and no controller here would remove (a PersistentVolumeClaim's
// kubernetes.io/pvc-protection) are dropped first, so the name is free for
// the next test.
func (s *apiStore) cleanup() {
	for _, o := range s.created {
		_ = s.c.Patch(s.ctx, o, client.RawPatch(types.MergePatchType, []byte(`{"metadata":{"finalizers":null}}`)))
		// Background: with no garbage collector here, a foreground or
		// orphan deletion leaves a Job half-deleted under its finalizer.
		_ = s.c.Delete(s.ctx, o, client.PropagationPolicy(metav1.DeletePropagationBackground))
	}
	s.created = nil
}

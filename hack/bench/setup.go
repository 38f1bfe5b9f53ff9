package main

import (
	"context"
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/responsibility-operator/responsibility-operator/hack/bench/benchkit"
	"github.com/responsibility-operator/responsibility-operator/internal/devcluster"
)

// setUp creates the namespaces, the workloads and their related objects,
// warms the server (benchkit.WarmServer) and starts watching the workloads.
func (b *bench) setUp(ctx context.Context) error {
	var err error
	if b.workloads, err = benchkit.Generate(b.o.root, b.o.n, b.o.namespaces); err != nil {
		return err
	}
	if b.models, err = benchkit.BenchModels(b.o.root); err != nil {
		return err
	}
	namespaces := map[string]map[string]any{}
	for i := range b.o.namespaces {
		ns := &unstructured.Unstructured{}
		ns.SetAPIVersion("v1")
		ns.SetKind("Namespace")
		ns.SetName(benchkit.NamespaceName(i))
		if err := b.c.Create(ctx, ns); err != nil {
			return fmt.Errorf("create namespace: %w", err)
		}
		namespaces[ns.GetName()] = ns.Object
	}
	var objs []*unstructured.Unstructured
	for _, w := range b.workloads {
		if w.Related != nil {
			objs = append(objs, w.Related)
		}
		objs = append(objs, w.Obj)
	}
	step("creating %d workloads and %d related objects in %d namespaces", len(b.workloads), len(objs)-len(b.workloads), b.o.namespaces)
	start := time.Now()
	if err := benchkit.Parallel(ctx, b.o.concurrency, len(objs), func(i int) error {
		if err := devcluster.Create(ctx, b.c, objs[i]); err != nil {
			return fmt.Errorf("create %s %s/%s: %w", objs[i].GetKind(), objs[i].GetNamespace(), objs[i].GetName(), err)
		}
		return nil
	}); err != nil {
		return err
	}
	step("created in %.1fs (%.0f/s)", time.Since(start).Seconds(), float64(len(objs))/time.Since(start).Seconds())
	if b.oracle, err = benchkit.NewOracle(b.models, namespaces, b.workloads); err != nil {
		return err
	}
	b.gvrs = map[schema.GroupVersionResource]schema.GroupVersionKind{}
	for i := range benchkit.Kinds {
		gvk := b.workloads[i].Obj.GroupVersionKind()
		m, err := b.c.RESTMapper().RESTMapping(gvk.GroupKind(), gvk.Version)
		if err != nil {
			return fmt.Errorf("map %s: %w", gvk, err)
		}
		b.gvrs[m.Resource] = gvk
	}
	if err := benchkit.WarmServer(ctx, b.disc, b.dyn); err != nil {
		return err
	}
	return b.tracker.Start(ctx, b.dyn, b.gvrs)
}

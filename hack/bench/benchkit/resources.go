package benchkit

import (
	"context"
	"fmt"
	"slices"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
)

// ListableResources are the resources the server serves, in their preferred
// version, that can be listed. events.k8s.io's Events are left out: they are
// the core Events in another version.
func ListableResources(disc discovery.DiscoveryInterface) ([]schema.GroupVersionResource, error) {
	lists, err := disc.ServerPreferredResources()
	if err != nil {
		return nil, fmt.Errorf("discover resources: %w", err)
	}
	var out []schema.GroupVersionResource
	for _, l := range lists {
		gv, err := schema.ParseGroupVersion(l.GroupVersion)
		if err != nil {
			return nil, fmt.Errorf("parse %s: %w", l.GroupVersion, err)
		}
		for _, r := range l.APIResources {
			if strings.Contains(r.Name, "/") || !slices.Contains(r.Verbs, "list") || (gv.Group == "events.k8s.io" && r.Name == "events") {
				continue
			}
			out = append(out, gv.WithResource(r.Name))
		}
	}
	return out, nil
}

// WarmServer lists one object of every listable resource. A fresh API
// server sets up a custom resource's storage and watch cache on the first
// request for it, and the first lists and watches of it then wait about a
// second for that cache (measured: a controller's informers of resources
// nobody had read took 1.1 s per round of them on a fresh server, 0.1 s on
// the same server once read). A server that has run for a while has done
// this for every resource; the plain client, which only writes resources
// the benchmark created, never pays it. So a benchmark warms the server
// before it times anything.
func WarmServer(ctx context.Context, disc discovery.DiscoveryInterface, dyn dynamic.Interface) error {
	gvrs, err := ListableResources(disc)
	if err != nil {
		return err
	}
	return Parallel(ctx, 8, len(gvrs), func(i int) error {
		if _, err := dyn.Resource(gvrs[i]).List(ctx, metav1.ListOptions{Limit: 1}); err != nil {
			return fmt.Errorf("list %s: %w", gvrs[i], err)
		}
		return nil
	})
}

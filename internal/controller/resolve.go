package controller

import (
	"context"
	"fmt"
	"strings"

	authorizationv1 "k8s.io/api/authorization/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/responsibility-operator/responsibility-operator/api/v1alpha1"
)

// kindNeed is a kind a model needs and the verbs the operator needs on it.
type kindNeed struct {
	gvk   schema.GroupVersionKind
	verbs []string
}

// resolution is the outcome of resolving every kind a model needs.
type resolution struct {
	// resolved are the kinds that are served and permitted.
	resolved []schema.GroupVersionKind
	// reason and message explain the first class of problem, empty when all resolved.
	reason  string
	message string
}

func (r resolution) ok() bool { return r.reason == "" }

var (
	targetVerbs  = []string{"get", "list", "watch", "patch"}
	relatedVerbs = []string{"get", "list", "watch"}
)

// kindsOf lists the kinds a model spec needs, targets first, without duplicates.
func kindsOf(spec *v1alpha1.ResponsibilityModelSpec) []kindNeed {
	var out []kindNeed
	seen := map[schema.GroupVersionKind]int{}
	add := func(apiVersion, kind string, verbs []string) {
		gv, err := schema.ParseGroupVersion(apiVersion)
		if err != nil {
			return // reported by compilation
		}
		gvk := gv.WithKind(kind)
		if i, ok := seen[gvk]; ok {
			if len(verbs) > len(out[i].verbs) {
				out[i].verbs = verbs
			}
			return
		}
		seen[gvk] = len(out)
		out = append(out, kindNeed{gvk: gvk, verbs: verbs})
	}
	for _, t := range spec.Targets {
		add(t.APIVersion, t.Kind, targetVerbs)
	}
	for _, a := range spec.Areas {
		for _, d := range a.Duties {
			for _, rel := range d.Related {
				add(rel.APIVersion, rel.Kind, relatedVerbs)
			}
		}
	}
	return out
}

// Resolver checks that kinds are served (through the RESTMapper, which
// re-reads discovery on a miss, so a CRD installed later is found) and that
// the operator may use them (through SelfSubjectAccessReviews).
type Resolver struct {
	Mapper meta.RESTMapper
	Client client.Client
}

// Resolve resolves every kind a model needs.
func (r *Resolver) Resolve(ctx context.Context, needs []kindNeed) (resolution, error) {
	var res resolution
	var missing, forbidden []string
	for _, n := range needs {
		mapping, err := r.Mapper.RESTMapping(n.gvk.GroupKind(), n.gvk.Version)
		if err != nil {
			if meta.IsNoMatchError(err) {
				missing = append(missing, fmt.Sprintf("%s (%s)", n.gvk.Kind, n.gvk.GroupVersion()))
				continue
			}
			return res, fmt.Errorf("resolve %s: %w", n.gvk, err)
		}
		denied, err := r.denied(ctx, mapping, n.verbs)
		if err != nil {
			return res, err
		}
		if len(denied) > 0 {
			forbidden = append(forbidden, fmt.Sprintf("%s on %s", strings.Join(denied, ","), resourceName(mapping.Resource)))
			continue
		}
		res.resolved = append(res.resolved, n.gvk)
	}
	switch {
	case len(missing) > 0:
		res.reason = v1alpha1.ReasonTargetNotInstalled
		res.message = fmt.Sprintf("Not served by the API server: %s. Install the CRD; the operator picks it up without a restart.", strings.Join(missing, ", "))
	case len(forbidden) > 0:
		res.reason = v1alpha1.ReasonForbidden
		res.message = fmt.Sprintf("The operator's service account may not %s. Extend the ClusterRole responsibility-operator-manager-role (see docs/operations.md).", strings.Join(forbidden, "; "))
	}
	return res, nil
}

func (r *Resolver) denied(ctx context.Context, mapping *meta.RESTMapping, verbs []string) ([]string, error) {
	var denied []string
	for _, verb := range verbs {
		review := &authorizationv1.SelfSubjectAccessReview{Spec: authorizationv1.SelfSubjectAccessReviewSpec{
			ResourceAttributes: &authorizationv1.ResourceAttributes{
				Group: mapping.Resource.Group, Version: mapping.Resource.Version,
				Resource: mapping.Resource.Resource, Verb: verb,
			},
		}}
		if err := r.Client.Create(ctx, review); err != nil {
			return nil, fmt.Errorf("review %s %s: %w", verb, mapping.Resource, err)
		}
		if !review.Status.Allowed {
			denied = append(denied, verb)
		}
	}
	return denied, nil
}

func resourceName(gvr schema.GroupVersionResource) string {
	if gvr.Group == "" {
		return gvr.Resource
	}
	return gvr.Resource + "." + gvr.Group
}

package controller

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
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

// Resolver checks that kinds are served, through discovery, and that the
// operator may use them, through SelfSubjectAccessReviews.
//
// It asks discovery itself rather than the manager's RESTMapper: that
// mapper re-reads discovery on a miss, but keeps a kind it once found for
// good, so a kind whose CRD was deleted would read as served. Answers are
// kept for a moment (servedTTL; reviewTTL for a grant), so that the models
// reconciled after one CRD change share them.
type Resolver struct {
	// Discovery is uncached.
	Discovery discovery.DiscoveryInterface
	Client    client.Client

	mu      sync.Mutex
	served  map[schema.GroupVersion]servedAnswer
	reviews map[reviewKey]reviewAnswer
}

// How long discovery's and the access reviews' answers are reused.
const (
	servedTTL = time.Second
	reviewTTL = 10 * time.Second
)

type servedAnswer struct {
	at        time.Time
	resources map[string]schema.GroupVersionResource // by kind
}

type reviewKey struct {
	gvr  schema.GroupVersionResource
	verb string
}

type reviewAnswer struct {
	at      time.Time
	allowed bool
}

// Resolve resolves every kind a model needs. The kinds, and the verbs of
// each, are asked about at once: one after another, a model with a target
// and two related kinds waited for thirteen round trips before it could
// watch anything.
func (r *Resolver) Resolve(ctx context.Context, needs []kindNeed) (resolution, error) {
	type outcome struct {
		gvr    schema.GroupVersionResource
		served bool
		denied []string
		err    error
	}
	outcomes := make([]outcome, len(needs))
	var wg sync.WaitGroup
	for i, n := range needs {
		wg.Go(func() {
			o := &outcomes[i]
			if o.gvr, o.served, o.err = r.resource(n.gvk); o.err != nil || !o.served {
				return
			}
			o.denied, o.err = r.denied(ctx, o.gvr, n.verbs)
		})
	}
	wg.Wait()
	var res resolution
	var missing, forbidden []string
	for i, n := range needs {
		o := outcomes[i]
		switch {
		case o.err != nil:
			return res, o.err
		case !o.served:
			missing = append(missing, fmt.Sprintf("%s (%s)", n.gvk.Kind, n.gvk.GroupVersion()))
		case len(o.denied) > 0:
			forbidden = append(forbidden, fmt.Sprintf("%s on %s", strings.Join(o.denied, ","), resourceName(o.gvr)))
		default:
			res.resolved = append(res.resolved, n.gvk)
		}
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

// resource returns the resource of a kind, and whether the API server
// serves it now.
func (r *Resolver) resource(gvk schema.GroupVersionKind) (schema.GroupVersionResource, bool, error) {
	gv := gvk.GroupVersion()
	r.mu.Lock()
	answer, ok := r.served[gv]
	r.mu.Unlock()
	if !ok || time.Since(answer.at) > servedTTL {
		list, err := r.Discovery.ServerResourcesForGroupVersion(gv.String())
		if err != nil && !apierrors.IsNotFound(err) {
			return schema.GroupVersionResource{}, false, fmt.Errorf("discover %s: %w", gv, err)
		}
		answer = servedAnswer{at: time.Now(), resources: map[string]schema.GroupVersionResource{}}
		if list != nil {
			for _, res := range list.APIResources {
				if !strings.Contains(res.Name, "/") { // not a subresource
					answer.resources[res.Kind] = gv.WithResource(res.Name)
				}
			}
		}
		r.mu.Lock()
		if r.served == nil {
			r.served = map[schema.GroupVersion]servedAnswer{}
		}
		r.served[gv] = answer
		r.mu.Unlock()
	}
	gvr, ok := answer.resources[gvk.Kind]
	return gvr, ok, nil
}

// Served reports whether the API server serves a kind now.
func (r *Resolver) Served(gvk schema.GroupVersionKind) (bool, error) {
	_, ok, err := r.resource(gvk)
	return ok, err
}

// denied returns the verbs of verbs the operator may not use on gvr, in
// their order, asking about them at once.
func (r *Resolver) denied(ctx context.Context, gvr schema.GroupVersionResource, verbs []string) ([]string, error) {
	allowed := make([]bool, len(verbs))
	errs := make([]error, len(verbs))
	var wg sync.WaitGroup
	for i, verb := range verbs {
		wg.Go(func() { allowed[i], errs[i] = r.allowed(ctx, gvr, verb) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	var denied []string
	for i, verb := range verbs {
		if !allowed[i] {
			denied = append(denied, verb)
		}
	}
	return denied, nil
}

// allowed reports whether the operator may use a verb on gvr, from a
// grant seen in the last reviewTTL or a new SelfSubjectAccessReview.
func (r *Resolver) allowed(ctx context.Context, gvr schema.GroupVersionResource, verb string) (bool, error) {
	key := reviewKey{gvr, verb}
	r.mu.Lock()
	answer, ok := r.reviews[key]
	r.mu.Unlock()
	if ok && time.Since(answer.at) <= reviewTTL {
		return answer.allowed, nil
	}
	review := &authorizationv1.SelfSubjectAccessReview{Spec: authorizationv1.SelfSubjectAccessReviewSpec{
		ResourceAttributes: &authorizationv1.ResourceAttributes{
			Group: gvr.Group, Version: gvr.Version, Resource: gvr.Resource, Verb: verb,
		},
	}}
	if err := r.Client.Create(ctx, review); err != nil {
		return false, fmt.Errorf("review %s %s: %w", verb, gvr, err)
	}
	// Only a grant is reused: a role extended after a denial is seen at
	// the next resolution.
	if review.Status.Allowed {
		r.mu.Lock()
		if r.reviews == nil {
			r.reviews = map[reviewKey]reviewAnswer{}
		}
		r.reviews[key] = reviewAnswer{at: time.Now(), allowed: true}
		r.mu.Unlock()
	}
	return review.Status.Allowed, nil
}

func resourceName(gvr schema.GroupVersionResource) string {
	if gvr.Group == "" {
		return gvr.Resource
	}
	return gvr.Resource + "." + gvr.Group
}

package watch

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"
	"sigs.k8s.io/controller-runtime/pkg/log"
)

// NewCache is the manager's cache (ctrl.Options.NewCache): the options of
// CacheOptions, and informers for the kinds the operator watches at run time
// (unstructured objects) that decode the API server's JSON with a
// projectingDecoder. Informers of typed objects (models, namespaces' own
// Go types) are controller-runtime's.
//
// A cache restricted to namespaces or selectors keeps controller-runtime's
// list-watches, which apply them; the operator's manager sets neither.
func NewCache(p *Projections, w WatchOptions) cache.NewCacheFunc {
	return func(cfg *rest.Config, opts cache.Options) (cache.Cache, error) {
		base := CacheOptions(p)
		opts.DefaultTransform = base.DefaultTransform
		opts.ReaderFailOnMissingInformer = base.ReaderFailOnMissingInformer
		if opts.NewInformer != nil || len(opts.DefaultNamespaces) > 0 || len(opts.ByObject) > 0 ||
			opts.DefaultLabelSelector != nil || opts.DefaultFieldSelector != nil {
			return cache.New(cfg, opts)
		}
		if opts.HTTPClient == nil {
			hc, err := rest.HTTPClientFor(cfg)
			if err != nil {
				return nil, fmt.Errorf("build the cache's HTTP client: %w", err)
			}
			opts.HTTPClient = hc
		}
		if opts.Mapper == nil {
			m, err := apiutil.NewDynamicRESTMapper(cfg, opts.HTTPClient)
			if err != nil {
				return nil, fmt.Errorf("build the cache's REST mapper: %w", err)
			}
			opts.Mapper = m
		}
		f := &informerFactory{config: cfg, httpClient: opts.HTTPClient, mapper: opts.Mapper, projections: p,
			watch: w, clients: map[schema.GroupVersion]rest.Interface{}}
		opts.NewInformer = f.newInformer
		return cache.New(cfg, opts)
	}
}

// WatchOptions are how the cache's own list-watches ask the API server.
type WatchOptions struct {
	// Compression lets the API server gzip list and watch responses. Off,
	// they are asked for uncompressed (Accept-Encoding: identity). A watch
	// that starts with its initial events (what client-go's reflectors ask
	// for) is gzipped for its whole life, every event on its own, so with
	// compression the API server pays a gzip stream per write to every
	// watched object; the operator's bandwidth is rarely what is short.
	// Informers that keep controller-runtime's list-watch (typed objects:
	// models, namespaces) are not affected.
	Compression bool
}

// informerFactory makes the cache's informers.
type informerFactory struct {
	config      *rest.Config
	httpClient  *http.Client
	mapper      meta.RESTMapper
	projections *Projections
	watch       WatchOptions

	mu      sync.Mutex
	clients map[schema.GroupVersion]rest.Interface
}

// newInformer is cache.Options.NewInformer. controller-runtime's lw is
// used for typed objects, and for an unstructured one whose list-watch
// cannot be built (logged).
func (f *informerFactory) newInformer(lw toolscache.ListerWatcher, obj runtime.Object, resync time.Duration, indexers toolscache.Indexers) toolscache.SharedIndexInformer {
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return toolscache.NewSharedIndexInformer(lw, obj, resync, indexers)
	}
	gvk := u.GroupVersionKind()
	plw, err := f.listWatch(gvk)
	if err != nil {
		log.Log.WithName("cache").Error(err, "watching with client-go's decoder instead", "gvk", gvk.String())
		return toolscache.NewSharedIndexInformer(lw, obj, resync, indexers)
	}
	return &decodedInformer{toolscache.NewSharedIndexInformer(plw, obj, resync, indexers)}
}

// listWatch lists and watches all objects of a kind, decoded by a
// projectingDecoder: what controller-runtime's list-watch does for an
// unstructured object in a cache without namespaces or selectors.
func (f *informerFactory) listWatch(gvk schema.GroupVersionKind) (*toolscache.ListWatch, error) {
	mapping, err := f.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		return nil, fmt.Errorf("map %s to a resource: %w", gvk, err)
	}
	rc, err := f.client(gvk.GroupVersion())
	if err != nil {
		return nil, err
	}
	resource := mapping.Resource.Resource
	return &toolscache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
			body, err := f.get(rc, resource, &opts).Stream(ctx)
			if err != nil {
				return nil, fmt.Errorf("list %s: %w", mapping.Resource.GroupResource(), err)
			}
			defer func() { _ = body.Close() }()
			list, err := newProjectingDecoder(gvk, f.projections).decodeList(body)
			if err != nil {
				return nil, fmt.Errorf("decode the list of %s: %w", mapping.Resource.GroupResource(), err)
			}
			return list, nil
		},
		WatchFuncWithContext: func(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
			opts.Watch = true
			opts.AllowWatchBookmarks = true
			body, err := f.get(rc, resource, &opts).Stream(ctx)
			if err != nil {
				return nil, fmt.Errorf("watch %s: %w", mapping.Resource.GroupResource(), err)
			}
			return watch.NewStreamWatcher(newWatchDecoder(body, newProjectingDecoder(gvk, f.projections)),
				errors.NewClientErrorReporter(http.StatusInternalServerError, "GET", "ClientWatchDecoding")), nil
		},
	}, nil
}

// get is the request for a list or watch of resource.
func (f *informerFactory) get(rc rest.Interface, resource string, opts *metav1.ListOptions) *rest.Request {
	req := rc.Get().Resource(resource).VersionedParams(opts, metav1.ParameterCodec)
	if !f.watch.Compression {
		// Set here, the header also stops Go's transport from asking for gzip.
		req = req.SetHeader("Accept-Encoding", "identity")
	}
	return req
}

// client is a REST client of one API group version that asks for JSON.
func (f *informerFactory) client(gv schema.GroupVersion) (rest.Interface, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if c, ok := f.clients[gv]; ok {
		return c, nil
	}
	cfg := rest.CopyConfig(f.config)
	cfg.GroupVersion = &gv
	cfg.APIPath = "/apis"
	if gv.Group == "" {
		cfg.APIPath = "/api"
	}
	cfg.AcceptContentTypes = runtime.ContentTypeJSON
	cfg.ContentType = runtime.ContentTypeJSON
	// Decodes the API server's error responses (Status).
	cfg.NegotiatedSerializer = clientgoscheme.Codecs.WithoutConversion()
	c, err := rest.RESTClientForConfigAndClient(cfg, f.httpClient)
	if err != nil {
		return nil, fmt.Errorf("build a REST client for %s: %w", gv, err)
	}
	f.clients[gv] = c
	return c, nil
}

// decodedInformer is an informer whose list-watch hands over objects as the
// cache keeps them: it ignores the cache's transform, which would only
// project and intern them again.
type decodedInformer struct {
	toolscache.SharedIndexInformer
}

// SetTransform does nothing: see decodedInformer.
func (*decodedInformer) SetTransform(toolscache.TransformFunc) error { return nil }

// Projecting reports whether an informer of a cache made by NewCache lists
// and watches through the projecting decoder.
func Projecting(informer any) bool {
	_, ok := informer.(*decodedInformer)
	return ok
}

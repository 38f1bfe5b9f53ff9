package watch

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"unsafe"

	"github.com/go-json-experiment/json/jsontext"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	sigsyaml "sigs.k8s.io/yaml"

	"github.com/responsibility-operator/responsibility-operator/api/v1alpha1"
	"github.com/responsibility-operator/responsibility-operator/internal/evaluate"
)

var decodeGVK = schema.GroupVersionKind{Group: "postgresql.cnpg.io", Version: "v1", Kind: "Cluster"}

// decodeProjections are the projections the decoder is checked with: none
// (the kind is kept whole), metadata only, and a few rules' worth of fields.
func decodeProjections() map[string]*Projections {
	out := map[string]*Projections{"none": nil, "unset": NewProjections()}
	for name, f := range map[string]*evaluate.Fields{
		"metadata": nil,
		"all":      evaluate.AllFields(),
		"each":     {Each: &evaluate.Fields{}},
		"rules": {Named: map[string]*evaluate.Fields{
			"spec": {Named: map[string]*evaluate.Fields{
				"instances": {},
				"postgresql": {Named: map[string]*evaluate.Fields{
					"parameters": {Named: map[string]*evaluate.Fields{"ssl_min_protocol_version": {}}},
					"pg_hba":     {Each: &evaluate.Fields{}},
				}},
				"containers": {Each: &evaluate.Fields{Named: map[string]*evaluate.Fields{"image": {}, "resources": {}}}},
				"limits":     {All: true},
				"m":          {Each: &evaluate.Fields{}},
				"list":       {},
			}},
			"status": {Named: map[string]*evaluate.Fields{"phase": {}}},
			// Kept anyway: a projection naming them changes nothing.
			"metadata": {Named: map[string]*evaluate.Fields{"name": {}}},
		}},
	} {
		p := NewProjections()
		p.set(decodeGVK, f)
		out[name] = p
	}
	return out
}

// referenceDecode is what the cache held before projectingDecoder: the
// API machinery's decode of the whole object, then TransformForCache's
// interning and decodeGVK's projection (the transform picks the projection
// by the object's own kind, which in a watch stream is the stream's).
func referenceDecode(t testing.TB, data []byte, p *Projections) (map[string]any, error) {
	t.Helper()
	u := &unstructured.Unstructured{}
	if err := u.UnmarshalJSON(data); err != nil {
		return nil, err
	}
	internMetadata(u.Object)
	if p != nil {
		if f, ok := p.fields[decodeGVK]; ok {
			u.Object = f.Project(u.Object)
		}
	}
	return u.Object, nil
}

// decodeSamples are the workload samples as JSON, each with what the API
// server adds (managedFields, kubectl's configuration, the operator's
// annotations) and values a decoder can get wrong.
func decodeSamples(t testing.TB) [][]byte {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join("..", "..", "config", "samples", "workloads", "*.yaml"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no workload samples: %v", err)
	}
	var out [][]byte
	for _, path := range paths {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		for _, doc := range strings.Split(string(data), "\n---") {
			obj := map[string]any{}
			if err := sigsyaml.Unmarshal([]byte(doc), &obj); err != nil {
				t.Fatalf("%s: %v", path, err)
			}
			if len(obj) == 0 {
				continue
			}
			// Every object in a stream is of the decoder's kind.
			obj["apiVersion"], obj["kind"] = decodeGVK.GroupVersion().String(), decodeGVK.Kind
			out = append(out, mustJSON(t, obj))
			md, _ := obj["metadata"].(map[string]any)
			if md == nil {
				md = map[string]any{}
				obj["metadata"] = md
			}
			md["managedFields"] = []any{map[string]any{"manager": "kubectl", "operation": "Apply", "fieldsV1": map[string]any{"f:spec": map[string]any{}}}}
			md["annotations"] = map[string]any{
				lastAppliedAnnotation:         string(mustJSON(t, obj)),
				v1alpha1.AnnotationDuties:     `{"tls-enforced":"met"}`,
				"tenant.example.com/\u00e9té": "x",
			}
			md["namespace"] = "shop"
			obj["spec"] = map[string]any{"instances": 3, "postgresql": map[string]any{"pg_hba": []any{"hostssl all all 0.0.0.0/0 scram-sha-256", 7}, "parameters": map[string]any{"ssl_min_protocol_version": "TLSv1.3", "other": 1.5}},
				"containers": []any{map[string]any{"image": "x:1", "name": "a", "resources": map[string]any{"limits": map[string]any{"cpu": "1"}}}, "not-a-map", nil},
				"limits":     map[string]any{"cpu": "1", "nested": []any{1, 2.5, "3"}}, "m": map[string]any{"a": 1}, "list": []any{map[string]any{"x": 1}},
				"spec\"escaped\\name": true, "unused": map[string]any{"deep": []any{[]any{map[string]any{}}}}}
			obj["status"] = map[string]any{"phase": "Ready", "conditions": []any{}}
			out = append(out, mustJSON(t, obj))
		}
	}
	// Numbers as the API machinery reads them: integers that fit in int64,
	// everything else float64.
	out = append(out, []byte(`{"apiVersion":"postgresql.cnpg.io/v1","kind":"Cluster","metadata":{"name":"n","namespace":"ns","generation":-0},`+
		`"spec":{"instances":9223372036854775807,"limits":{"big":9223372036854775808,"e":1e3,"neg":-12,"frac":0.5,"null":null,"t":true}},`+
		`"status":null,"spec":{"instances":2,"limits":{"dup":1,"dup":2}}}`))
	return out
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestProjectingDecoderMatchesTransform(t *testing.T) {
	samples := decodeSamples(t)
	for name, p := range decodeProjections() {
		t.Run(name, func(t *testing.T) {
			for i, data := range samples {
				want, err := referenceDecode(t, data, p)
				if err != nil {
					t.Fatalf("sample %d: %v", i, err)
				}
				d := newProjectingDecoder(decodeGVK, p)
				got, err := d.object(newJSONDecoder(data), d.fields())
				if err != nil {
					t.Fatalf("sample %d: %v", i, err)
				}
				if !reflect.DeepEqual(got, want) {
					t.Errorf("sample %d:\n got %v\nwant %v", i, got, want)
				}
			}
		})
	}
}

func newJSONDecoder(data []byte) *jsontext.Decoder {
	return jsontext.NewDecoder(bytes.NewReader(data), jsonOptions...)
}

// TestProjectingDecoderShares checks what the decoder shares between
// objects: the names of members and the operator's annotation values.
func TestProjectingDecoderShares(t *testing.T) {
	data := decodeSamples(t)[1]
	d := newProjectingDecoder(decodeGVK, nil)
	a, b := decodeTwice(t, d, data)
	ua, ub := unstructured.Unstructured{Object: a}, unstructured.Unstructured{Object: b}
	if sa, sb := ua.GetAnnotations()[v1alpha1.AnnotationDuties], ub.GetAnnotations()[v1alpha1.AnnotationDuties]; sa == "" || !sameString(sa, sb) {
		t.Errorf("the duties annotation is decoded twice: %q, %q", sa, sb)
	}
	if !sameString(ua.GetNamespace(), ub.GetNamespace()) {
		t.Error("the namespace is decoded twice")
	}
	for k := range a["spec"].(map[string]any) {
		for k2 := range b["spec"].(map[string]any) {
			if k == k2 && !sameString(k, k2) {
				t.Errorf("spec member %q is decoded twice", k)
			}
		}
	}
	if _, ok := a["metadata"].(map[string]any)["managedFields"]; ok {
		t.Error("managedFields kept")
	}
}

// decodeTwice decodes data with d twice.
func decodeTwice(t *testing.T, d *projectingDecoder, data []byte) (a, b map[string]any) {
	t.Helper()
	var err error
	for _, out := range []*map[string]any{&a, &b} {
		if *out, err = d.object(newJSONDecoder(data), d.fields()); err != nil {
			t.Fatal(err)
		}
	}
	return a, b
}

// TestProjectingDecoderSharesMaps checks that maps and lists below an
// object's top level and its metadata map are one value when equal
// (sharedValues), and that those two are each object's own.
func TestProjectingDecoderSharesMaps(t *testing.T) {
	data := decodeSamples(t)[1]
	d := newProjectingDecoder(decodeGVK, nil)
	d.shared = newSharedValues()
	a, b := decodeTwice(t, d, data)
	if !sameMap(a["spec"], b["spec"]) {
		t.Error("equal specs are two maps")
	}
	if !sameMap(a["metadata"].(map[string]any)["annotations"], b["metadata"].(map[string]any)["annotations"]) {
		t.Error("equal annotations are two maps")
	}
	if sameMap(a, b) || sameMap(a["metadata"], b["metadata"]) {
		t.Error("an object's top level or metadata is shared")
	}
	// An object that differs in one field shares what does not hold it.
	var changed map[string]any
	if err := json.Unmarshal(data, &changed); err != nil {
		t.Fatal(err)
	}
	spec := changed["spec"].(map[string]any)
	var field string
	for k, v := range spec {
		if m, ok := v.(map[string]any); ok && field == "" {
			field, m["added"] = k, "x"
		}
	}
	if field == "" {
		t.Fatal("the sample's spec has no map member")
	}
	c, err := d.object(newJSONDecoder(mustJSON(t, changed)), d.fields())
	if err != nil {
		t.Fatal(err)
	}
	as, cs := a["spec"].(map[string]any), c["spec"].(map[string]any)
	if sameMap(as, cs) || sameMap(as[field], cs[field]) {
		t.Errorf("a spec that differs in spec.%s is shared with one that does not", field)
	}
	if cs[field].(map[string]any)["added"] != "x" {
		t.Errorf("changed spec.%s is %v", field, cs[field])
	}
	for k, v := range as {
		if m, ok := v.(map[string]any); ok && k != field && !sameMap(m, cs[k]) {
			t.Errorf("spec.%s is equal in both objects but two maps", k)
		}
	}
}

// sameMap is whether a and b are one map in memory.
func sameMap(a, b any) bool {
	ma, ok := a.(map[string]any)
	mb, ok2 := b.(map[string]any)
	return ok && ok2 && reflect.ValueOf(ma).UnsafePointer() == reflect.ValueOf(mb).UnsafePointer()
}

func TestProjectingDecoderRefusesBadJSON(t *testing.T) {
	for _, in := range []string{``, `[]`, `"x"`, `{`, `{"kind":}`, `{"metadata":{"name":"a",}}`, `{"spec":[1,2}`, `{1:2}`, `{"a":01}`, `{"a":1e999}`} {
		d := newProjectingDecoder(decodeGVK, nil)
		if _, err := d.object(newJSONDecoder([]byte(in)), d.fields()); err == nil {
			t.Errorf("%q decoded without an error", in)
		}
	}
}

func TestWatchDecoder(t *testing.T) {
	p := decodeProjections()["rules"]
	obj := decodeSamples(t)[1]
	want, err := referenceDecode(t, obj, p)
	if err != nil {
		t.Fatal(err)
	}
	bookmark := `{"apiVersion":"postgresql.cnpg.io/v1","kind":"Cluster","metadata":{"resourceVersion":"12","annotations":{"k8s.io/initial-events-end":"true"}}}`
	status := `{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"too old resource version","reason":"Expired","code":410}`
	stream := `{"type":"ADDED","object":` + string(obj) + "}\n" +
		`{"type":"MODIFIED","object":` + string(obj) + `,"extra":[1]}` + "\n" +
		`{"object":` + string(obj) + `,"type":"DELETED"}` + "\n" +
		`{"type":"BOOKMARK","object":` + bookmark + "}\n" +
		`{"type":"ERROR","object":` + status + "}\n"
	w := newWatchDecoder(io.NopCloser(strings.NewReader(stream)), newProjectingDecoder(decodeGVK, p))
	for _, typ := range []watch.EventType{watch.Added, watch.Modified, watch.Deleted} {
		got, o, err := w.Decode()
		if err != nil {
			t.Fatalf("%s: %v", typ, err)
		}
		if got != typ || !reflect.DeepEqual(o.(*unstructured.Unstructured).Object, want) {
			t.Errorf("got %s %v, want %s %v", got, o, typ, want)
		}
	}
	typ, o, err := w.Decode()
	if err != nil || typ != watch.Bookmark || o.(*unstructured.Unstructured).GetAnnotations()["k8s.io/initial-events-end"] != "true" ||
		o.(*unstructured.Unstructured).GetResourceVersion() != "12" {
		t.Errorf("bookmark: %s %v %v", typ, o, err)
	}
	typ, o, err = w.Decode()
	if st, ok := o.(*metav1.Status); err != nil || typ != watch.Error || !ok || st.Code != 410 || st.Reason != metav1.StatusReasonExpired {
		t.Errorf("error event: %s %#v %v", typ, o, err)
	}
	if _, _, err := w.Decode(); err != io.EOF { //nolint:errorlint // watch.StreamWatcher compares with ==
		t.Errorf("after the last event: %v, want EOF", err)
	}
	truncated := newWatchDecoder(io.NopCloser(strings.NewReader(`{"type":"ADDED","object":{"kind":"Clu`)), newProjectingDecoder(decodeGVK, p))
	if _, _, err := truncated.Decode(); err != io.ErrUnexpectedEOF { //nolint:errorlint // watch.StreamWatcher compares with ==
		t.Errorf("a stream ending inside an event: %v, want io.ErrUnexpectedEOF", err)
	}
	for _, bad := range []string{`{"type":"SOMETHING","object":{}}`, `{"type":"ADDED"}`, `{"type":1,"object":{}}`, `{"type":"ADDED","object":[]}`} {
		w := newWatchDecoder(io.NopCloser(strings.NewReader(bad)), newProjectingDecoder(decodeGVK, p))
		if _, _, err := w.Decode(); err == nil {
			t.Errorf("%s decoded without an error", bad)
		}
	}
}

func TestDecodeList(t *testing.T) {
	p := decodeProjections()["rules"]
	samples := decodeSamples(t)
	item := samples[1]
	bare := `{"metadata":{"name":"bare","namespace":"ns"},"spec":{"instances":1}}`
	data := `{"kind":"ClusterList","apiVersion":"postgresql.cnpg.io/v1","metadata":{"resourceVersion":"42","continue":"c"},"items":[` + string(item) + "," + bare + "]}\n"
	list, err := newProjectingDecoder(decodeGVK, p).decodeList(strings.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	if list.GetResourceVersion() != "42" || list.GetContinue() != "c" || len(list.Items) != 2 {
		t.Fatalf("list: %v", list)
	}
	want, err := referenceDecode(t, item, p)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(list.Items[0].Object, want) {
		t.Errorf("item 0:\n got %v\nwant %v", list.Items[0].Object, want)
	}
	if gvk := list.Items[1].GroupVersionKind(); gvk != decodeGVK {
		t.Errorf("an item without a kind got %s, want the list's %s", gvk, decodeGVK)
	}
	empty, err := newProjectingDecoder(decodeGVK, p).decodeList(strings.NewReader(`{"kind":"ClusterList","metadata":{"resourceVersion":"1"},"items":null}`))
	if err != nil || len(empty.Items) != 0 || empty.GetResourceVersion() != "1" {
		t.Errorf("empty list: %v %v", empty, err)
	}
	for _, bad := range []string{data + "{}", `{"items":[{]}`, `{"items":{}}`} {
		if _, err := newProjectingDecoder(decodeGVK, p).decodeList(strings.NewReader(bad)); err == nil {
			t.Errorf("%q decoded without an error", bad)
		}
	}
}

// FuzzProjectingDecoder checks the decoder against the API machinery's
// decoder and TransformForCache: on any object the latter reads, the former
// reads the same; on anything else it returns an error, not a panic.
func FuzzProjectingDecoder(f *testing.F) {
	for _, s := range decodeSamples(f) {
		f.Add(s)
	}
	f.Add([]byte(`{"spec":{"containers":[{"image":"\ud800"}]},"metadata":{"labels":{"a\u0000":"\xff"}}}`))
	projections := decodeProjections()
	f.Fuzz(func(t *testing.T, data []byte) {
		for name, p := range projections {
			want, werr := referenceDecode(t, data, p)
			d := newProjectingDecoder(decodeGVK, p)
			dec := newJSONDecoder(data)
			got, err := d.object(dec, d.fields())
			if werr != nil {
				continue
			}
			if err == nil {
				// The reference reads one value and nothing after it.
				if _, err = dec.ReadToken(); errors.Is(err, io.EOF) {
					err = nil
				}
			}
			if err != nil {
				t.Fatalf("%s: the reference reads %q, the decoder: %v", name, data, err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("%s: %q:\n got %#v\nwant %#v", name, data, got, want)
			}
		}
	})
}

// sameString is whether a and b are one string in memory.
func sameString(a, b string) bool { return unsafe.StringData(a) == unsafe.StringData(b) }

// BenchmarkWatchDecode reads a watch stream of 1,000 workload events over
// HTTP, as the cache's informers do: with client-go's dynamic client and
// the cache's transform, and with projectingDecoder. Each op is one event.
//
//	go test -run x -bench BenchmarkWatchDecode -benchmem ./internal/controller/
func BenchmarkWatchDecode(b *testing.B) {
	const events = 1000
	obj := decodeSamples(b)[1]
	var stream bytes.Buffer
	for range events {
		stream.WriteString(`{"type":"MODIFIED","object":`)
		stream.Write(obj)
		stream.WriteString("}\n")
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(stream.Bytes())
	}))
	defer srv.Close()
	cfg := &rest.Config{Host: srv.URL, QPS: -1}
	gvr := schema.GroupVersionResource{Group: decodeGVK.Group, Version: decodeGVK.Version, Resource: "clusters"}
	p := decodeProjections()["rules"]
	read := func(b *testing.B, w watch.Interface, transform func(any) (any, error)) {
		defer w.Stop()
		n := 0
		for ev := range w.ResultChan() {
			if ev.Type != watch.Modified {
				b.Fatalf("event %d: %s %v", n, ev.Type, ev.Object)
			}
			if _, err := transform(ev.Object); err != nil {
				b.Fatal(err)
			}
			n++
		}
		if n != events {
			b.Fatalf("read %d events, want %d", n, events)
		}
	}
	b.Run("client-go", func(b *testing.B) {
		dc, err := dynamic.NewForConfig(cfg)
		if err != nil {
			b.Fatal(err)
		}
		transform := TransformForCache(p)
		b.ReportAllocs()
		for b.Loop() {
			w, err := dc.Resource(gvr).Watch(b.Context(), metav1.ListOptions{})
			if err != nil {
				b.Fatal(err)
			}
			read(b, w, transform)
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*events), "ns/event")
	})
	b.Run("projecting", func(b *testing.B) {
		mapper := meta.NewDefaultRESTMapper(nil)
		mapper.Add(decodeGVK, meta.RESTScopeNamespace)
		hc, err := rest.HTTPClientFor(cfg)
		if err != nil {
			b.Fatal(err)
		}
		f := &informerFactory{config: cfg, httpClient: hc, mapper: mapper, projections: p, clients: map[schema.GroupVersion]rest.Interface{}}
		lw, err := f.listWatch(decodeGVK)
		if err != nil {
			b.Fatal(err)
		}
		none := func(o any) (any, error) { return o, nil }
		b.ReportAllocs()
		for b.Loop() {
			w, err := lw.WatchFuncWithContext(b.Context(), metav1.ListOptions{})
			if err != nil {
				b.Fatal(err)
			}
			read(b, w, none)
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*events), "ns/event")
	})
}

// TestListWatchRequests checks what the projecting list-watch asks the API
// server: the kind's resource, every list option the reflector sets, and
// the server's errors returned as API errors.
func TestListWatchRequests(t *testing.T) {
	var queries []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		queries = append(queries, r.URL.Path+"?"+r.URL.Query().Encode())
		w.Header().Set("Content-Type", "application/json")
		if r.URL.Query().Get("resourceVersion") == "expired" {
			w.WriteHeader(http.StatusGone)
			_, _ = w.Write([]byte(`{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"Expired","code":410,"message":"too old"}`))
			return
		}
		if r.URL.Query().Get("watch") == "true" {
			_, _ = w.Write([]byte(`{"type":"ADDED","object":{"apiVersion":"postgresql.cnpg.io/v1","kind":"Cluster","metadata":{"name":"a","namespace":"b","resourceVersion":"6"},"spec":{"instances":1,"other":2}}}`))
			return
		}
		_, _ = w.Write([]byte(`{"kind":"ClusterList","apiVersion":"postgresql.cnpg.io/v1","metadata":{"resourceVersion":"5"},"items":[]}`))
	}))
	defer srv.Close()
	p := NewProjections()
	p.set(decodeGVK, &evaluate.Fields{Named: map[string]*evaluate.Fields{"spec": {Named: map[string]*evaluate.Fields{"instances": {}}}}})
	lw, err := testInformerFactory(t, srv.URL, p, WatchOptions{}).listWatch(decodeGVK)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	list, err := lw.ListWithContext(ctx, metav1.ListOptions{Limit: 500, Continue: "c", ResourceVersion: "0"})
	if err != nil {
		t.Fatal(err)
	}
	if rv := list.(*unstructured.UnstructuredList).GetResourceVersion(); rv != "5" {
		t.Errorf("list resourceVersion %q, want 5", rv)
	}
	sendInitial := true
	w, err := lw.WatchWithContext(ctx, metav1.ListOptions{ResourceVersion: "5", ResourceVersionMatch: metav1.ResourceVersionMatchNotOlderThan,
		SendInitialEvents: &sendInitial, TimeoutSeconds: ptrInt64(7)})
	if err != nil {
		t.Fatal(err)
	}
	ev := <-w.ResultChan()
	w.Stop()
	if u, ok := ev.Object.(*unstructured.Unstructured); ev.Type != watch.Added || !ok ||
		!reflect.DeepEqual(u.Object["spec"], map[string]any{"instances": int64(1)}) {
		t.Errorf("watch event %s %v, want the projected Cluster", ev.Type, ev.Object)
	}
	want := []string{
		"/apis/postgresql.cnpg.io/v1/clusters?continue=c&limit=500&resourceVersion=0",
		"/apis/postgresql.cnpg.io/v1/clusters?allowWatchBookmarks=true&resourceVersion=5&resourceVersionMatch=NotOlderThan&sendInitialEvents=true&timeoutSeconds=7&watch=true",
	}
	if !reflect.DeepEqual(queries, want) {
		t.Errorf("requests:\n got %q\nwant %q", queries, want)
	}
	if _, err := lw.ListWithContext(ctx, metav1.ListOptions{ResourceVersion: "expired"}); !apierrors.IsResourceExpired(err) {
		t.Errorf("list of an expired version: %v, want an Expired API error", err)
	}
	if _, err := lw.WatchWithContext(ctx, metav1.ListOptions{ResourceVersion: "expired"}); !apierrors.IsResourceExpired(err) {
		t.Errorf("watch from an expired version: %v, want an Expired API error", err)
	}
}

// TestWatchCompression checks the Accept-Encoding of the cache's watches:
// identity unless compression is asked for, and then a gzipped stream, as
// the API server sends one, still decodes.
func TestWatchCompression(t *testing.T) {
	for _, compression := range []bool{false, true} {
		t.Run(fmt.Sprintf("compression=%v", compression), func(t *testing.T) {
			var accepted string
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				accepted = r.Header.Get("Accept-Encoding")
				w.Header().Set("Content-Type", "application/json")
				event := []byte(`{"type":"ADDED","object":{"apiVersion":"postgresql.cnpg.io/v1","kind":"Cluster","metadata":{"name":"a","namespace":"b","resourceVersion":"6"},"spec":{"instances":1}}}`)
				if !strings.Contains(accepted, "gzip") {
					_, _ = w.Write(event)
					return
				}
				w.Header().Set("Content-Encoding", "gzip")
				gz := gzip.NewWriter(w)
				_, _ = gz.Write(event)
				_ = gz.Close()
			}))
			defer srv.Close()
			lw, err := testInformerFactory(t, srv.URL, NewProjections(), WatchOptions{Compression: compression}).listWatch(decodeGVK)
			if err != nil {
				t.Fatal(err)
			}
			w, err := lw.WatchWithContext(t.Context(), metav1.ListOptions{})
			if err != nil {
				t.Fatal(err)
			}
			ev := <-w.ResultChan()
			w.Stop()
			if u, ok := ev.Object.(*unstructured.Unstructured); ev.Type != watch.Added || !ok || u.GetName() != "a" {
				t.Errorf("watch event %s %v, want Cluster a", ev.Type, ev.Object)
			}
			if want := "identity"; !compression && accepted != want {
				t.Errorf("Accept-Encoding %q, want %q", accepted, want)
			}
			if compression && !strings.Contains(accepted, "gzip") {
				t.Errorf("Accept-Encoding %q, want gzip", accepted)
			}
		})
	}
}

// testInformerFactory is the cache's informer factory for a test server
// that serves decodeGVK.
func testInformerFactory(t *testing.T, host string, p *Projections, w WatchOptions) *informerFactory {
	t.Helper()
	cfg := &rest.Config{Host: host}
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		t.Fatal(err)
	}
	mapper := meta.NewDefaultRESTMapper(nil)
	mapper.Add(decodeGVK, meta.RESTScopeNamespace)
	return &informerFactory{config: cfg, httpClient: hc, mapper: mapper, projections: p, watch: w,
		clients: map[schema.GroupVersion]rest.Interface{}}
}

func ptrInt64(v int64) *int64 { return &v }

package watch

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"unicode/utf8"
	"unique"

	"github.com/go-json-experiment/json/jsontext"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/responsibility-operator/responsibility-operator/api/v1alpha1"
	"github.com/responsibility-operator/responsibility-operator/internal/evaluate"
)

// projectingDecoder reads objects of one kind from the API server's JSON
// straight into what the cache keeps of them: the same map that
// TransformForCache makes of the fully decoded object (its projection, with
// metadata interned and without managedFields or kubectl's last-applied
// configuration), without decoding the rest.
//
// client-go's watch decoder reads every event four times (the framer, the
// event envelope, the search for apiVersion and kind, the object itself) and
// builds the whole object as maps, most of which the transform then drops.
// While the operator converged 10,000 objects that was 60% of its CPU, on
// cores it shares with the API server in a small cluster. This decoder reads
// each byte once and allocates only what it keeps.
type projectingDecoder struct {
	gvk         schema.GroupVersionKind
	projections *Projections
	// names holds the object keys read recently, so that every object's
	// "metadata", "labels" or "spec" is one string, not one per object.
	names map[string]string
	// shared makes equal maps and lists below an object's top level and
	// its metadata one value (nil: every object has its own).
	shared *sharedValues
}

// maxInternedNames bounds names: a stream of objects with ever new keys
// (a tenant's labels, say) starts it afresh rather than growing it.
const maxInternedNames = 4096

// jsonOptions read JSON as the API server's own decoders do: a repeated
// name's last value wins, and invalid UTF-8 becomes U+FFFD.
var jsonOptions = []jsontext.Options{jsontext.AllowDuplicateNames(true), jsontext.AllowInvalidUTF8(true)}

func newProjectingDecoder(gvk schema.GroupVersionKind, p *Projections) *projectingDecoder {
	return &projectingDecoder{gvk: gvk, projections: p, names: map[string]string{}, shared: shared}
}

// fields is the kind's projection now (see Projections.kept).
func (d *projectingDecoder) fields() *evaluate.Fields {
	return d.projections.kept(d.gvk)
}

// object reads one object: what fields keeps of it, as Fields.Project keeps
// it, with its metadata as internMetadata leaves it.
func (d *projectingDecoder) object(dec *jsontext.Decoder, f *evaluate.Fields) (map[string]any, error) {
	whole := f.All || f.Each != nil
	return d.members(dec, len(keptTopLevel)+len(f.Named), func(name string) (any, bool, error) {
		switch {
		case name == metadataField:
			v, err := d.metadata(dec)
			return v, true, err
		case name == "apiVersion" || name == "kind" || whole:
			v, err := d.value(dec)
			return v, true, err
		}
		c, ok := f.Named[name]
		if !ok {
			return nil, false, nil
		}
		v, err := d.projected(dec, c)
		return v, true, err
	})
}

// members reads a JSON object member by member into a map: read reads the
// value of the member name and says whether it is kept; a member read
// returns false for is skipped unread.
func (d *projectingDecoder) members(dec *jsontext.Decoder, size int, read func(name string) (any, bool, error)) (map[string]any, error) {
	if err := readDelim(dec, '{'); err != nil {
		return nil, err
	}
	out := make(map[string]any, size)
	for dec.PeekKind() != '}' {
		name, err := d.name(dec)
		if err != nil {
			return nil, err
		}
		v, keep, err := read(name)
		switch {
		case err != nil:
			return nil, err
		case keep:
			out[name] = v
		default:
			if err := skipValue(dec); err != nil {
				return nil, err
			}
		}
	}
	return out, readDelim(dec, '}')
}

// elements reads a JSON array element by element.
func elements(dec *jsontext.Decoder, read func() (any, error)) ([]any, error) {
	if err := readDelim(dec, '['); err != nil {
		return nil, err
	}
	out := []any{}
	for dec.PeekKind() != ']' {
		v, err := read()
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, readDelim(dec, ']')
}

// keptTopLevel are the fields every projection keeps.
var keptTopLevel = []string{"apiVersion", "kind", metadataField}

const metadataField = "metadata"

// projected reads a value as Fields.project keeps it.
func (d *projectingDecoder) projected(dec *jsontext.Decoder, f *evaluate.Fields) (any, error) {
	if f.All {
		return d.value(dec)
	}
	switch dec.PeekKind() {
	case '{':
		if f.Each != nil {
			return d.value(dec)
		}
		m, err := d.members(dec, len(f.Named), func(name string) (any, bool, error) {
			c, ok := f.Named[name]
			if !ok {
				return nil, false, nil
			}
			v, err := d.projected(dec, c)
			return v, true, err
		})
		return d.shared.share(m), err
	case '[':
		if f.Each == nil {
			return d.value(dec)
		}
		l, err := elements(dec, func() (any, error) { return d.projected(dec, f.Each) })
		return d.shared.share(l), err
	}
	return d.value(dec)
}

// metadata reads an object's metadata as internMetadata leaves it.
func (d *projectingDecoder) metadata(dec *jsontext.Decoder) (any, error) {
	if dec.PeekKind() != '{' {
		return d.value(dec)
	}
	return d.members(dec, 0, func(name string) (any, bool, error) {
		switch name {
		case "managedFields":
			return nil, false, nil
		case "annotations":
			v, err := d.annotations(dec)
			return v, true, err
		}
		v, err := d.value(dec)
		if _, ok := v.(string); ok && name == "namespace" {
			v = unique.Make(v).Value()
		}
		return v, true, err
	})
}

// annotations reads an object's annotations without kubectl's last-applied
// configuration and with the operator's own values shared.
func (d *projectingDecoder) annotations(dec *jsontext.Decoder) (any, error) {
	if dec.PeekKind() != '{' {
		return d.value(dec)
	}
	m, err := d.members(dec, 0, func(name string) (any, bool, error) {
		if name == lastAppliedAnnotation {
			return nil, false, nil
		}
		v, err := d.value(dec)
		if _, ok := v.(string); ok && slices.Contains(v1alpha1.OwnedAnnotations, name) {
			v = unique.Make(v).Value()
		}
		return v, true, err
	})
	return d.shared.share(m), err
}

// value reads a whole value as the API machinery's JSON decoder does:
// objects as map[string]any, arrays as []any, integers as int64, other
// numbers as float64; maps and lists shared (sharedValues).
func (d *projectingDecoder) value(dec *jsontext.Decoder) (any, error) {
	switch dec.PeekKind() {
	// The hottest loops, written out: through members and elements, a
	// call through a func value per member made decoding 15% slower.
	case '{':
		if err := readDelim(dec, '{'); err != nil {
			return nil, err
		}
		m := map[string]any{}
		for dec.PeekKind() != '}' {
			name, err := d.name(dec)
			if err != nil {
				return nil, err
			}
			if m[name], err = d.value(dec); err != nil {
				return nil, err
			}
		}
		return d.shared.share(m), readDelim(dec, '}')
	case '[':
		if err := readDelim(dec, '['); err != nil {
			return nil, err
		}
		l := []any{}
		for dec.PeekKind() != ']' {
			v, err := d.value(dec)
			if err != nil {
				return nil, err
			}
			l = append(l, v)
		}
		return d.shared.share(l), readDelim(dec, ']')
	}
	tok, err := readToken(dec)
	if err != nil {
		return nil, err
	}
	switch tok.Kind() {
	case '"':
		return tok.String(), nil
	case 't', 'f':
		return tok.Bool(), nil
	case 'n':
		return nil, nil
	case '0':
		if i, err := tok.Int(); err == nil {
			return i, nil
		}
		f, err := tok.Float()
		if err != nil {
			return nil, fmt.Errorf("number %s: %w", tok.String(), err)
		}
		return f, nil
	}
	return nil, fmt.Errorf("unexpected JSON token %s", tok.Kind())
}

// name reads an object member's name, shared with the same name read before.
func (d *projectingDecoder) name(dec *jsontext.Decoder) (string, error) {
	raw, err := readValue(dec)
	if err != nil {
		return "", err
	}
	if len(raw) < 2 || raw[0] != '"' {
		return "", fmt.Errorf("object member name is %s, not a string", raw.Kind())
	}
	inner := raw[1 : len(raw)-1]
	plain := bytes.IndexByte(inner, '\\') < 0 && utf8.Valid(inner)
	if plain {
		// The name is the bytes between the quotes, and a lookup with
		// them converted does not copy them.
		if s, ok := d.names[string(inner)]; ok {
			return s, nil
		}
	}
	var s string
	if plain {
		s = string(inner)
	} else if err := json.Unmarshal(raw, &s); err != nil {
		return "", fmt.Errorf("object member name %s: %w", raw, err)
	}
	s = unique.Make(s).Value()
	if plain {
		if len(d.names) >= maxInternedNames {
			clear(d.names)
		}
		d.names[s] = s
	}
	return s, nil
}

// skipValue, readToken and readValue are the decoder's, with its errors
// (which say where in the input) wrapped.
func skipValue(dec *jsontext.Decoder) error {
	if err := dec.SkipValue(); err != nil {
		return fmt.Errorf("read JSON: %w", err)
	}
	return nil
}

func readToken(dec *jsontext.Decoder) (jsontext.Token, error) {
	tok, err := dec.ReadToken()
	if err != nil {
		return tok, fmt.Errorf("read JSON: %w", err)
	}
	return tok, nil
}

func readValue(dec *jsontext.Decoder) (jsontext.Value, error) {
	v, err := dec.ReadValue()
	if err != nil {
		return v, fmt.Errorf("read JSON: %w", err)
	}
	return v, nil
}

func readDelim(dec *jsontext.Decoder, want jsontext.Kind) error {
	tok, err := readToken(dec)
	if err != nil {
		return err
	}
	if tok.Kind() != want {
		return fmt.Errorf("got JSON %s, want %s", tok.Kind(), want)
	}
	return nil
}

// watchDecoder reads a watch stream of the decoder's kind; it is the
// watch.Decoder of a watch.StreamWatcher.
type watchDecoder struct {
	body io.ReadCloser
	dec  *jsontext.Decoder
	objs *projectingDecoder
}

func newWatchDecoder(body io.ReadCloser, objs *projectingDecoder) *watchDecoder {
	return &watchDecoder{body: body, dec: jsontext.NewDecoder(body, jsonOptions...), objs: objs}
}

// Decode reads the next event: an object of the kind, projected, or, for an
// ERROR event, the API server's Status.
//
// The end of the stream is io.EOF, and its end inside an event
// io.ErrUnexpectedEOF, unwrapped: watch.StreamWatcher tells them apart from
// other errors by equality.
func (w *watchDecoder) Decode() (watch.EventType, runtime.Object, error) {
	typ, obj, err := w.decode()
	switch {
	case err == nil:
		return typ, obj, nil
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "", nil, io.ErrUnexpectedEOF
	case errors.Is(err, io.EOF):
		return "", nil, io.EOF
	}
	return "", nil, err
}

func (w *watchDecoder) decode() (watch.EventType, runtime.Object, error) {
	if err := readDelim(w.dec, '{'); err != nil {
		return "", nil, err
	}
	var (
		typ string
		obj runtime.Object
		raw jsontext.Value
	)
	for w.dec.PeekKind() != '}' {
		name, err := w.objs.name(w.dec)
		if err != nil {
			return "", nil, err
		}
		switch name {
		case "type":
			tok, err := readToken(w.dec)
			if err != nil {
				return "", nil, err
			}
			if tok.Kind() != '"' {
				return "", nil, fmt.Errorf("watch event type is JSON %s, not a string", tok.Kind())
			}
			typ = tok.String()
		case "object":
			if typ == "" {
				// The API server writes the type first; were it
				// not to, the object is read once it is known.
				v, err := readValue(w.dec)
				if err != nil {
					return "", nil, err
				}
				raw = v.Clone()
				continue
			}
			if obj, err = w.eventObject(typ, w.dec); err != nil {
				return "", nil, err
			}
		default:
			if err := skipValue(w.dec); err != nil {
				return "", nil, err
			}
		}
	}
	if err := readDelim(w.dec, '}'); err != nil {
		return "", nil, err
	}
	switch watch.EventType(typ) {
	case watch.Added, watch.Modified, watch.Deleted, watch.Error, watch.Bookmark:
	default:
		return "", nil, fmt.Errorf("got invalid watch event type: %q", typ)
	}
	if obj == nil && raw != nil {
		var err error
		if obj, err = w.eventObject(typ, jsontext.NewDecoder(bytes.NewReader(raw), jsonOptions...)); err != nil {
			return "", nil, err
		}
	}
	if obj == nil {
		return "", nil, fmt.Errorf("watch event %s has no object", typ)
	}
	return watch.EventType(typ), obj, nil
}

func (w *watchDecoder) eventObject(typ string, dec *jsontext.Decoder) (runtime.Object, error) {
	if watch.EventType(typ) == watch.Error {
		raw, err := readValue(dec)
		if err != nil {
			return nil, err
		}
		status := &metav1.Status{}
		if err := json.Unmarshal(raw, status); err != nil {
			return nil, fmt.Errorf("decode the watch error: %w", err)
		}
		return status, nil
	}
	m, err := w.objs.object(dec, w.objs.fields())
	if err != nil {
		return nil, fmt.Errorf("decode a watch event's %s: %w", w.objs.gvk.Kind, err)
	}
	return &unstructured.Unstructured{Object: m}, nil
}

// Close closes the stream.
func (w *watchDecoder) Close() { _ = w.body.Close() }

// decodeList reads a list of the decoder's kind, every item projected. An
// item without apiVersion or kind gets the list's kind's, as the dynamic
// client's decoder gives them.
func (d *projectingDecoder) decodeList(r io.Reader) (*unstructured.UnstructuredList, error) {
	dec := jsontext.NewDecoder(r, jsonOptions...)
	list := &unstructured.UnstructuredList{Object: map[string]any{}}
	if err := readDelim(dec, '{'); err != nil {
		return nil, err
	}
	f := d.fields()
	for dec.PeekKind() != '}' {
		name, err := d.name(dec)
		if err != nil {
			return nil, err
		}
		if name != "items" {
			if list.Object[name], err = d.value(dec); err != nil {
				return nil, err
			}
			continue
		}
		if dec.PeekKind() == 'n' {
			if _, err := readToken(dec); err != nil {
				return nil, err
			}
			continue
		}
		if err := readDelim(dec, '['); err != nil {
			return nil, fmt.Errorf("list items: %w", err)
		}
		for dec.PeekKind() != ']' {
			m, err := d.object(dec, f)
			if err != nil {
				return nil, fmt.Errorf("decode a listed %s: %w", d.gvk.Kind, err)
			}
			item := unstructured.Unstructured{Object: m}
			if item.GetKind() == "" {
				item.SetKind(d.gvk.Kind)
			}
			if item.GetAPIVersion() == "" {
				item.SetAPIVersion(d.gvk.GroupVersion().String())
			}
			list.Items = append(list.Items, item)
		}
		if err := readDelim(dec, ']'); err != nil {
			return nil, err
		}
	}
	if err := readDelim(dec, '}'); err != nil {
		return nil, err
	}
	if _, err := readToken(dec); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("data after the list: %w", err)
	}
	return list, nil
}

package ledger

import (
	"cmp"
	"slices"
	"sync"

	"k8s.io/apimachinery/pkg/types"

	"github.com/responsibility-operator/responsibility-operator/api/v1alpha1"
	"github.com/responsibility-operator/responsibility-operator/internal/evaluate"
	"github.com/responsibility-operator/responsibility-operator/internal/watch"
)

// Waived records, per DutyWaiver, the objects on which it turned a duty
// Waived in the workload reconciler's last result, for the waiver's status.
// Like the Tally, it is kept in memory and rebuilds itself as every object
// is reconciled after a start, so that the waiver's status says what the
// objects' annotations say.
type Waived struct {
	mu sync.Mutex
	// byObject holds what each object contributes: its waived duties, by
	// waiver name (of the object's namespace).
	byObject map[watch.Key]map[string][]string
	// byWaiver holds the objects of each waiver.
	byWaiver map[types.NamespacedName]map[watch.Key][]string
	onChange func(types.NamespacedName)
}

// NewWaived returns an empty record that calls onChange (if not nil) with
// every waiver whose objects change.
func NewWaived(onChange func(types.NamespacedName)) *Waived {
	return &Waived{
		byObject: map[watch.Key]map[string][]string{},
		byWaiver: map[types.NamespacedName]map[watch.Key][]string{},
		onChange: onChange,
	}
}

// Record replaces what an object contributes with a new evaluation result.
func (w *Waived) Record(key watch.Key, res evaluate.Result) {
	var next map[string][]string
	for _, d := range res.Duties {
		if d.Waiver == "" {
			continue
		}
		if next == nil {
			next = map[string][]string{}
		}
		next[d.Waiver] = append(next[d.Waiver], d.Duty.Name)
	}
	w.replace(key, next)
}

// Forget removes an object (deleted, no longer watched, or its write refused:
// it does not carry the result).
func (w *Waived) Forget(key watch.Key) { w.replace(key, nil) }

func (w *Waived) replace(key watch.Key, next map[string][]string) {
	w.mu.Lock()
	prev := w.byObject[key]
	if len(prev) == 0 && len(next) == 0 {
		w.mu.Unlock()
		return
	}
	var changed []types.NamespacedName
	for name, duties := range prev {
		if slices.Equal(next[name], duties) {
			continue
		}
		nn := types.NamespacedName{Namespace: key.Namespace, Name: name}
		delete(w.byWaiver[nn], key)
		if len(w.byWaiver[nn]) == 0 {
			delete(w.byWaiver, nn)
		}
		changed = append(changed, nn)
	}
	for name, duties := range next {
		if slices.Equal(prev[name], duties) {
			continue
		}
		nn := types.NamespacedName{Namespace: key.Namespace, Name: name}
		if w.byWaiver[nn] == nil {
			w.byWaiver[nn] = map[watch.Key][]string{}
		}
		w.byWaiver[nn][key] = duties
		if _, had := prev[name]; !had {
			changed = append(changed, nn)
		}
	}
	if len(next) == 0 {
		delete(w.byObject, key)
	} else {
		w.byObject[key] = next
	}
	w.mu.Unlock()
	if w.onChange != nil {
		for _, nn := range changed {
			w.onChange(nn)
		}
	}
}

// Objects returns how many objects a waiver waives duties on, and up to
// limit of them sorted by kind and name, each with its waived duties.
func (w *Waived) Objects(waiver types.NamespacedName, limit int) (int32, []v1alpha1.WaivedObject) {
	w.mu.Lock()
	objs := w.byWaiver[waiver]
	out := make([]v1alpha1.WaivedObject, 0, len(objs))
	for key, duties := range objs {
		out = append(out, v1alpha1.WaivedObject{
			APIVersion: key.GVK.GroupVersion().String(), Kind: key.GVK.Kind, Name: key.Name,
			Duties: slices.Clone(duties),
		})
	}
	w.mu.Unlock()
	slices.SortFunc(out, func(a, b v1alpha1.WaivedObject) int {
		return cmp.Or(cmp.Compare(a.Kind, b.Kind), cmp.Compare(a.APIVersion, b.APIVersion), cmp.Compare(a.Name, b.Name))
	})
	n := int32(len(out))
	if len(out) > limit {
		out = out[:limit]
	}
	return n, out
}

// Reset forgets every object, as when the manager stops.
func (w *Waived) Reset() {
	w.mu.Lock()
	keys := make([]watch.Key, 0, len(w.byObject))
	for k := range w.byObject {
		keys = append(keys, k)
	}
	w.mu.Unlock()
	for _, k := range keys {
		w.Forget(k)
	}
}

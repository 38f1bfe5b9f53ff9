// Package ledger keeps, in memory, what the operator knows of each object it
// evaluated: what it last wrote there (Written) and what the object counts
// toward each model's status and metrics (Tally). Both rebuild themselves
// after a restart, since every object is evaluated again on start.
package ledger

import (
	"slices"
	"strings"
	"sync"

	"github.com/responsibility-operator/responsibility-operator/internal/watch"
)

// Written remembers, per object, the operator-owned metadata the operator
// last wrote or found in place (as a digest) and the models it named. With
// it, the echo of the operator's own write is told apart from a tenant's
// change to the same keys, which must be corrected; and a model's cleanup
// can tell a claim the operator still has to remove from one a tenant
// forged, which it cannot remove and must not wait for.
type Written struct {
	mu sync.RWMutex
	m  map[watch.Key]writtenEntry
}

type writtenEntry struct {
	digest uint64
	models string
	// over is the resourceVersion the object had when the operator last
	// wrote it, until the cache shows a newer one; "" when none is awaited.
	over string
}

// NewWritten returns an empty record.
func NewWritten() *Written {
	return &Written{m: map[watch.Key]writtenEntry{}}
}

// Record notes what an object carries after the operator wrote or checked
// it. over is the resourceVersion the write was made over ("" when nothing
// was written): until the cache holds a newer version (see Behind), the
// cached object is older than what the operator knows is on the server.
func (w *Written) Record(key watch.Key, digest uint64, models, over string) {
	w.mu.Lock()
	w.m[key] = writtenEntry{digest: digest, models: models, over: over}
	w.mu.Unlock()
}

// Behind reports whether the cache, which holds the object at
// resourceVersion, has not yet seen the operator's last write of it. The
// write changed the object, so its version differs from the one it was made
// over. Evaluating the older copy would take the states written a moment ago
// for the previous ones, and repeat their events and the write.
func (w *Written) Behind(key watch.Key, resourceVersion string) bool {
	w.mu.RLock()
	e, ok := w.m[key]
	w.mu.RUnlock()
	if !ok || e.over == "" {
		return false
	}
	if e.over != resourceVersion {
		w.mu.Lock()
		if cur, ok := w.m[key]; ok && cur.over == e.over {
			cur.over = ""
			w.m[key] = cur
		}
		w.mu.Unlock()
		return false
	}
	return true
}

// Expect notes the digest a write is about to give an object, before the
// write: its watch event may arrive before the write's response, and must
// be recognised as the operator's own. The models are recorded only once
// the write succeeded (Record).
func (w *Written) Expect(key watch.Key, digest uint64) {
	w.mu.Lock()
	e, ok := w.m[key]
	if !ok {
		e.models = unknownModels
	}
	e.digest = digest
	w.m[key] = e
	w.mu.Unlock()
}

// unknownModels marks an object whose first write has not succeeded yet: it
// disowns no model.
const unknownModels = "\x00"

// Forget drops an object that is gone.
func (w *Written) Forget(key watch.Key) {
	w.mu.Lock()
	delete(w.m, key)
	w.mu.Unlock()
}

// Is reports whether the object's owned metadata, as a digest, is what the
// operator last recorded for it.
func (w *Written) Is(key watch.Key, digest uint64) bool {
	w.mu.RLock()
	defer w.mu.RUnlock()
	e, ok := w.m[key]
	return ok && e.digest == digest
}

// Disowns reports whether the operator has evaluated the object and
// recorded that it no longer names the model (with model "": any model): a
// models annotation that still names it is not the operator's.
func (w *Written) Disowns(key watch.Key, model string) bool {
	w.mu.RLock()
	defer w.mu.RUnlock()
	e, ok := w.m[key]
	if !ok || e.models == unknownModels {
		return false
	}
	if model == "" {
		return e.models == ""
	}
	return !slices.Contains(strings.Split(e.models, ","), model)
}

// Package watch is the operator's dynamic watch machinery: informers for
// the kinds the models target and read, started and stopped at run time as
// models come and go (Watcher); a cache that keeps of each object only the
// fields the models read (Projections, TransformForCache), filled by list
// and watch requests decoded straight into that projection (NewCache); and
// the events of those informers turned into workload keys (Key) for the
// workload controller's queue.
//
// It knows nothing of reconcilers: it asks which kinds are targets through
// Targets and recognises the operator's own writes through OwnWrites.
package watch

// Package scheduler is the I/O shell around the placement core: informers
// fill a cache of nodes and placed pods, a priority queue orders pending
// pods, one loop decides where each goes, and a pool of binders writes the
// Bindings so the loop never waits on the network.
package scheduler

package scheduler

import (
	"sync/atomic"
	"time"
)

// Stats counts what a running scheduler does, so that benchmarks and soak
// tests can see where pods wait (in the queue, in flight to the API server,
// or parked as unschedulable) without scraping logs. All fields are safe to
// read at any time.
type Stats struct {
	Attempts      atomic.Int64 // decisions made
	Unschedulable atomic.Int64 // decisions that found no node
	Bound         atomic.Int64 // binds the API server accepted
	BindErrors    atomic.Int64 // binds it refused or that failed
	BindNanos     atomic.Int64 // summed latency of accepted binds
	InFlight      atomic.Int64 // binds written but not yet answered
	Queued        atomic.Int64 // pods in the queue (any state), updated every 100 ms
}

// BindLatency is the mean latency of the accepted binds so far.
func (s *Stats) BindLatency() time.Duration {
	n := s.Bound.Load()
	if n == 0 {
		return 0
	}
	return time.Duration(s.BindNanos.Load() / n)
}

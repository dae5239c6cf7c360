// Package kubelet is skiff's node agent core: it registers the Node, renews
// its Lease, and drives every pod bound to the node to its spec through a CRI
// runtime (sandbox, init containers, containers, probes, restarts with
// back-off, graceful stop), writing what happened back to pods/status. It also
// serves the node's HTTPS endpoints for logs, exec, attach and port-forward.
//
// The deciding part is pure: computePlan and computeStatus turn a pod, the
// runtime's view of it and the time into the next actions and the status.
// Everything else (informers, per-pod workers, CRI calls) is a thin shell.
package kubelet
